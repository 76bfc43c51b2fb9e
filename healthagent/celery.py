"""The Celery app. Workers are started per queue: ``-Q gpu`` on GPU hosts, ``-Q cpu`` elsewhere."""

import os
from collections.abc import Callable

from celery import Celery
from celery.signals import worker_process_shutdown
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthagent.settings")

app = Celery("healthagent")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("cpu"), Queue("gpu"))
# Tasks name their queue where they are defined (``@shared_task(queue=...)``); a job's queue can
# also be chosen per call with ``apply_async(queue=...)``.
app.autodiscover_tasks()
# A job whose worker died is delivered again once its message has been unacknowledged this long
# (Redis); jobs heartbeat, and a job still running elsewhere is not run twice (modeling/tasks.py).
VISIBILITY_TIMEOUT_S = int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))
app.conf.broker_transport_options = {
    **app.conf.broker_transport_options,
    "visibility_timeout": VISIBILITY_TIMEOUT_S,
    "unacked_restore_interval": max(1, min(10, VISIBILITY_TIMEOUT_S // 4)),
    "unacked_restore_throttle": 1 if VISIBILITY_TIMEOUT_S < 600 else 10,
}


@worker_process_shutdown.connect
def _flush_websocket_messages(**kwargs) -> None:
    """A pool process ends with os._exit, which skips atexit: the websocket messages its jobs handed to the publisher
    thread (a job's end, its last progress) leave first (healthagent.events)."""
    from healthagent.events import publisher_flush

    publisher_flush()


# What must happen before the embedded mode's workers start (``manage.py serve``), registered by the layers
# above this one from their AppConfig.ready(): e.g. the job system queues again the jobs a stopped worker left.
# Each hook takes the queues about to be served and returns lines to print.
BeforeWorkersStart = Callable[[tuple[str, ...]], list[str]]
_before_workers_start: list[BeforeWorkersStart] = []


def before_workers_start_register(hook: BeforeWorkersStart) -> None:
    if hook not in _before_workers_start:
        _before_workers_start.append(hook)


def before_workers_start(queues: tuple[str, ...]) -> list[str]:
    """Run every registered hook for ``queues`` (only when no other worker of them runs); their lines, in order."""
    return [line for hook in _before_workers_start for line in hook(queues)]
