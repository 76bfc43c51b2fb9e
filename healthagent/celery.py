"""The Celery app. Workers are started per queue: ``-Q gpu`` on GPU hosts, ``-Q cpu`` elsewhere."""

import os

from celery import Celery
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
