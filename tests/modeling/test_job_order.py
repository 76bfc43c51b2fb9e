"""Jobs of a queue run first in, first out (a higher priority first) on a real worker, here on the
embedded mode's filesystem broker, which hands out messages written in the same millisecond in a
random order (its file names are a millisecond clock, then a random id)."""

import time
from contextlib import contextmanager

import pytest
from django.db import transaction

from modeling.jobs import job_queue, job_queue_place
from modeling.models import Job
from modeling.templatetags.job_format import queue_place_words

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TINY = {
    "task": "hypertension",
    "participants": 20,
    "days": 1,
    "steps": 2,
    "checkpoint_every": 2,
    "learning_rate": 0.003,
    "step_delay_s": 0.0,
    "seed": 1,
}


def _reset_connections(app):
    """Forget the app's broker connections, so the next message goes to the broker configured now."""
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def filesystem_worker(tmp_path):
    """Start (as a context manager) a real Celery worker serving the cpu queue of a private filesystem broker."""
    from celery.contrib.testing.worker import start_worker

    from healthagent.celery import app

    folders = {name: tmp_path / "celery" / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    saved = (app.conf.broker_url, app.conf.broker_transport_options)
    app.conf.broker_url = "filesystem://"
    app.conf.broker_transport_options = {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "store_processed": False,
    }
    _reset_connections(app)

    @contextmanager
    def running():
        with start_worker(app, queues=["cpu"], pool="solo", perform_ping_check=False, shutdown_timeout=60):
            yield

    yield running
    app.conf.broker_url, app.conf.broker_transport_options = saved
    _reset_connections(app)


def test_a_queue_runs_its_jobs_in_the_order_they_were_queued_and_a_higher_priority_first(
    filesystem_worker, settings, tmp_path, monkeypatch
):
    from kombu.transport import filesystem

    settings.VAR_DIR = tmp_path / "var"
    # Queued together (as `make demo` queues its jobs), their messages are written within the same millisecond,
    # which the broker's file names cannot order: its clock is held still while they are sent.
    monkeypatch.setattr(filesystem, "monotonic", lambda: 1234.5)
    with transaction.atomic():
        in_order = [job_queue(kind_name="demo_training", config={**TINY, "seed": seed}) for seed in range(6)]
        urgent = job_queue(kind_name="demo_training", config=TINY, priority=5)
    monkeypatch.undo()
    last = Job.objects.get(pk=in_order[-1].pk)
    assert job_queue_place(last).position == 7  # behind the urgent job and the five queued before it
    assert queue_place_words(job_queue_place(last), "cpu").startswith("7th in the CPU queue; ")
    assert (
        queue_place_words(job_queue_place(Job.objects.get(pk=urgent.pk)), "cpu") == "1st in the CPU queue; starts next"
    )

    with filesystem_worker():
        deadline = time.monotonic() + 180
        while Job.objects.exclude(state="succeeded").exists():
            assert time.monotonic() < deadline, f"jobs still unfinished: {list(Job.objects.values_list('pk', 'state'))}"
            time.sleep(0.25)
    started = list(Job.objects.order_by("started_at").values_list("pk", flat=True))
    assert started == [urgent.pk] + [job.pk for job in in_order]
    assert all(job.attempts == 1 for job in Job.objects.all())


@pytest.mark.django_db
def test_an_admin_queues_a_job_with_a_priority(client, admin_user, monkeypatch):
    from modeling import jobs

    monkeypatch.setattr(jobs, "_send", lambda job_id, queue: None)
    client.force_login(admin_user)
    assert "a higher priority runs first" in client.get("/modeling/jobs/new/demo_training/").content.decode()
    response = client.post("/modeling/jobs/new/demo_training/", {**TINY, "job-priority": "7"})
    job = Job.objects.get()
    assert response.status_code == 302 and job.priority == 7
    assert "priority 7" in client.get(f"/modeling/jobs/{job.pk}/").content.decode()
    assert (
        client.post("/modeling/jobs/new/demo_training/", {**TINY, "job-priority": "12"}).status_code == 200
    )  # refused, with its message
    assert Job.objects.count() == 1


@pytest.mark.django_db
def test_a_queued_job_s_place_and_start_estimate_come_from_the_jobs_ahead(client, admin_user):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    Job.objects.create(
        kind="demo_training",
        state="succeeded",
        started_at=now - timedelta(minutes=10),
        finished_at=now - timedelta(minutes=8),
    )
    Job.objects.create(
        kind="demo_training", state="running", progress=0.5, started_at=now - timedelta(seconds=60)
    )  # about 60 s left
    Job.objects.create(kind="demo_training", state="queued")  # typically 120 s
    Job.objects.create(kind="demo_training", state="queued", queue="gpu")  # another queue: not ahead
    waiting = Job.objects.create(kind="demo_training", state="queued")
    place = job_queue_place(waiting)
    assert (place.position, place.running) == (2, 1) and abs(place.starts_in.total_seconds() - 180) < 5
    assert queue_place_words(place, "cpu") == "2nd in the CPU queue (1 running); starts in about 3 minutes"
    Job.objects.create(kind="lsm_pretrain", state="queued", priority=1)  # never ran: no estimate, and ahead by priority
    assert (
        queue_place_words(job_queue_place(waiting), "cpu")
        == "3rd in the CPU queue (1 running); no estimate yet (a job ahead has not run before)"
    )
    client.force_login(admin_user)
    listing = client.get("/modeling/jobs/").content.decode()
    assert "3rd in the CPU queue (1 running)" in listing and "1st in the GPU queue; starts next" in listing


def test_the_job_list_places_every_queued_job_in_a_few_queries(client, admin_user, django_assert_max_num_queries):
    for _ in range(40):
        Job.objects.create(kind="demo_training", state="queued")
    Job.objects.create(kind="demo_training", state="running", progress=0.5)
    client.force_login(admin_user)
    # The session, user and role, the jobs, then per queue its running and queued jobs and per kind its typical run.
    with django_assert_max_num_queries(8):
        listing = client.get("/modeling/jobs/").content.decode()
    assert "40th in the CPU queue (1 running)" in listing
