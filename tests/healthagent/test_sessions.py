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


def test_a_log_out_removes_the_cached_copy_which_is_json_not_a_pickle(client, redis_url):
    import json

    import redis
    from django.conf import settings

    client.force_login(UserFactory(role=Role.RESEARCHER))
    assert client.get(reverse("evaluation:study_list")).status_code == 200
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    server = redis.Redis.from_url(redis_url)
    stored = [name for name in server.keys("*") if name.decode().endswith(key)]
    assert len(stored) == 1
    assert "_auth_user_id" in json.loads(server.get(stored[0]))  # JSON: loading it runs no code
    assert 0 < server.ttl(stored[0]) <= settings.SESSION_CACHE_SECONDS
    client.logout()
    assert not server.exists(stored[0])


def test_a_session_signed_in_before_the_roles_backend_still_works(client):
    from django.contrib.auth import authenticate

    user = UserFactory(role=Role.RESEARCHER)
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")  # as sessions made before it
    assert client.get(reverse("evaluation:study_list")).status_code == 200
    assert authenticate(username=user.username, password="wrong") is None
    assert authenticate(username=user.username, password=DEFAULT_PASSWORD) == user


def test_the_session_cache_keeps_one_redis_client_and_it_works(redis_url):
    from django.core.cache import caches

    cache = caches["sessions"]
    assert cache._cache.get_client() is cache._cache.get_client(write=False)  # not a new client per call
    cache.set("one-client", {"a": 1}, 30)
    assert cache.get("one-client") == {"a": 1}
    cache.delete("one-client")
    assert cache.get("one-client") is None
