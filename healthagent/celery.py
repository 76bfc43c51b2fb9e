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
