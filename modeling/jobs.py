"""The job system: a registry of kinds, the context a run function reports through, and the
services that queue, cancel and retry jobs.

A kind registers its config form, its queue and its run function. A run function gets a
:class:`JobContext`: it reports progress (which also checks for cancellation), writes log lines,
and keeps its checkpoints in ``context.work_dir`` so a job delivered again resumes there.

A job can be delivered again after its final writes (its worker died before the job was marked
finished), so those writes must be idempotent per job: a run registers its models with
:func:`job_checkpoint_record` and queues the job that uses its result with :func:`job_queue_follow_up`.
"""

import functools
import os
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django import forms
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from healthagent.audit import Action, audit_record
from healthagent.events import group_notify, group_notify_on_commit
from healthagent.templatetags.readable_data import readable_label
from healthagent.webhooks import webhook_emit
from modeling.models import Checkpoint, Job

JOBS_GROUP = "jobs"
# A running job whose heartbeat is older than this has lost its worker: a delivery of it takes it over
# (modeling.tasks), and the system page says its worker may have died.
HEARTBEAT_STALE_AFTER = timedelta(seconds=float(os.environ.get("JOB_HEARTBEAT_STALE_S", "60")))
LOG_TAIL_CHARS = 20_000
CURVE_POINTS = 2000


class JobError(Exception):
    """A job request the system refuses (a bad config, a job that cannot be cancelled...)."""


class JobCancelled(Exception):
    """Raised inside a run when its job was cancelled; the worker marks the job cancelled."""


@dataclass(frozen=True)
class JobKind:
    name: str
    title: str
    form: type[forms.Form]
    run: Callable[["JobContext"], dict]
    queue: Callable[[dict], str] = lambda config: "cpu"
    description: str = ""
    # The config a retry of a job that succeeded with failures runs with: only the failed parts again.
    retry_config: Callable[[dict], dict] = lambda config: config
    # What tells this job from others of its kind, in words, for the jobs list ("LLM only · 15 participants").
    summary: Callable[[dict], str] = lambda config: ""
    # What to undo when a job is cancelled before it started (its run, which would, never comes): e.g. files it
    # was to read and delete. Called after the cancel commits.
    cancelled_before_start: Callable[[dict], None] = lambda config: None


REGISTRY: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    REGISTRY[kind.name] = kind
    return kind


# ``(*, backend, config, json_schema, timeout_s, temperature) -> complete(messages, seed) -> text``: registered by the
# agent, which owns the language-model backends and sits above the job framework (the head search's proposer uses it).
LanguageModel = Callable[..., Callable[[list[dict], int], str]]
_language_models: list[LanguageModel] = []


def job_language_model_register(language_model: LanguageModel) -> None:
    _language_models[:] = [language_model]


def job_language_model() -> LanguageModel | None:
    return _language_models[0] if _language_models else None


def kind_config(kind_name: str, **values: object) -> dict:
    """A complete config of a kind: its form's initial values with ``values`` (for a job that queues another)."""
    fields = job_kind(kind_name).form.base_fields
    return {name: field.initial for name, field in fields.items() if field.initial is not None} | values


def queue_for_size(size: str | None) -> str:
    """The one rule for where a model runs: a tiny one on the CPU queue, anything larger on the GPU queue (a GPU worker
    falls back to its CPU when it has none)."""
    return "cpu" if size == "tiny" else "gpu"


def queue_by_size(config: dict) -> str:
    """A kind's queue rule when its config names the size of the model it trains."""
    return queue_for_size(config.get("size"))


def queue_by_checkpoint(config: dict) -> str:
    """A kind's queue rule when its config names the checkpoint it reads: that model's size decides."""
    checkpoint_id = config.get("checkpoint")
    if checkpoint_id is None:
        return queue_for_size(None)
    return queue_for_size(Checkpoint.objects.filter(pk=checkpoint_id).values_list("size", flat=True).first())


def job_kind(name: str) -> JobKind:
    from modeling import kinds  # noqa: F401 - registers the kinds on first use

    try:
        return REGISTRY[name]
    except KeyError as error:
        raise JobError(f"unknown job kind {name!r}; known: {', '.join(sorted(REGISTRY))}") from error


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


def metric_labels(names) -> dict[str, str]:
    """Each metric name in words, for the job page's chart ("val_auroc" -> "Validation AUROC")."""
    return {name: readable_label(name) for name in names if name != "step"}


def job_payload(job: Job, *, with_curve: bool = False) -> dict:
    """The job as its page and live events show it; ``with_curve`` adds the whole curve and every metric's label."""
    payload = {
        "id": job.pk,
        "kind": job.kind,
        "state": job.state,
        "state_label": job.get_state_display(),
        "progress": job.progress,
        "message": job.message,
        "metrics": job.metrics,
        "metric_labels": metric_labels(job.metrics),
        "error": job.error,
        "failures": job.failures,
        "device": job.device,
        "worker_host": job.worker_host,
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "retryable": job.retryable,
    }
    if with_curve:
        payload["curve"] = job.curve
        payload["metric_labels"] = metric_labels({name for point in job.curve for name in point} | set(job.metrics))
    return payload


# What researchers see of a job they queued (the twin page): its progress and place in its queue, not the workers' details.
PROGRESS_FIELDS = ("id", "state", "state_label", "progress", "message", "error", "queue_place")
# A job someone waits for on a page (one participant's simulation) goes ahead of the long runs queued before it.
INTERACTIVE_PRIORITY = 5
QUICK_QUEUE = "quick"  # short jobs a person waits for, beside the long ones (settings.JOB_QUEUES)


def job_progress_payload(payload: dict) -> dict:
    """Only the PROGRESS_FIELDS of a :func:`job_payload` (or of an event carrying one)."""
    return {key: payload[key] for key in PROGRESS_FIELDS if key in payload}


def job_pending(*, kind_name: str) -> Job | None:
    """The newest queued or running job of a kind: a page waiting for its model says it is on its way."""
    return Job.objects.filter(kind=kind_name, state__in=(Job.State.QUEUED, Job.State.RUNNING)).order_by("-pk").first()


def work_dir(job: Job) -> Path:
    return Path(settings.VAR_DIR) / "jobs" / f"job-{job.pk}"


def check_config(kind: JobKind, data: dict) -> dict:
    """The validated config, or JobError with the form's messages."""
    form = kind.form(data=data)
    if not form.is_valid():
        problems = "; ".join(f"{field}: {' '.join(map(str, errors))}" for field, errors in form.errors.items())
        raise JobError(f"invalid {kind.name} config: {problems}")
    return {
        key: (value.pk if hasattr(value, "pk") else [v.pk for v in value] if hasattr(value, "model") else value)
        for key, value in form.cleaned_data.items()
    }


def job_queue(
    *,
    kind_name: str,
    config: dict,
    user=None,
    retry_of: Job | None = None,
    parent: Job | None = None,
    via: str = "",
    priority: int = 0,
    queue: str | None = None,
) -> Job:
    """Validate the config, store the job (and its audit entry) and send it to its queue once the row is committed:
    ``queue``, or the kind's rule for this config.

    Jobs of a queue run in the order they were queued, a higher ``priority`` first (see modeling.tasks)."""
    kind = job_kind(kind_name)
    cleaned = check_config(kind, config)
    if queue is not None and queue not in settings.JOB_QUEUES:
        raise JobError(f"unknown queue {queue!r}; known: {', '.join(settings.JOB_QUEUES)}")
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind.name,
            config=cleaned,
            queue=queue or kind.queue(cleaned),
            queued_by=user,
            retry_of=retry_of,
            parent=parent,
            priority=priority,
        )
        audit_record(
            actor=user,
            via=via,
            action=Action.JOB_RETRIED if retry_of else Action.JOB_QUEUED,
            target=job,
            details={
                "kind": job.kind,
                "queue": job.queue,
                "config": cleaned,
                **({"retry_of": retry_of.pk} if retry_of else {}),
                **({"parent": parent.pk} if parent else {}),
                **({"priority": priority} if priority else {}),
            },
        )
        transaction.on_commit(lambda: _send(job.pk, job.queue))
        group_notify_on_commit(group=JOBS_GROUP, payload=job_payload(job))
    return job


def job_queue_follow_up(*, parent: Job, kind_name: str, config: dict) -> Job:
    """Queue the job that carries on with ``parent``'s result, at most once per parent and kind: a parent
    delivered again after its worker died gets back the follow-up it queued the first time.
    Locks the parent's row, so two deliveries cannot both queue one."""
    with transaction.atomic():
        Job.objects.select_for_update().get(pk=parent.pk)
        earlier = Job.objects.filter(parent=parent, kind=kind_name).first()
        if earlier is not None:
            return earlier
        return job_queue(kind_name=kind_name, config=config, user=parent.queued_by, parent=parent)


def job_checkpoint_record(*, job: Job, family: str, size: str, path: str, metrics: dict) -> Checkpoint:
    """Register the model ``job`` saved at ``path``, once: a job delivered again updates the row it wrote
    before (same primary key, so jobs queued with it stay valid). Locks the job's row."""
    with transaction.atomic():
        Job.objects.select_for_update().get(pk=job.pk)
        checkpoint, created = Checkpoint.objects.update_or_create(
            job=job, family=family, path=str(path), defaults={"size": size, "metrics": metrics}
        )
        audit_record(
            actor=None,
            action=Action.CHECKPOINT_CREATED if created else Action.CHECKPOINT_CHANGED,
            target=checkpoint,
            via=f"job #{job.pk}",
            details={"family": family, "path": str(path), "job": job.pk},
        )
    return checkpoint


def _send(job_id: int, queue: str) -> None:
    from modeling.tasks import run_job

    result = run_job.apply_async(kwargs={"job_id": job_id, "queue": queue}, queue=queue)
    Job.objects.filter(pk=job_id).update(celery_task_id=result.id)


def job_cancel(*, job: Job, user=None, via: str = "") -> Job:
    """A queued job is cancelled at once; a running one stops at its next progress report. Locks the job row."""
    try:
        kind = job_kind(job.kind)  # before the lock: the first use of the kinds in a process imports them (seconds)
    except JobError:
        kind = None  # a kind this version no longer has: nothing of its own to undo
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.finished:
            raise JobError(f"the job has already {job.state}")
        job.cancel_requested = True
        if job.state == Job.State.QUEUED:
            job.state, job.finished_at, job.message = Job.State.CANCELLED, timezone.now(), "cancelled before it started"
        job.save(update_fields=["cancel_requested", "state", "finished_at", "message"])
        audit_record(actor=user, via=via, action=Action.JOB_CANCELLED, target=job, details={"state": job.state})
        if job.state == Job.State.CANCELLED:
            webhook_emit(event_type="job.finished", data={"job_id": job.pk, "kind": job.kind, "state": job.state})
            if kind is not None:
                transaction.on_commit(functools.partial(kind.cancelled_before_start, dict(job.config)), robust=True)
        group_notify_on_commit(group=job_group(job.pk), payload=job_payload(job))
        group_notify_on_commit(group=JOBS_GROUP, payload=job_payload(job))
    return job


def job_retry(*, job: Job, user=None) -> Job:
    """Queue the job again; a job that succeeded with failures is queued with its kind's ``retry_config``
    (the recommendations redo only the answers that failed)."""
    if not job.retryable:
        raise JobError("only a failed or cancelled job, or one that succeeded with failures, can be retried")
    config = (
        job_kind(job.kind).retry_config(job.config) if job.state == Job.State.SUCCEEDED_WITH_FAILURES else job.config
    )
    return job_queue(
        kind_name=job.kind, config=config, user=user, retry_of=job, priority=job.priority, queue=job.queue
    )  # a retried quick simulation stays on the quick queue


def jobs_requeue_interrupted(*, queues: tuple[str, ...]) -> list[Job]:
    """Queue again the jobs left running on ``queues``, for a caller that knows no worker of them runs (``manage.py
    serve`` at its start: it starts the only workers of the embedded mode, whose broker loses the message of a
    job whose worker was stopped mid-run). Each keeps its place (its number) and resumes from its checkpoints."""
    with transaction.atomic():
        interrupted = list(
            Job.objects.select_for_update().filter(queue__in=queues, state=Job.State.RUNNING).order_by("pk")
        )
        for job in interrupted:
            if job.cancel_requested:  # its cancel would have taken effect at the next report: it takes effect now
                job.state, job.finished_at, job.message = (
                    Job.State.CANCELLED,
                    timezone.now(),
                    "cancelled while its worker was stopped",
                )
                job.save(update_fields=["state", "finished_at", "message"])
                continue
            job.state, job.run_by_task_id, job.message = (
                Job.State.QUEUED,
                "",
                "queued again: its worker was stopped while it ran",
            )
            job.save(update_fields=["state", "run_by_task_id", "message"])
            transaction.on_commit(functools.partial(_send, job.pk, job.queue))
    return [job for job in interrupted if job.state == Job.State.QUEUED]


def jobs_requeue_interrupted_lines(queues: tuple[str, ...]) -> list[str]:
    """:func:`jobs_requeue_interrupted`, said in words (the hook ``manage.py serve`` runs before its workers start)."""
    return [
        f"Job #{job.pk} ({job.kind}) was left running by a stopped worker: queued again, it resumes from its checkpoint."
        for job in jobs_requeue_interrupted(queues=queues)
    ]


def job_next_queued(*, queue: str):
    """The queued jobs of a queue in the order they run: a higher priority first, then first in, first out."""
    return Job.objects.filter(queue=queue, state=Job.State.QUEUED, cancel_requested=False).order_by("-priority", "pk")


def typical_duration(kind_name: str, *, recent: int = 10) -> timedelta | None:
    """The median run time of the kind's last ``recent`` finished runs, or None before it has run."""
    runs = (
        Job.objects.filter(
            kind=kind_name,
            state__in=(Job.State.SUCCEEDED, Job.State.SUCCEEDED_WITH_FAILURES),
            started_at__isnull=False,
            finished_at__isnull=False,
        )
        .order_by("-finished_at")
        .values_list("started_at", "finished_at")[:recent]
    )
    durations = [(finished - started).total_seconds() for started, finished in runs if started and finished]
    return timedelta(seconds=statistics.median(durations)) if durations else None


def _remaining(job: Job, now, typical: timedelta | None) -> timedelta | None:
    """How long a running job still needs: from its progress so far, else from its kind's typical run."""
    elapsed = (now - job.started_at) if job.started_at else timedelta(0)
    if job.progress >= 0.05 and elapsed > timedelta(0):
        return elapsed * ((1 - job.progress) / job.progress)
    return max(typical - elapsed, timedelta(0)) if typical is not None else None


@dataclass(frozen=True)
class QueuePlace:
    position: int  # 1: the next to start
    running: int  # jobs running on the queue now
    starts_in: timedelta | None  # None when a job ahead has never run before


def jobs_queue_places(jobs: list[Job]) -> dict[int, QueuePlace]:
    """Where each queued job of ``jobs`` stands in its queue and roughly when it starts (one worker per queue
    assumed, as in ``manage.py serve``), by job id; jobs not queued are left out. Two queries per queue, plus
    one per job kind for its typical run time, however many jobs are placed."""
    queues = {job.queue for job in jobs if job.state == Job.State.QUEUED and not job.cancel_requested}
    durations: dict[str, timedelta | None] = {}

    def duration(kind_name: str) -> timedelta | None:
        if kind_name not in durations:
            durations[kind_name] = typical_duration(kind_name)
        return durations[kind_name]

    now, places = timezone.now(), {}
    for queue in queues:
        running = list(Job.objects.filter(queue=queue, state=Job.State.RUNNING))
        waits = [_remaining(other, now, duration(other.kind)) for other in running]
        for position, queued in enumerate(job_next_queued(queue=queue).only("kind", "priority"), start=1):
            known = [wait for wait in waits if wait is not None]
            starts_in = sum(known, timedelta(0)) if len(known) == len(waits) else None
            places[queued.pk] = QueuePlace(position=position, running=len(running), starts_in=starts_in)
            waits.append(duration(queued.kind))
    return {job.pk: places[job.pk] for job in jobs if job.pk in places}


def job_queue_place(job: Job) -> QueuePlace | None:
    """:func:`jobs_queue_places` of one job; None when it is not queued."""
    return jobs_queue_places([job]).get(job.pk)


class JobContext:
    """What a run function sees: its config, its work directory, and the way to report."""

    def __init__(self, job: Job, device: str):
        self.job = job
        self.config = job.config
        self.device = device
        self.work_dir = work_dir(job)
        self.work_dir.mkdir(parents=True, exist_ok=True)

    def progress(
        self, fraction: float, message: str = "", *, metrics: dict | None = None, step: int | None = None
    ) -> None:
        """Record progress (and a point of the live curves); raises JobCancelled if the job was cancelled."""
        job = self.job
        job.progress = max(0.0, min(1.0, float(fraction)))
        job.message = message[:300]
        job.heartbeat_at = timezone.now()
        if metrics:
            job.metrics = metrics
            job.curve = _thin([*job.curve, {"step": step, **metrics}])
        Job.objects.filter(pk=job.pk).update(
            progress=job.progress,
            message=job.message,
            metrics=job.metrics,
            curve=job.curve,
            heartbeat_at=job.heartbeat_at,
        )
        payload = {**job_payload(job), "point": {"step": step, **(metrics or {})}}
        group_notify(group=job_group(job.pk), payload=payload)
        if Job.objects.filter(pk=job.pk, cancel_requested=True).exists():
            raise JobCancelled()

    def failure(self, *, item: str, reason: str) -> None:
        """Record a part of the run that failed (one answer of many...): the run goes on, and the job ends
        as succeeded with failures, each listed with its reason on the job's page. An item recorded again
        (the job delivered again) replaces its earlier entry."""
        item = item[:300]
        self.job.failures = [
            *(entry for entry in self.job.failures if entry["item"] != item),
            {"item": item, "reason": reason[:1000]},
        ]
        Job.objects.filter(pk=self.job.pk).update(failures=self.job.failures)

    def stage(self, start: float, share: float, *, every_s: float = 2.0) -> Callable[[float, str], None]:
        """The ``progress(fraction, message)`` of a stage taking ``share`` of the job from ``start``: passed on to
        :meth:`progress` (the heartbeat, and where a cancel is heard) at most once every ``every_s`` seconds, and when
        the stage ends."""
        passed, ended = [float("-inf")], [False]

        def report(fraction: float, message: str) -> None:
            now = time.monotonic()
            if now - passed[0] >= every_s or (fraction >= 1.0 and not ended[0]):
                passed[0], ended[0] = now, fraction >= 1.0
                self.progress(start + share * min(max(fraction, 0.0), 1.0), message)

        return report

    def training_progress(self, *, share: float = 1.0, every: int = 5) -> Callable[[int, int, dict], None]:
        """The ``progress(step, total, metrics)`` a training loop reports to: every ``every`` steps (and the last) the
        loss goes to the job's curve, the step to its message, and ``step / total`` of ``share`` to its progress."""

        def report(step: int, total: int, metrics: dict) -> None:
            if step % every == 0 or step == total:
                self.progress(
                    share * step / total, f"step {step} of {total}", metrics={"loss": metrics["loss"]}, step=step
                )

        return report

    def log_resumed(self, result: dict) -> None:
        """Say in the log when a training run (delivered again) resumed from a checkpoint."""
        if result.get("resumed_from_step"):
            self.log(f"resumed from step {result['resumed_from_step']}")

    def log(self, line: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        self.job.log_tail = (self.job.log_tail + f"{stamp} {line}\n")[-LOG_TAIL_CHARS:]
        Job.objects.filter(pk=self.job.pk).update(log_tail=self.job.log_tail)


def _thin(curve: list[dict]) -> list[dict]:
    """Keep the curve under CURVE_POINTS by dropping every other old point (the newest stay)."""
    if len(curve) <= CURVE_POINTS:
        return curve
    half = len(curve) // 2
    return curve[:half:2] + curve[half:]


def queue_activity(queue: str) -> list[dict]:
    """The jobs running on a queue, for the system page (registered in healthagent.health by modeling/apps.py):
    a job whose heartbeat is older than the stale limit has most likely lost its worker."""
    now = timezone.now()
    running = Job.objects.filter(queue=queue, state=Job.State.RUNNING).order_by("pk").values_list("pk", "heartbeat_at")
    return [
        {
            "job": pk,
            "heartbeat_age_s": (now - heartbeat).total_seconds() if heartbeat else None,
            "stale": heartbeat is None or now - heartbeat >= HEARTBEAT_STALE_AFTER,
        }
        for pk, heartbeat in running
    ]


def worker_identity() -> str:
    return socket.gethostname()
