"""A person logging in through the real form in Chromium, once per role."""

import pytest

from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LANDING = {
    "clinician": ("/evaluation/queue/", "My queue"),
    "researcher": ("/evaluation/studies/", "Studies"),
    "admin": ("/modeling/jobs/", "Jobs"),
}


def log_in(page, username, password):
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


@pytest.mark.parametrize("role", sorted(LANDING))
def test_each_role_logs_in_and_lands_on_its_page(role, live_server, page):
    user = UserFactory(role=role)
    log_in(page, user.username, DEFAULT_PASSWORD)
    path, heading = LANDING[role]
    page.wait_for_url(f"{live_server.url}{path}")
    assert page.get_by_role("heading", level=1).inner_text() == heading
    assert user.username in page.locator(".who").inner_text()
    # The stylesheet and the vendored scripts are served (no CDN).
    for asset in ("/static/css/site.css", "/static/vendor/htmx-2.0.11.min.js", "/static/plotly/plotly.min.js"):
        assert page.request.get(asset).ok, asset

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{live_server.url}/login/")


def test_a_wrong_password_is_refused_with_a_message(page):
    user = UserFactory(role="clinician")
    log_in(page, user.username, "not-the-password")
    assert "/login/" in page.url
    assert "correct username and password" in page.get_by_role("alert").inner_text()


def test_a_clinician_cannot_open_the_job_list(page):
    user = UserFactory(role="clinician")
    log_in(page, user.username, DEFAULT_PASSWORD)
    page.wait_for_url("**/evaluation/queue/")
    response = page.goto("/modeling/jobs/")
    assert response.status == 403
    assert page.get_by_role("heading", level=1).inner_text() == "Not allowed"
