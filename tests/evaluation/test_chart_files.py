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

    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    job.refresh_from_db()
    participants = tiny_cohort.participants.count()
    assert job.result == {"charts": participants, "failed": 0} and job.progress == 1.0
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
