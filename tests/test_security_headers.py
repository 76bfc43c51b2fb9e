"""The headers a browser gets: in the production profile HTTPS only (redirect, HSTS, secure
cookies), and in every profile the Content Security Policy, no framing, no sniffing."""

import json
import time

import pytest
from django.urls import reverse

from tests.test_project_checks import PRODUCTION_ENV, run_manage

# Runs inside `manage.py shell` in the production profile: what a browser would see.
PROBE = """
import json
from django.conf import settings
from django.test import Client, override_settings
client = Client(HTTP_HOST="evaluation.example.org")
# Static URLs from the finders: this probe runs without collectstatic's manifest.
with override_settings(STORAGES={**settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}):
    plain = client.get("/login/")
    secure = client.get("/login/", secure=True)
cookie = secure.cookies["csrftoken"]
print(json.dumps({
    "plain_status": plain.status_code, "plain_location": plain.get("Location", ""),
    "status": secure.status_code, "headers": dict(secure.headers),
    "csrf_cookie": {"secure": bool(cookie["secure"]), "httponly": bool(cookie["httponly"]), "samesite": cookie["samesite"]},
    "session_cookie_secure": settings.SESSION_COOKIE_SECURE, "session_cookie_httponly": settings.SESSION_COOKIE_HTTPONLY,
}))
"""


def production_probe(tmp_path) -> dict:
    result = run_manage("shell", "-c", PROBE, env_overrides={**PRODUCTION_ENV, "HEALTHAGENT_VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_profile_is_https_only_with_hsts_and_secure_cookies(tmp_path):
    probe = production_probe(tmp_path)
    assert probe["plain_status"] == 301 and probe["plain_location"] == "https://evaluation.example.org/login/"
    assert probe["status"] == 200
    headers = {key.lower(): value for key, value in probe["headers"].items()}
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"
    assert probe["csrf_cookie"] == {"secure": True, "httponly": True, "samesite": "Lax"}
    assert probe["session_cookie_secure"] is True and probe["session_cookie_httponly"] is True
    assert_browser_protections(headers)


def assert_browser_protections(headers: dict) -> None:
    policy = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'" and policy["script-src"] == "'self'"  # no inline script, no eval
    assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
    assert policy["form-action"] == "'self'"
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"


def test_the_local_profile_sends_the_same_policy_without_hsts(client):
    response = client.get(reverse("login"))
    headers = {key.lower(): value for key, value in response.headers.items()}
    assert_browser_protections(headers)
    assert "strict-transport-security" not in headers


@pytest.mark.django_db
def test_every_page_and_data_response_is_no_store(client, grounded_study):
    from evaluation.assignment import assignment_next

    clinician = grounded_study.clinicians.first()
    assignment = assignment_next(study=grounded_study, rater=clinician)
    client.force_login(clinician)
    for url in (
        reverse("evaluation:queue"),
        reverse("evaluation:assignment", args=[assignment.pk]),
        reverse("evaluation:assignment_chart", args=[assignment.pk]),
    ):
        assert "no-store" in client.get(url)["Cache-Control"], url
    client.force_login(grounded_study.created_by)
    assert (
        "no-store" in client.get(reverse("evaluation:study_export", args=[grounded_study.pk, "csv"]))["Cache-Control"]
    )


@pytest.mark.django_db
def test_a_session_ends_after_the_idle_time_and_each_request_renews_it(client, clinician, settings):
    assert settings.SESSION_COOKIE_AGE == 8 * 3600  # the default: a shift
    settings.SESSION_COOKIE_AGE = 2
    client.force_login(clinician)
    for _ in range(3):  # active: 3 s in all, never 2 s idle
        time.sleep(1)
        assert client.get(reverse("evaluation:queue")).status_code == 200
    time.sleep(2.5)
    assert client.get(reverse("evaluation:queue")).status_code == 302  # idle: back to the login page


def test_an_active_session_is_written_a_hundredth_of_its_idle_time_apart(settings):
    """8 hours idle: renewed at most every 4.8 minutes, so a clinician rating an item every 30 s does not write their
    session every other item; a short idle time keeps its quarter, a middling one its minute."""
    from healthagent.middleware import SessionIdleMiddleware

    assert SessionIdleMiddleware.renew_every_s() == 8 * 3600 / 100
    settings.SESSION_COOKIE_AGE = 30 * 60
    assert SessionIdleMiddleware.renew_every_s() == 60
    settings.SESSION_COOKIE_AGE = 2
    assert SessionIdleMiddleware.renew_every_s() == 0.5


@pytest.mark.django_db
def test_a_host_the_site_does_not_serve_gets_a_400_not_a_server_error(client):
    """Refused before its user is read (CommonMiddleware checks the host), the request's error page is rendered with
    the site's context processors, which must not need a user."""
    client.raise_request_exception = False
    for path in ("/", reverse("evaluation:queue")):
        answer = client.get(path, HTTP_HOST="elsewhere.example")
        assert answer.status_code == 400 and b"Server Error" not in answer.content
