"""A participant's data on disk goes with its row: deleting a cohort (the admin) or a participant removes, once the
deletion commits, the minute-level trajectory file and every chart file built from it; a deletion rolled back
removes nothing."""

from pathlib import Path

import pytest
from django.db import transaction
from django.urls import reverse

from healthagent.cohort.charts import minute_figure_file
from healthagent.cohort.store import trajectory_root
from healthagent.models import Cohort, Participant, participant_chart_folders
from tests.factories import UserFactory


def _files(cohort: Cohort) -> dict[int, tuple[Path, Path]]:
    """Each participant's trajectory file and one chart file built from it, both on disk."""
    files = {}
    for participant in cohort.participants.all():
        chart = minute_figure_file(participant=participant, start_minute=0, end_minute=1440)
        trajectory = trajectory_root() / participant.trajectory_path
        assert trajectory.exists() and chart.exists()
        assert participant_chart_folders(participant.pk) == [chart.parent]
        files[participant.pk] = (trajectory, chart)
    return files


@pytest.mark.django_db
def test_a_cohort_deleted_in_the_admin_leaves_none_of_its_participants_files(
    tiny_cohort, client, django_capture_on_commit_callbacks
):
    files = _files(tiny_cohort)
    other = Participant.objects.exclude(cohort=tiny_cohort)
    assert not other.exists()
    folder = trajectory_root() / f"cohort-{tiny_cohort.pk}"
    assert folder.is_dir()

    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    url = reverse("admin:healthagent_cohort_delete", args=[tiny_cohort.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"post": "yes"})
    assert response.status_code == 302 and not Cohort.objects.filter(pk=tiny_cohort.pk).exists()
    for trajectory, chart in files.values():
        assert not trajectory.exists() and not chart.exists() and not chart.parent.exists()
    assert not folder.exists()
    assert all(participant_chart_folders(pk) == [] for pk in files)


@pytest.mark.django_db
def test_a_deletion_rolled_back_keeps_the_files_and_one_participant_s_deletion_keeps_the_others(
    tiny_cohort, django_capture_on_commit_callbacks
):
    files = _files(tiny_cohort)
    first, *rest = sorted(files)
    cohort_pk = tiny_cohort.pk  # delete() forgets it, even when rolled back
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        tiny_cohort.delete()
        raise RuntimeError("the deletion fails after the rows went")
    assert callbacks == []  # nothing waits for a commit that never came
    assert Participant.objects.filter(cohort_id=cohort_pk).count() == len(files)
    assert all(trajectory.exists() and chart.exists() for trajectory, chart in files.values())

    with django_capture_on_commit_callbacks(execute=True):
        Participant.objects.get(pk=first).delete()
    assert not any(path.exists() for path in files[first])
    assert all(trajectory.exists() and chart.exists() for pk in rest for trajectory, chart in [files[pk]])
    assert (trajectory_root() / f"cohort-{cohort_pk}").is_dir()  # the cohort stays, with its others
