"""Charts as files (issue 27): opening a study queues a job that builds every item's chart once, as a compressed
file; from then on every web process (its memory cache empty) serves an item's chart from that file, never
building it again, and the file's own name never reaches the clinician."""

import gzip
import json
from pathlib import Path

import pytest
from django.core.cache import caches
from django.urls import reverse

from evaluation.assignment import assignment_next
from evaluation.models import Rubric
from evaluation.services import StudySpec, study_create, study_set_status
from healthagent.cohort import charts
from healthagent.roles import Role
from modeling.models import Job
from modeling.tasks import run_job
from tests.factories import UserFactory


@pytest.mark.django_db
def test_opening_a_study_builds_each_chart_once_as_a_file_that_every_process_then_serves(
    settings, tiny_cohort, client, monkeypatch
):
    from healthagent.agent.generate import cohort_generate
    from healthagent.models import AgentVariant

    settings.STUDY_CHARTS_AT_OPEN = True
    grounded = AgentVariant.objects.get(name="grounded agent")
    cohort_generate(cohort=tiny_cohort, variants=[grounded])
    clinician, owner = UserFactory(role=Role.CLINICIAN), UserFactory(role=Role.RESEARCHER)
    spec = StudySpec(
        name="Charts ahead",
        mode="absolute",
        rubric=Rubric.objects.get(name__endswith="(1-5)"),
        cohort=tiny_cohort,
        variants=[grounded],
        raters_per_item=1,
        clinicians=[clinician],
        window_days=7,
    )
    study = study_set_status(study=study_create(spec=spec, user=owner), status="open", user=owner)
    job = Job.objects.get(kind="study_charts")
    assert (job.config, job.queue, job.queued_by) == ({"study": study.pk}, "quick", owner)
    assert not list(Path(settings.CHART_ROOT).rglob("*.json.gz"))  # nothing built before the job runs
    before_upgrade = Path(settings.CHART_ROOT) / f"v{charts.CHART_CACHE_VERSION - 1}" / "p1"
    before_upgrade.mkdir(parents=True)
    (before_upgrade / "old.json.gz").write_bytes(b"an older version's chart")

    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    job.refresh_from_db()
    participants = tiny_cohort.participants.count()
    assert job.result == {"charts": participants, "failed": 0, "old_chart_versions_removed": 1}
    assert job.progress == 1.0 and not before_upgrade.parent.exists()
    files = sorted(Path(settings.CHART_ROOT).rglob("*.json.gz"))
    assert len(files) == participants and all(path.stat().st_size > 1000 for path in files)

    caches["charts"].clear()  # another web process, or this one after a restart: nothing in memory

    def never(**kwargs):
        raise AssertionError("a chart was built again")

    monkeypatch.setattr(charts, "minute_figure", never)
    client.force_login(clinician)
    assignment = assignment_next(study=study, rater=clinician)
    url = reverse("evaluation:assignment_chart", args=[assignment.pk])
    sent = client.get(url, HTTP_ACCEPT_ENCODING="gzip")
    body = sent.content
    assert sent.status_code == 200 and sent["Content-Encoding"] == "gzip"
    assert body in {path.read_bytes() for path in files}  # the file itself, as built
    assert not any(path.name.split(".")[0] in sent["Content-Disposition"] + sent["ETag"] for path in files)
    plain = client.get(url)  # a client without gzip: the same figure, decompressed from the file
    assert (
        json.loads(plain.content) == json.loads(gzip.decompress(body)) and len(json.loads(plain.content)["data"]) == 8
    )


@pytest.mark.django_db
def test_reopening_queues_no_chart_job(settings, grounded_study):
    settings.STUDY_CHARTS_AT_OPEN = True
    study_set_status(study=grounded_study, status="closed")
    study_set_status(study=grounded_study, status="open", note="one more clinician")
    assert not Job.objects.filter(kind="study_charts").exists()  # reopened: its charts were built at the first open


def test_a_deployment_removes_older_chart_versions_and_keeps_the_rest(settings):
    """``manage.py charts_prune`` (deploy/prod.sh runs it): an older chart version's folder goes whole; the current
    version's, a newer one's (a host already upgraded, sharing the store) and anything not named so stay."""
    from io import StringIO

    from django.core.management import call_command

    root = Path(settings.CHART_ROOT)
    version = charts.CHART_CACHE_VERSION
    for name in (f"v{version - 2}", f"v{version - 1}", f"v{version}", f"v{version + 1}", "v1.bak", "vault"):
        (root / name / "p7").mkdir(parents=True)
        (root / name / "p7" / "chart.json.gz").write_bytes(b"a chart")
    (root / "v0").write_bytes(b"a file, not a version's folder")
    (root / "v1").symlink_to(root / f"v{version}", target_is_directory=True)  # not followed, not removed
    out = StringIO()
    call_command("charts_prune", stdout=out)
    assert out.getvalue().startswith("2 old chart version folder(s) removed")
    assert sorted(path.name for path in root.iterdir()) == sorted(
        ["v0", "v1", f"v{version}", f"v{version + 1}", "v1.bak", "vault"]
    )
    assert (root / f"v{version}" / "p7" / "chart.json.gz").exists()
    assert charts.chart_versions_prune() == []  # nothing left to remove
    settings.CHART_ROOT = root / "never-made"
    assert charts.chart_versions_prune() == []


@pytest.mark.django_db
def test_a_chart_file_is_written_even_when_its_folder_is_removed_meanwhile(settings, tiny_cohort, monkeypatch):
    """A newer version's prune on a shared store may remove this version's folder between its mkdir and the file's
    write: the write is tried once more, not answered with an error."""
    import shutil
    import tempfile

    participant = tiny_cohort.participants.order_by("pk").first()
    real, calls = tempfile.NamedTemporaryFile, []

    def removed_first(*args, dir, **kwargs):
        calls.append(dir)
        if len(calls) == 1:
            shutil.rmtree(dir)
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(charts.tempfile, "NamedTemporaryFile", removed_first)
    path = charts.minute_figure_file(participant=participant, start_minute=0, end_minute=1440)
    assert len(calls) == 2 and json.loads(gzip.decompress(path.read_bytes()))["data"]
