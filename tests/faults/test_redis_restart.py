"""Fault: Redis (channel layer and broker) restarts while a study is open.

A daphne process on the test database and a private Redis; a researcher's dashboard open in
Chromium; a clinician rating over HTTP. While Redis is down, ratings still commit (only the live
notification is lost); when it is back, the dashboard's websocket reconnects and updates again.
"""

import os
import shutil
import socket

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from evaluation.models import Rating
from loadtest.services import RedisServer
from loadtest.stack import WebServer
from tests.conftest import service_missing

pytestmark = [pytest.mark.services, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def private_redis(tmp_path):
    if shutil.which("redis-server") is None:
        service_missing("Redis is not installed (Debian package 'redis-server')")
    server = RedisServer(port=free_port(), folder=tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def site(private_redis, tmp_path, grounded_study):
    """One daphne process serving the test database, with the private Redis as its channel layer."""
    if connection.vendor != "postgresql":
        service_missing("PostgreSQL is not configured: the server process needs a database it can share")
    database = settings.DATABASES["default"]
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "healthagent.settings",
        "HEALTHAGENT_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"postgres://{database['USER']}:{database.get('PASSWORD') or ''}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "REDIS_URL": private_redis.url,
        "SECRET_KEY": settings.SECRET_KEY,
        "ANONYMIZATION_KEY": settings.ANONYMIZATION_KEY,
        "TRAJECTORY_ROOT": str(settings.TRAJECTORY_ROOT),
        "DEBUG": "1",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    server = WebServer(environment=environment, processes=1, log_path=tmp_path / "daphne.log").start()
    yield server
    server.stop()


def session_cookie(user) -> str:
    client = Client()  # one per user: logging a second user in on the same client would end the first one's session
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def rate_next_item(http: httpx.Client, study_id: int, dimensions: list[str]) -> int:
    """Open the clinician's next item and rate it; returns the assignment id once the submit is acknowledged."""
    item_url = http.get(f"/evaluation/queue/{study_id}/next/").headers["location"]
    http.get(item_url).raise_for_status()
    form = {f"score-{key}": "4" for key in dimensions}
    response = http.post(
        f"{item_url}submit/",
        data={**form, "csrfmiddlewaretoken": http.cookies["csrftoken"], "time_spent_s": "20"},
        headers={"Referer": f"{http.base_url}{item_url}"},
    )
    # Saved: the next item's page, which the submit answers with (named by its Content-Location; the submit hands it
    # out, and the next call to the queue returns it), or a redirect to the queue's page at its end. Back to this
    # item's form would mean not saved.
    assert response.status_code in (200, 302), response.text[:500]
    location = response.headers.get("content-location" if response.status_code == 200 else "location", "")
    assert location != item_url, response.text[:500]
    assert location.startswith("/evaluation/items/") or location.endswith(f"/queue/{study_id}/next/"), location
    return int(item_url.rstrip("/").rsplit("/", 1)[1])


def test_ratings_commit_while_redis_is_down_and_the_dashboard_reconnects(
    site, private_redis, grounded_study, researcher, browser
):
    from playwright.sync_api import expect

    dimensions = list(grounded_study.rubric.dimensions.values_list("key", flat=True))
    clinician = grounded_study.clinicians.order_by("pk").first()
    context = browser.new_context(base_url=site.url)
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session_cookie(researcher), "url": site.url}])
    page = context.new_page()
    page.goto(f"/evaluation/studies/{grounded_study.pk}/dashboard/")
    dashboard = page.locator("[data-dashboard]")
    expect(dashboard).to_have_attribute("data-live", "true", timeout=20_000)

    with httpx.Client(
        base_url=site.url, cookies={settings.SESSION_COOKIE_NAME: session_cookie(clinician)}, timeout=30
    ) as http:
        rated = [rate_next_item(http, grounded_study.pk, dimensions)]
        expect(dashboard).to_have_attribute("data-refreshed", "1", timeout=15_000)

        private_redis.stop()
        expect(dashboard).to_have_attribute("data-live", "false", timeout=20_000)
        rated.append(rate_next_item(http, grounded_study.pk, dimensions))  # acknowledged with Redis down
        assert Rating.objects.filter(assignment_id=rated[-1]).exists()

        private_redis.start()  # empty: the groups of the old server are gone, so subscribers must re-join
        expect(dashboard).to_have_attribute("data-live", "true", timeout=45_000)
        refreshed = int(dashboard.get_attribute("data-refreshed") or 0)
        rated.append(rate_next_item(http, grounded_study.pk, dimensions))
        expect(dashboard).to_have_attribute(
            "data-refreshed", str(refreshed + 1), timeout=15_000
        )  # by the websocket, not the 30 s poll
    assert Rating.objects.filter(assignment_id__in=rated).count() == 3
    context.close()
