"""The system page's worker ping tells a worker busy with a job from a worker that died and from none."""

from datetime import timedelta

import pytest
from celery.exceptions import TimeoutError as CeleryTimeoutError
from django.urls import reverse
from django.utils import timezone

from healthagent import health
from modeling.models import Job

pytestmark = pytest.mark.django_db


class UnansweredPing:
    """A ping no worker took (each worker of its queue is running a job, or none runs)."""

    def get(self, timeout):
        raise CeleryTimeoutError("The operation timed out.")

    def forget(self):
        pass


@pytest.fixture
def pings_unanswered(monkeypatch):
    from healthagent.tasks import worker_ping

    monkeypatch.setattr(worker_ping, "apply_async", lambda **options: UnansweredPing())


def test_a_busy_worker_is_told_from_a_dead_one_and_from_none(pings_unanswered, client, admin_user):
    now = timezone.now()
    busy = Job.objects.create(
        kind="demo_training", queue="cpu", state="running", heartbeat_at=now - timedelta(seconds=3)
    )
    answers = health.worker_status(queues=("cpu", "gpu"), timeout_s=0.1)
    assert answers["cpu"] == {"ok": True, "busy": True, "detail": f"busy: running job #{busy.pk} (heartbeat 3 s ago)"}
    assert answers["gpu"] == {
        "ok": False,
        "error": "no worker answered within 0.1 s and no job is running on this queue: no worker serves it (TimeoutError)",
    }

    lost = Job.objects.create(
        kind="generate_recommendations", queue="gpu", state="running", heartbeat_at=now - timedelta(minutes=5)
    )
    answers = health.worker_status(queues=("gpu",), timeout_s=0.1)
    assert answers["gpu"] == {
        "ok": False,
        "error": f"no worker answered within 0.1 s, and job #{lost.pk} (heartbeat 5 min ago) stopped reporting: "
        "its worker may have died",
    }

    client.force_login(admin_user)
    page = client.get(reverse("system_status") + "?workers=1").content.decode()
    assert f'<span class="ok">busy: running job #{busy.pk} (heartbeat' in page
    assert f"job #{lost.pk} (heartbeat 5 min ago) stopped reporting: its worker may have died" in page
