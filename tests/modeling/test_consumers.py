"""The twin page's websocket: a researcher gets a simulate job's progress as the worker reports it, with
only the fields the twin page's status view gives (on the configured channel layer; in-memory here)."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings as django_settings

from healthagent.asgi import application
from modeling.jobs import JobContext
from modeling.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_researcher_follows_a_simulation_s_progress_over_the_websocket(client, researcher, settings, tmp_path):
    from channels.testing import WebsocketCommunicator

    settings.VAR_DIR = tmp_path / "var"
    job = Job.objects.create(
        kind="simulate", config={}, state=Job.State.RUNNING, worker_host="gpu-7", device="cuda", queued_by=researcher
    )
    client.force_login(researcher)
    headers = [
        (
            b"cookie",
            f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}".encode(),
        ),
        (b"origin", b"http://localhost"),
    ]

    async def follow():
        communicator = WebsocketCommunicator(application, f"/ws/twin/jobs/{job.pk}/", headers=headers)
        assert (await communicator.connect())[0]
        context = await sync_to_async(JobContext)(job, "cuda")
        await sync_to_async(context.progress)(0.4, "simulating participants 1-1 of 1", metrics={"loss": 1.0}, step=3)
        event = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return event

    assert async_to_sync(follow)() == {
        "id": job.pk,
        "state": "running",
        "state_label": "Running",
        "progress": 0.4,
        "message": "simulating participants 1-1 of 1",
        "error": "",
    }


def test_another_researcher_cannot_follow_a_simulation_over_the_websocket(client, researcher):
    from channels.testing import WebsocketCommunicator

    from healthagent.roles import Role
    from tests.factories import UserFactory

    job = Job.objects.create(kind="simulate", config={}, state=Job.State.RUNNING, queued_by=researcher)
    client.force_login(UserFactory(role=Role.RESEARCHER))
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}"
    headers = [(b"cookie", cookie.encode()), (b"origin", b"http://localhost")]

    async def connect():
        communicator = WebsocketCommunicator(application, f"/ws/twin/jobs/{job.pk}/", headers=headers)
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert not async_to_sync(connect)()
