"""Login throttling (django-axes): wrong passwords lock out one username from one address, with a
clear page; a right password before the limit resets the count; an admin unlocks."""

import pytest
from axes.models import AccessAttempt
from django.test import Client, RequestFactory
from django.urls import reverse

from healthagent.accounts import client_ip_address
from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def log_in(username, password, address="10.0.0.1"):
    client = Client(REMOTE_ADDR=address)
    return client, client.post(reverse("login"), {"username": username, "password": password})


@pytest.fixture
def limit(settings):
    return settings.AXES_FAILURE_LIMIT


def test_wrong_passwords_lock_the_username_from_that_address(limit, clinician):
    for _ in range(limit - 1):
        assert log_in(clinician.username, "wrong")[1].status_code == 200  # the form again, with its error
    locked = log_in(clinician.username, "wrong")[1]
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Too many failed log-ins" in page and clinician.username in page and "ask an administrator" in page
    # Locked even with the right password now; another address and another user are not.
    assert log_in(clinician.username, DEFAULT_PASSWORD)[1].status_code == 429
    assert log_in(clinician.username, DEFAULT_PASSWORD, address="10.0.0.2")[1].status_code == 302
    other = UserFactory(role="researcher")
    assert log_in(other.username, DEFAULT_PASSWORD)[1].status_code == 302


def test_one_username_guessed_from_many_addresses_is_locked_everywhere(limit, clinician, settings):
    settings.LOGIN_FAILURE_LIMIT_PER_USERNAME = 2 * limit
    for address in ("10.0.1.1", "10.0.1.2"):
        for _ in range(limit - 1):  # under the pair's limit at each address
            log_in(clinician.username, "wrong", address=address)
    log_in(clinician.username, "wrong", address="10.0.1.3")
    log_in(clinician.username, "wrong", address="10.0.1.4")  # 2 * limit in all
    assert log_in(clinician.username, DEFAULT_PASSWORD, address="10.0.1.5")[1].status_code == 429
    assert log_in(UserFactory(role="researcher").username, DEFAULT_PASSWORD, address="10.0.1.5")[1].status_code == 302


def test_one_address_spraying_many_usernames_is_locked_for_all(limit, clinician, settings):
    settings.LOGIN_FAILURE_LIMIT_PER_ADDRESS = 3 * (limit - 1)
    for name in ("alice", "bob", "carol"):  # under the pair's limit for each username
        for _ in range(limit - 1):
            log_in(name, "wrong", address="10.0.2.1")
    assert log_in(clinician.username, DEFAULT_PASSWORD, address="10.0.2.1")[1].status_code == 429
    assert log_in(clinician.username, DEFAULT_PASSWORD, address="10.0.2.2")[1].status_code == 302


def test_a_successful_login_resets_the_count(limit, clinician):
    for _ in range(limit - 1):
        log_in(clinician.username, "wrong")
    assert log_in(clinician.username, DEFAULT_PASSWORD)[1].status_code == 302
    for _ in range(limit - 1):
        assert log_in(clinician.username, "wrong")[1].status_code == 200


def test_the_django_admin_login_is_throttled_too(limit, admin_user):
    client = Client(REMOTE_ADDR="10.0.0.3")
    for _ in range(limit):
        response = client.post(reverse("admin:login"), {"username": admin_user.username, "password": "wrong"})
    assert response.status_code == 429


def test_an_admin_unlocks_a_locked_account(limit, clinician, admin_user):
    for _ in range(limit):
        log_in(clinician.username, "wrong")
    attempt = AccessAttempt.objects.get(username=clinician.username)
    admin = Client()
    admin.force_login(admin_user)
    assert clinician.username in admin.get(reverse("admin:axes_accessattempt_changelist")).content.decode()
    response = admin.post(reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert log_in(clinician.username, DEFAULT_PASSWORD)[1].status_code == 302


def test_the_client_address_behind_trusted_proxies(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip_address(request) == "10.1.1.1"  # no proxy trusted: the header is ignored
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip_address(request) == "203.0.113.9"  # what our proxy saw; the forged left entry is not used


def test_logins_without_a_request_still_work(clinician):
    """The test client's login() (and a shell's authenticate()) pass no request: nothing to throttle, nothing refused."""
    assert Client().login(username=clinician.username, password=DEFAULT_PASSWORD)
    assert not Client().login(username=clinician.username, password="wrong")
