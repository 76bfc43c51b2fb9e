"""The production path: PostgreSQL in CI, a websocket through channels-redis, a real worker on Redis."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection

from healthagent.asgi import application
from healthagent.events import group_notify
from healthagent.health import worker_status
from modeling.consumers import JOBS_GROUP
from tests.conftest import REQUIRE_SERVICES, service_missing


@pytest.mark.services
@pytest.mark.django_db
def test_database_is_postgresql_when_services_are_required():
    if not REQUIRE_SERVICES and connection.vendor != "postgresql":
        pytest.skip("PostgreSQL is not configured (DATABASE_URL is not a postgres:// URL)")
    if connection.vendor != "postgresql":
        service_missing(f"the database is {connection.vendor}, not PostgreSQL")
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        assert int(cursor.fetchone()[0].split(".")[0]) >= 15


def session_headers(client, user):
    client.force_login(user)
    return [
        (b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()),
        (b"origin", b"http://localhost"),
    ]


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_websocket_round_trip_through_redis(redis_url, client, admin_user):
    assert type(get_channel_layer()).__name__ == "RedisChannelLayer"

    headers = session_headers(client, admin_user)

    async def round_trip():
        communicator = WebsocketCommunicator(application, "/ws/jobs/", headers=headers)
        connected, _ = await communicator.connect()
        assert connected
        await get_channel_layer().group_send(
            JOBS_GROUP, {"type": "group.event", "payload": {"job": 7, "state": "running"}}
        )
        assert await communicator.receive_json_from(timeout=5) == {"job": 7, "state": "running"}
        await communicator.disconnect()

    async_to_sync(round_trip)()


def connects(path: str, headers: list) -> bool:
    async def attempt():
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    return async_to_sync(attempt)()


# Every websocket route × role: who may subscribe. A route without a row fails the test.
WEBSOCKET_MATRIX = {
    "ws_jobs": ("admin",),
    "ws_job": ("admin",),
    "ws_twin_job": ("researcher", "admin"),
    "ws_study": ("researcher", "admin"),
}


def websocket_path(name: str, objects: dict) -> str:
    return {
        "ws_jobs": "/ws/jobs/",
        "ws_job": f"/ws/jobs/{objects['job']}/",
        "ws_twin_job": f"/ws/twin/jobs/{objects['simulation_job']}/",
        "ws_study": f"/ws/studies/{objects['study']}/",
    }[name]


def test_every_websocket_route_has_a_row():
    from healthagent.routing import websocket_urlpatterns

    assert {pattern.name for pattern in websocket_urlpatterns} == set(WEBSOCKET_MATRIX)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", ["anonymous", "clinician", "researcher", "admin"])
@pytest.mark.parametrize("route", sorted(WEBSOCKET_MATRIX))
def test_websocket_authorization_matrix(client, user_for_role, role, route, grounded_study):
    from modeling.models import Job

    user = user_for_role(role)
    # A simulation is followed by whoever queued it (and admins); here every role "queued" it, so the matrix tests the
    # role alone. Another researcher's simulation is refused in tests/modeling/test_consumers.py.
    objects = {
        "job": Job.objects.create(kind="demo_training", config={}).pk,
        "simulation_job": Job.objects.create(kind="simulate", config={}, queued_by=user).pk,
        "study": grounded_study.pk,
    }
    headers = session_headers(client, user) if user else [(b"origin", b"http://localhost")]
    assert connects(websocket_path(route, objects), headers) is (role in WEBSOCKET_MATRIX[route])


@pytest.mark.django_db(transaction=True)
def test_websockets_refuse_a_missing_object_and_a_foreign_origin(client, admin_user):
    from modeling.models import Job

    headers = session_headers(client, admin_user)
    assert connects("/ws/jobs/999999/", headers) is False
    assert (
        connects(f"/ws/twin/jobs/{Job.objects.create(kind='demo_training').pk}/", headers) is False
    )  # only simulate jobs
    assert connects("/ws/studies/999999/", headers) is False
    foreign = [h for h in headers if h[0] != b"origin"] + [(b"origin", b"http://evil.example")]
    assert connects("/ws/jobs/", foreign) is False


@pytest.mark.django_db(transaction=True)
def test_group_notify_reaches_a_subscribed_socket(client, admin_user):
    """The publishing side that services use, on whichever channel layer is configured."""

    headers = session_headers(client, admin_user)

    async def subscribe_then_publish_from_sync_code():
        communicator = WebsocketCommunicator(application, "/ws/jobs/", headers=headers)
        assert (await communicator.connect())[0]
        await sync_to_async(group_notify)(group=JOBS_GROUP, payload={"hello": "jobs"})
        assert await communicator.receive_json_from(timeout=5) == {"hello": "jobs"}
        await communicator.disconnect()

    async_to_sync(subscribe_then_publish_from_sync_code)()


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_on_redis_runs_a_task_against_the_test_database(redis_url):
    from celery.contrib.testing.worker import start_worker

    from healthagent.celery import app

    with start_worker(app, queues=["cpu"], pool="solo", perform_ping_check=False, shutdown_timeout=30):
        answers = worker_status(queues=("cpu",), timeout_s=30)
    assert answers["cpu"]["ok"], answers
    assert answers["cpu"]["database"] == connection.vendor
    assert answers["cpu"]["device"] == "cpu"


@pytest.mark.services
@pytest.mark.django_db
def test_a_queue_without_worker_is_reported(redis_url):
    answers = worker_status(queues=("gpu",), timeout_s=1)
    assert answers["gpu"] == {
        "ok": False,
        "error": "no worker answered within 1 s and no job is running on this queue: no worker serves it (TimeoutError)",
    }
