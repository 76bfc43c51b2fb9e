"""A websocket that was allowed when it connected is checked again before every event: once its user may no longer
follow the object (logged out, deactivated, password changed, role taken away, the study restricted), the next event
is not sent and the socket closes with 4403 (issue 23). On the configured channel layer (in-memory here)."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.sessions.models import Session

from evaluation.services import study_group
from healthagent.asgi import application
from healthagent.consumers import CLOSE_FORBIDDEN
from healthagent.events import group_notify
from healthagent.roles import Role, user_assign_roles
from modeling.jobs import job_group
from modeling.models import Job
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _headers(client, user) -> list[tuple[bytes, bytes]]:
    client.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return [(b"cookie", cookie.encode()), (b"origin", b"http://localhost")]


def _follow(path: str, headers, group: str, revoke) -> tuple[dict, dict]:
    """Connect, get one event, ``revoke`` access, send another: the first event and what came after it."""

    async def run():
        communicator = WebsocketCommunicator(application, path, headers=headers)
        assert (await communicator.connect())[0]
        await sync_to_async(group_notify)(group=group, payload={"n": 1})
        first = await communicator.receive_json_from(timeout=5)
        await sync_to_async(revoke)()
        await sync_to_async(group_notify)(group=group, payload={"n": 2})
        after = await communicator.receive_output(timeout=5)
        await communicator.disconnect()
        return first, after

    return async_to_sync(run)()


def _set_password(user):
    user.set_password("a new password for this test")
    user.save()


REVOCATIONS = {
    "logged out": lambda user: Session.objects.all().delete(),
    "deactivated": lambda user: type(user).objects.filter(pk=user.pk).update(is_active=False),
    "password changed": _set_password,
    "role taken away": lambda user: user_assign_roles(user=user, roles=[Role.CLINICIAN]),
}


@pytest.mark.parametrize("revocation", sorted(REVOCATIONS))
def test_a_study_dashboard_socket_closes_when_its_user_loses_access(client, grounded_study, revocation):
    researcher = UserFactory(role=Role.RESEARCHER)
    first, after = _follow(
        f"/ws/studies/{grounded_study.pk}/",
        _headers(client, researcher),
        study_group(grounded_study.pk),
        lambda: REVOCATIONS[revocation](researcher),
    )
    assert first == {"n": 1}
    assert after == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}  # no {"n": 2}


def test_a_study_dashboard_socket_closes_when_the_study_becomes_restricted(client, grounded_study):
    researcher = UserFactory(role=Role.RESEARCHER)  # not its owner, not named on it
    restrict = lambda: type(grounded_study).objects.filter(pk=grounded_study.pk).update(restricted=True)  # noqa: E731
    first, after = _follow(
        f"/ws/studies/{grounded_study.pk}/", _headers(client, researcher), study_group(grounded_study.pk), restrict
    )
    assert first == {"n": 1} and after == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}


def test_a_socket_whose_access_stands_keeps_getting_events(client, grounded_study):
    researcher = UserFactory(role=Role.RESEARCHER)
    first, after = _follow(
        f"/ws/studies/{grounded_study.pk}/", _headers(client, researcher), study_group(grounded_study.pk), lambda: None
    )
    assert first == {"n": 1}
    assert after["type"] == "websocket.send" and '"n": 2' in after["text"]


def test_the_job_list_socket_closes_when_the_admin_role_is_taken_away(client):
    admin = UserFactory(role=Role.ADMIN)
    job = Job.objects.create(kind="demo_training", config={})
    first, after = _follow(
        f"/ws/jobs/{job.pk}/",
        _headers(client, admin),
        job_group(job.pk),
        lambda: user_assign_roles(user=admin, roles=[Role.RESEARCHER]),
    )
    assert first == {"n": 1} and after == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}
