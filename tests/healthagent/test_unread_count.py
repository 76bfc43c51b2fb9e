"""The unread count beside the user's name: read with the request's user in its one statement (roles.user_columns),
on every page, never stale (a per-process cache of it missed for most of a large panel and lagged other processes)."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from healthagent.models import Notification
from healthagent.notifications import notify
from healthagent.roles import Role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _unread_shown(client, url):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    shown = re.search(r'data-unread="(\d+)"', response.content.decode())
    assert shown is not None
    counts = [query["sql"] for query in captured.captured_queries if "healthagent_notification" in query["sql"]]
    assert len(counts) == 1 and "auth_group" in counts[0]  # inside the user's statement, never a query of its own
    return int(shown.group(1))


def test_a_notification_shows_at_the_next_request_and_marking_read_clears_it(client):
    clinician = UserFactory(role=Role.CLINICIAN)
    client.force_login(clinician)
    queue = reverse("evaluation:queue")
    assert _unread_shown(client, queue) == 0
    notify(users=[clinician], text="a study was opened for you")  # as another web process or a worker would
    notify(users=[UserFactory(role=Role.CLINICIAN)], text="someone else's")
    assert _unread_shown(client, queue) == 1
    notify(users=[clinician], text="a second one")
    assert _unread_shown(client, queue) == 2
    response = client.post(reverse("notifications"))
    assert response.status_code == 302
    assert _unread_shown(client, queue) == 0
    assert Notification.objects.filter(read_at__isnull=True).count() == 1  # the other person's stays unread


def test_the_rating_page_read_ahead_carries_the_count_too(client, grounded_study):
    clinician = grounded_study.clinicians.order_by("pk").first()
    client.force_login(clinician)
    location = client.get(reverse("evaluation:study_next", args=[grounded_study.pk]))["Location"]
    notify(users=[clinician], text="one")
    assert _unread_shown(client, location) == 1
