"""Sessions read from Redis and kept in PostgreSQL (healthagent/sessions.py), and the user read with their roles."""

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from healthagent.roles import Role
from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def _queries(client, url):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    return response, [query["sql"] for query in captured.captured_queries]


def test_a_signed_in_request_reads_its_session_from_redis_and_the_user_with_roles_in_one_query(client, redis_url):
    client.force_login(UserFactory(role=Role.RESEARCHER))
    response, queries = _queries(client, reverse("evaluation:study_list"))
    assert response.status_code == 200
    assert not any("django_session" in sql for sql in queries)
    assert [sql for sql in queries if "auth_user" in sql and "auth_group" in sql] == queries[:1]  # with the roles
    assert sum("auth_user" in sql for sql in queries) == 1


def test_with_redis_unreachable_sessions_work_from_the_database(client, settings, redis_url):
    settings.CACHES = {
        **settings.CACHES,
        "sessions": {**settings.CACHES["sessions"], "LOCATION": "redis://127.0.0.1:9/0"},  # nothing listens there
    }
    user = UserFactory(role=Role.RESEARCHER)
    assert client.login(username=user.username, password=DEFAULT_PASSWORD)  # saved in the database only
    response, queries = _queries(client, reverse("evaluation:study_list"))
    assert response.status_code == 200 and any("django_session" in sql for sql in queries)
    client.logout()
    assert not Session.objects.exists()
    assert client.get(reverse("evaluation:study_list")).status_code == 302  # to the log-in page


def test_a_session_deleted_in_the_database_stops_at_once(client, redis_url):
    client.force_login(UserFactory(role=Role.RESEARCHER))
    assert client.get(reverse("evaluation:study_list")).status_code == 200  # cached now
    Session.objects.all().delete()  # an operator signing everyone out
    assert client.get(reverse("evaluation:study_list")).status_code == 302
