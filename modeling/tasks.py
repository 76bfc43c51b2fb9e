"""The one Celery task of the job system: job id in, the kind's run function does the work.

Jobs of a queue run first in, first out (a higher priority first), whatever order the broker
delivers their messages in: kombu's filesystem broker (the embedded mode) orders messages by a
millisecond clock and then a random id, so jobs queued together ran in a random order. Each job
sends one message; a delivery runs the first queued job of its queue (rarely the one it names) and
records its task id on that job, so a delivery made again runs the same job again.

Delivered with late acknowledgement and ``reject_on_worker_lost``: if the worker dies, the broker
delivers the job again and it resumes from its checkpoints. A job never runs to completion
twice: a finished job is skipped, and a job another live worker is running (its heartbeat is
fresh) is left to it.
"""

import logging
import traceback

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from healthagent.events import group_notify
from healthagent.webhooks import webhook_emit
from modeling.jobs import (
    HEARTBEAT_STALE_AFTER,
    JOBS_GROUP,
    JobCancelled,
    JobContext,
    job_group,
    job_kind,
    job_next_queued,
    job_payload,
    worker_identity,
)
from modeling.models import Job

logger = logging.getLogger(__name__)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class HeldByLiveWorker(Exception):
    """The job this delivery would run is running on a worker whose heartbeat is fresh."""


def _choose(job_id: int, task_id: str, direct: bool, queue: str | None) -> Job | None:
    """The job this delivery runs (its row locked), or None if it must run none."""
    jobs = Job.objects.select_for_update()
    if direct:  # called directly (tests, a command): the job it names
        return jobs.filter(pk=job_id).first()
    given = jobs.filter(run_by_task_id=task_id).first()
    if given is not None:
        return given  # delivered again: the job this delivery was given the first time
    if queue is None:  # a message sent before messages named their queue
        named = Job.objects.filter(pk=job_id).only("queue").first()
        if named is None:
            return None
        queue = named.queue
    # skip_locked: two workers of a queue choosing at once take the first and the second job.
    return job_next_queued(queue=queue).select_for_update(skip_locked=True).first()


def _claim(job_id: int, device: str, *, task_id: str = "", direct: bool = True, queue: str | None = None) -> Job | None:
    """Mark the job this delivery runs as running for this worker, or None if it must run none here. Raises
    HeldByLiveWorker when that job runs on a live worker (a duplicate delivery): the caller tries again later."""
    with transaction.atomic():
        job = _choose(job_id, task_id, direct, queue)
        if job is None or job.finished:
            return None
        fresh = job.heartbeat_at and timezone.now() - job.heartbeat_at < HEARTBEAT_STALE_AFTER
        if job.state == Job.State.RUNNING and fresh:
            raise HeldByLiveWorker(job.pk)
        if job.cancel_requested:
            job.state, job.finished_at = Job.State.CANCELLED, timezone.now()
            job.save(update_fields=["state", "finished_at"])
            return None
        job.state = Job.State.RUNNING
        job.attempts += 1
        job.run_by_task_id = task_id
        job.failures = []  # an earlier attempt's failures are this attempt's to find again
        job.worker_host, job.device = worker_identity(), device
        job.started_at = job.started_at or timezone.now()
        job.heartbeat_at = timezone.now()
        job.save(
            update_fields=[
                "state",
                "attempts",
                "run_by_task_id",
                "failures",
                "worker_host",
                "device",
                "started_at",
                "heartbeat_at",
            ]
        )
    return job


def _finish(job: Job, state: str, **fields) -> None:
    with transaction.atomic():
        Job.objects.filter(pk=job.pk).update(state=state, finished_at=timezone.now(), **fields)
        webhook_emit(event_type="job.finished", data={"job_id": job.pk, "kind": job.kind, "state": state})
    job.refresh_from_db()
    for group in (job_group(job.pk), JOBS_GROUP):
        group_notify(group=group, payload=job_payload(job))


@shared_task(name="modeling.run_job", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self, *, job_id: int, queue: str | None = None) -> str:
    device = _device()
    # A broker's delivery has a task id and is not eager; a direct call (tests, a command) runs the job it names.
    direct = bool(self.request.is_eager) or not self.request.id
    try:
        job = _claim(job_id, device, task_id=self.request.id or "", direct=direct, queue=queue)
    except HeldByLiveWorker:
        if direct:
            return "skipped"
        # A duplicate (the worker's process was lost and the message put back at once, or a broker's visibility
        # timeout ran out): acknowledging it would leave the job without a message if its worker then died.
        # Come back once its heartbeat could be stale; the same task id then takes the job over, or finds it finished.
        raise self.retry(countdown=HEARTBEAT_STALE_AFTER.total_seconds(), max_retries=None) from None
    if job is None:
        return "skipped"
    kind = job_kind(job.kind)
    context = JobContext(job, device)
    context.log(f"attempt {job.attempts} on {job.worker_host} ({device})")
    group_notify(group=JOBS_GROUP, payload=job_payload(job))
    try:
        result = kind.run(context)
    except JobCancelled:
        context.log("cancelled")
        _finish(job, Job.State.CANCELLED, message="cancelled while running")
        return "cancelled"
    except Exception as error:  # a failing run fails its job, with the reason shown on its page
        logger.exception("job %s failed", job.pk)
        context.log("".join(traceback.format_exception(error))[-4000:])
        _finish(job, Job.State.FAILED, error=f"{type(error).__name__}: {error}"[:2000])
        return "failed"
    if job.failures:
        context.log(f"succeeded with {len(job.failures)} failure{'s' if len(job.failures) != 1 else ''}")
        _finish(job, Job.State.SUCCEEDED_WITH_FAILURES, result=result or {}, progress=1.0)
        return "succeeded with failures"
    context.log("succeeded")
    _finish(job, Job.State.SUCCEEDED, result=result or {}, progress=1.0)
    return "succeeded"
