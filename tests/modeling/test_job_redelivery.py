"""What a job writes when it is delivered again after its worker died: its model registered once, its
follow-up queued once (see also each kind's test, which delivers a whole job twice)."""

import pytest
from django.db import IntegrityError, transaction

from modeling.jobs import job_checkpoint_record, job_queue, job_queue_follow_up
from modeling.models import Checkpoint, Job
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

DEMO = {
    "task": "hypertension",
    "participants": 20,
    "days": 1,
    "steps": 10,
    "checkpoint_every": 5,
    "learning_rate": 0.003,
    "step_delay_s": 0.0,
    "seed": 1,
}


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"


def test_a_follow_up_is_queued_once_per_parent_and_kind(django_capture_on_commit_callbacks, monkeypatch):
    from modeling import jobs

    sent = []
    monkeypatch.setattr(jobs, "_send", lambda job_id, queue: sent.append(job_id))
    researcher = UserFactory(role="researcher")
    parent = job_queue(kind_name="demo_training", config=DEMO, user=researcher)
    with django_capture_on_commit_callbacks(execute=True):
        first = job_queue_follow_up(parent=parent, kind_name="demo_training", config={**DEMO, "seed": 2})
    with django_capture_on_commit_callbacks(execute=True):
        again = job_queue_follow_up(parent=parent, kind_name="demo_training", config={**DEMO, "seed": 3})
    assert again == first and first.parent == parent and first.queued_by == researcher and first.config["seed"] == 2
    assert sent == [first.pk]  # sent to a worker once
    assert list(parent.follow_ups.all()) == [first]
    other_parent = job_queue(kind_name="demo_training", config=DEMO)
    assert job_queue_follow_up(parent=other_parent, kind_name="demo_training", config=DEMO) != first


def test_the_database_refuses_a_second_follow_up_of_one_kind():
    parent = Job.objects.create(kind="lsm_pretrain")
    Job.objects.create(kind="lsm_predict", parent=parent)
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(kind="lsm_predict", parent=parent)
    Job.objects.create(kind="head_search", parent=parent)  # another kind is another follow-up
    Job.objects.create(kind="lsm_predict")  # and jobs without a parent are not limited


def test_a_job_registers_a_model_once_and_updates_it_when_delivered_again(tmp_path):
    job = Job.objects.create(kind="demo_training")
    first = job_checkpoint_record(
        job=job, family="demo_mlp", size="tiny", path=tmp_path / "model", metrics={"loss": 0.5}
    )
    again = job_checkpoint_record(
        job=job, family="demo_mlp", size="tiny", path=tmp_path / "model", metrics={"loss": 0.4}
    )
    assert (
        again.pk == first.pk and list(Checkpoint.objects.filter(job=job)) == [again] and again.metrics == {"loss": 0.4}
    )
    other = job_checkpoint_record(job=job, family="demo_mlp", size="tiny", path=tmp_path / "other", metrics={})
    assert other.pk != first.pk and Checkpoint.objects.filter(job=job).count() == 2


def test_a_job_s_page_links_its_parent_and_its_follow_ups(client, admin_user):
    parent = job_queue(kind_name="demo_training", config=DEMO)
    follow_up = job_queue_follow_up(parent=parent, kind_name="demo_training", config=DEMO)
    client.force_login(admin_user)
    assert (
        f'Queued by <a href="/modeling/jobs/{parent.pk}/">job #{parent.pk}</a>'
        in client.get(f"/modeling/jobs/{follow_up.pk}/").content.decode()
    )
    assert (
        f'Follow-up jobs: <a href="/modeling/jobs/{follow_up.pk}/">#{follow_up.pk} Demo training run</a> (queued)'
        in client.get(f"/modeling/jobs/{parent.pk}/").content.decode()
    )


def test_jobs_left_running_by_a_stopped_serve_are_queued_again_in_their_place(
    django_capture_on_commit_callbacks, monkeypatch
):
    from io import StringIO

    from django.core.management import call_command

    from modeling import jobs

    sent = []
    monkeypatch.setattr(jobs, "_send", lambda job_id, queue: sent.append((job_id, queue)))
    interrupted = Job.objects.create(
        kind="demo_training", queue="cpu", state="running", run_by_task_id="lost", attempts=1
    )
    finished = Job.objects.create(kind="demo_training", queue="cpu", state="succeeded")
    elsewhere = Job.objects.create(kind="demo_training", queue="other", state="running")
    later = Job.objects.create(kind="demo_training", queue="cpu", state="queued")
    output = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("jobs", requeue_interrupted=["cpu", "gpu"], stdout=output)
    interrupted.refresh_from_db()
    assert (interrupted.state, interrupted.run_by_task_id, interrupted.attempts) == ("queued", "", 1)
    assert interrupted.message == "queued again: its worker was stopped while it ran" and sent == [
        (interrupted.pk, "cpu")
    ]
    assert f"Job #{interrupted.pk} (demo_training) was left running by a stopped worker" in output.getvalue()
    assert [job.state for job in Job.objects.filter(pk__in=[finished.pk, elsewhere.pk]).order_by("pk")] == [
        "succeeded",
        "running",
    ]
    assert list(jobs.job_next_queued(queue="cpu")) == [interrupted, later]  # it keeps its place, ahead of later jobs


def test_a_cancel_requested_before_serve_stopped_takes_effect_at_the_restart(
    django_capture_on_commit_callbacks, monkeypatch
):
    from modeling import jobs

    sent = []
    monkeypatch.setattr(jobs, "_send", lambda job_id, queue: sent.append(job_id))
    cancelled = Job.objects.create(kind="demo_training", queue="cpu", state="running", cancel_requested=True)
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.jobs_requeue_interrupted(queues=("cpu",)) == []
    cancelled.refresh_from_db()
    assert cancelled.state == "cancelled" and cancelled.finished_at is not None and sent == []


# What a broker's delivery (not eager, with a task id) claims: the first queued job of its queue, the same job
# again when the same delivery comes back, and never a job a live worker is running.


def claim(job_id, *, task_id, queue="cpu"):
    from modeling.tasks import _claim

    return _claim(job_id, "cpu", task_id=task_id, direct=False, queue=queue)


def test_a_delivery_runs_the_first_queued_job_and_the_same_delivery_again_resumes_it():
    from datetime import timedelta

    from django.utils import timezone

    first, second = (
        Job.objects.create(kind="demo_training", queue="cpu", failures=[{"item": "x", "reason": "old"}])
        for _ in range(2)
    )
    assert claim(second.pk, task_id="message-of-second") == first  # first in, first out, whichever message comes first
    first.refresh_from_db()
    assert first.run_by_task_id == "message-of-second" and first.failures == [] and first.attempts == 1
    Job.objects.filter(pk=first.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))  # its worker died
    assert claim(second.pk, task_id="message-of-second") == first  # delivered again: resumes the same job
    assert Job.objects.get(pk=first.pk).attempts == 2
    assert claim(first.pk, task_id="message-of-first") == second


def test_a_duplicate_delivery_of_a_job_on_a_live_worker_is_held_back():
    from modeling.tasks import HeldByLiveWorker

    job = Job.objects.create(kind="demo_training", queue="cpu")
    assert claim(job.pk, task_id="message") == job
    with pytest.raises(HeldByLiveWorker):
        claim(job.pk, task_id="message")


def test_a_message_whose_job_was_cancelled_or_deleted_runs_the_next_job_of_its_queue():
    cancelled = Job.objects.create(kind="demo_training", queue="cpu", state="cancelled")
    deleted = Job.objects.create(kind="demo_training", queue="cpu", state="succeeded")
    waiting = [Job.objects.create(kind="demo_training", queue="cpu") for _ in range(2)]
    deleted_id = deleted.pk
    deleted.delete()
    assert claim(cancelled.pk, task_id="one") == waiting[0]
    assert claim(deleted_id, task_id="two") == waiting[1]
    assert claim(deleted_id, task_id="three") is None  # nothing left: the message runs nothing


def test_calling_the_task_directly_runs_the_job_it_names():
    from modeling.tasks import run_job

    first = Job.objects.create(kind="demo_training", queue="cpu", config={**DEMO, "steps": 2, "checkpoint_every": 1})
    named = Job.objects.create(kind="demo_training", queue="cpu", config={**DEMO, "steps": 2, "checkpoint_every": 1})
    assert run_job(job_id=named.pk) == "succeeded"
    assert Job.objects.get(pk=named.pk).state == "succeeded" and Job.objects.get(pk=first.pk).state == "queued"


def test_a_long_stage_heartbeats_its_share_of_the_job_without_writing_on_every_call(monkeypatch):
    """A step with no steps of its own (a hazard head's fit, a calibration's rollouts) keeps the job's heartbeat fresh,
    so no delivery takes it over, and hears a cancel; a caller reporting many times a second writes once in a while."""
    from types import SimpleNamespace

    from modeling.jobs import JobCancelled, JobContext

    clock = [100.0]
    monkeypatch.setattr("modeling.jobs.time", SimpleNamespace(monotonic=lambda: clock[0]))
    job = Job.objects.create(kind="twin_train", config={}, state=Job.State.RUNNING)
    stage = JobContext(job, "cpu").stage(0.6, 0.2, every_s=2.0)

    def seen():
        job.refresh_from_db()
        return round(job.progress, 6), job.message, job.heartbeat_at

    stage(0.5, "half of the head's histories read")
    first = seen()
    assert first[:2] == (0.7, "half of the head's histories read") and first[2] is not None
    clock[0] += 1.0
    stage(0.75, "more")  # a second after: not written
    assert seen() == first
    clock[0] += 1.5
    stage(0.8, "later")
    assert seen()[:2] == (0.76, "later")
    stage(1.0, "fitted")  # its end is always written, once
    ended = seen()
    assert ended[:2] == (0.8, "fitted")
    stage(1.0, "an evaluation after the end")
    assert seen() == ended
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    clock[0] += 2.0
    with pytest.raises(JobCancelled):
        stage(0.1, "the calibration's futures")
