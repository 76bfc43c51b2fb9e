"""The job system with Redis and real worker processes: progress, cancel, failure, SIGKILL resume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from modeling.jobs import JobError, job_cancel, job_queue, job_retry
from modeling.models import Checkpoint, Job

ROOT = Path(__file__).resolve().parents[2]
FAST = {
    "task": "hypertension",
    "participants": 40,
    "days": 2,
    "steps": 40,
    "checkpoint_every": 10,
    "learning_rate": 0.003,
    "step_delay_s": 0.0,
    "seed": 1,
}


def wait_for(predicate, timeout_s=120, what="the condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def job_state(job_id):
    return Job.objects.get(pk=job_id)


@pytest.fixture
def worker_process(redis_url, tmp_path):
    """Start real `celery worker` processes on the test database; kill them all at the end."""
    if connection.vendor != "postgresql":
        pytest.skip("worker processes need a database they can share (PostgreSQL)")
    started = []
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": redis_url,
        "HEALTHAGENT_VAR_DIR": str(tmp_path / "var"),
        "CELERY_VISIBILITY_TIMEOUT": "4",
        "JOB_HEARTBEAT_STALE_S": "3",
        "DJANGO_SETTINGS_MODULE": "healthagent.settings",
    }

    def start(name):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "healthagent",
                "worker",
                "-Q",
                "cpu,gpu",
                "-c",
                "1",
                "-n",
                f"{name}@%h",
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _test_database_url():
    database = settings.DATABASES["default"]
    return f"postgres://{database['USER']}:{database.get('PASSWORD') or ''}@{database['HOST']}:{database['PORT']}/{database['NAME']}"


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"  # where run functions keep checkpoints: the same as the workers'
    return settings.VAR_DIR


pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_job_runs_reports_progress_and_succeeds(worker_process, var_dir):
    worker_process("one")
    job = job_queue(kind_name="demo_training", config=FAST)
    wait_for(lambda: job_state(job.pk).state == "succeeded", what="the job to succeed")
    done = job_state(job.pk)
    assert done.progress == 1.0 and done.attempts == 1 and done.device == "cpu" and done.worker_host
    assert [point["step"] for point in done.curve][-1] == 40 and "val_auroc" in done.curve[-1]
    assert 0.0 <= done.result["metrics"]["val_auroc"] <= 1.0
    assert Checkpoint.objects.get(job=done).family == "demo_mlp"


def test_a_killed_worker_s_job_resumes_from_its_checkpoint_on_another_worker(worker_process, var_dir):
    first = worker_process("first")
    job = job_queue(
        kind_name="demo_training", config={**FAST, "steps": 200, "checkpoint_every": 20, "step_delay_s": 0.05}
    )
    wait_for(lambda: (job_state(job.pk).curve or [{}])[-1].get("step", 0) >= 50, what="step 50")
    os.killpg(first.pid, signal.SIGKILL)  # mid-run, after the checkpoint of step 40
    first.wait()
    worker_process("second")
    wait_for(
        lambda: job_state(job.pk).state == "succeeded", timeout_s=180, what="the job to finish on the second worker"
    )
    done = job_state(job.pk)
    assert done.attempts == 2
    assert done.result["resumed_from_step"] in (40, 60)  # the last checkpoint before the kill
    assert f"resumed from step {done.result['resumed_from_step']}" in done.log_tail


def test_cancel_a_queued_and_a_running_job(worker_process, var_dir):
    queued = job_queue(kind_name="demo_training", config=FAST)
    assert job_cancel(job=queued).state == "cancelled"  # no worker yet: cancelled before it starts
    worker_process("one")
    running = job_queue(kind_name="demo_training", config={**FAST, "steps": 400, "step_delay_s": 0.05})
    wait_for(
        lambda: job_state(running.pk).state == "running" and job_state(running.pk).progress > 0.05,
        what="the job to run",
    )
    job_cancel(job=running)
    wait_for(lambda: job_state(running.pk).state == "cancelled", what="the running job to stop")
    assert job_state(running.pk).progress < 1.0
    assert job_state(queued.pk).attempts == 0  # the cancelled queued job never ran


def test_a_failing_run_fails_its_job_with_the_error(worker_process, var_dir):
    worker_process("one")
    job = job_queue(kind_name="demo_training", config=FAST)
    Job.objects.filter(pk=job.pk).update(config={**FAST, "task": "no_such_task"})  # the run itself will raise
    wait_for(lambda: job_state(job.pk).finished, what="the job to end")
    failed = job_state(job.pk)
    assert failed.state == "failed" and "task must be a binary task" in failed.error
    with pytest.raises(JobError, match="not one of the available choices"):
        job_retry(job=failed)  # a retry validates the config again
    Job.objects.filter(pk=job.pk).update(config=FAST)
    retried = job_retry(job=job_state(job.pk))
    assert retried.retry_of_id == failed.pk and retried.config == FAST
    wait_for(lambda: job_state(retried.pk).state == "succeeded", what="the retry to succeed")


@pytest.mark.django_db
def test_a_bad_config_is_refused_before_anything_is_queued():
    with pytest.raises(JobError, match="steps"):
        job_queue(kind_name="demo_training", config={**FAST, "steps": 0})
    with pytest.raises(JobError, match="unknown job kind"):
        job_queue(kind_name="nope", config={})
    assert not Job.objects.exists()
