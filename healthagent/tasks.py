import socket

from celery import shared_task
from django.db import connection


@shared_task(name="healthagent.worker_ping", acks_late=False)
def worker_ping(*, asked_by: str) -> dict:
    """Answer a health check from inside a worker: its host, its database and its device."""
    import torch

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {
        "hostname": socket.gethostname(),
        "database": connection.vendor,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "asked_by": asked_by,
    }


@shared_task(name="healthagent.send_email", acks_late=False)
def send_email(*, subject: str, body: str, recipients: list[str]) -> bool:
    """Send a notification's email (healthagent.notifications); False when the mail server failed (logged)."""
    from healthagent.notifications import email_send

    return email_send(subject=subject, body=body, recipients=recipients)


@shared_task(name="healthagent.deliver_webhook", bind=True, acks_late=True)
def deliver_webhook(self, *, delivery_id: int) -> str:
    """One attempt of a webhook delivery (healthagent.webhooks); a failed one comes back after its back-off."""
    from healthagent.webhooks import webhook_attempt

    delay_s = webhook_attempt(delivery_id=delivery_id)
    if delay_s is None:
        return "done"
    raise self.retry(countdown=delay_s, max_retries=None)
