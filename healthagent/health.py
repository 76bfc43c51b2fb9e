"""What the site depends on, checked live: the database, the broker, the channel layer, workers."""

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

from healthagent.celery import app as celery_app

CHECK_TIMEOUT_S = 2.0

# A worker running a job takes no ping until the job ends, so an unanswered ping does not tell a busy
# worker from none. The job system (a higher layer) registers here what its queues are running
# (modeling/apps.py): for a queue, its running jobs as {"job": id, "heartbeat_age_s": seconds or None, "stale": bool}.
QueueActivity = Callable[[str], list[dict]]
_queue_activity: list[QueueActivity] = []


def queue_activity_register(provider: QueueActivity) -> None:
    if provider not in _queue_activity:
        _queue_activity.append(provider)


def _running_jobs(queue: str) -> list[dict]:
    return [job for provider in _queue_activity for job in provider(queue)]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "no heartbeat yet"
    if seconds < 90:
        return f"heartbeat {seconds:.0f} s ago"
    return f"heartbeat {seconds / 60:.0f} min ago"


def _unanswered(queue: str, timeout_s: float, error: Exception) -> dict:
    """Why a queue's ping went unanswered: its worker is busy with a job that is alive (a fresh heartbeat),
    a job's worker has stopped reporting, or no worker serves the queue."""
    running = _running_jobs(queue)
    alive = [job for job in running if not job["stale"]]
    if alive:
        jobs = ", ".join(f"#{job['job']} ({_age(job['heartbeat_age_s'])})" for job in alive)
        return {"ok": True, "busy": True, "detail": f"busy: running job{'s' if len(alive) > 1 else ''} {jobs}"}
    if running:
        jobs = ", ".join(f"#{job['job']} ({_age(job['heartbeat_age_s'])})" for job in running)
        return {
            "ok": False,
            "error": f"no worker answered within {timeout_s:g} s, and job{'s' if len(running) > 1 else ''} {jobs} "
            f"stopped reporting: its worker may have died",
        }
    return {
        "ok": False,
        "error": f"no worker answered within {timeout_s:g} s and no job is running on this queue: "
        f"no worker serves it ({type(error).__name__})",
    }


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        detail = check()
        status = {"ok": True, **detail}
    except Exception as error:  # a health check reports every failure instead of raising it
        status = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    status["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return status


def _check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def _check_broker() -> dict:
    with celery_app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_S)
        return {"transport": broker.transport.driver_type}


def _check_channel_layer() -> dict:
    layer = get_channel_layer()

    async def round_trip():
        channel = await layer.new_channel()
        token = uuid.uuid4().hex
        await layer.send(channel, {"type": "health.check", "token": token})
        message = await asyncio.wait_for(layer.receive(channel), CHECK_TIMEOUT_S)
        if message.get("token") != token:
            raise RuntimeError("the channel layer returned another message")

    async_to_sync(round_trip)()
    return {"backend": type(layer).__name__}


def service_status() -> dict:
    """Database, broker and channel layer, each with ``ok``, latency and a detail or error."""
    checks = {
        "database": _timed(_check_database),
        "broker": _timed(_check_broker),
        "channel_layer": _timed(_check_channel_layer),
    }
    return {
        "ok": all(check["ok"] for check in checks.values()),
        "mode": "embedded" if settings.EMBEDDED else "services",
        **checks,
    }


def worker_status(*, queues: tuple[str, ...] | None = None, timeout_s: float = 5.0) -> dict:
    """Send a ping task to each queue and wait for the answers: which workers serve which queue.

    A queue whose worker is busy with a job that still reports (a fresh heartbeat) is ``ok`` and
    ``busy``, with the job named; a queue with no worker answers ``ok: False`` after ``timeout_s``
    with the reason. An unanswered ping stays queued and expires, so a worker started later does not
    run a pile of stale pings.
    """
    from healthagent.tasks import worker_ping

    queues = settings.JOB_QUEUES if queues is None else queues

    pending = {
        queue: worker_ping.apply_async(queue=queue, expires=timeout_s, kwargs={"asked_by": socket.gethostname()})
        for queue in queues
    }
    deadline = time.monotonic() + timeout_s
    answers = {}
    for queue, result in pending.items():
        try:
            answers[queue] = {"ok": True, **result.get(timeout=max(0.1, deadline - time.monotonic()))}
        except Exception as error:
            answers[queue] = _unanswered(queue, timeout_s, error)
        with contextlib.suppress(
            OSError
        ):  # the filesystem result backend (embedded mode) has no file for a ping no worker took
            result.forget()
    return answers
