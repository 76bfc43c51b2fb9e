"""CSRF: every URL of the site (and the Django admin's forms) refuses a POST without the CSRF
token, made by a user whose role may use that URL; the same POST with the token gets past the check."""

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils.crypto import get_random_string

from tests.factories import UserFactory
from tests.test_authorization import DJANGO_ADMIN_URLS, FORBIDDEN, LOGIN, MATRIX, ROLES

pytestmark = pytest.mark.django_db

REFUSED = (LOGIN, FORBIDDEN, 401)
# Read-only API views that authenticate nobody (the public OpenAPI schema): no session, so no CSRF to check; a POST
# is refused by the method (405) and changes nothing.
GET_ONLY_WITHOUT_SESSION = {"api:schema"}
# API writes a session may not make at all (they need a token with the write scope, and a token is not a cookie):
# a signed-in admin's POST is refused whatever it carries, so there is no CSRF check to get past.
TOKEN_ONLY_WRITES = {name for name, spec in MATRIX.items() if all(spec["expected"][role] in REFUSED for role in ROLES)}


def allowed_role(url_name: str) -> str:
    if url_name in TOKEN_ONLY_WRITES:
        return "admin"
    expected = MATRIX[url_name]["expected"]
    return next(role for role in ROLES if expected[role] not in REFUSED)


def csrf_client(role: str):
    client = Client(enforce_csrf_checks=True)
    user = None if role == "anonymous" else UserFactory(role=role)
    if user:
        client.force_login(user)
    return client, user


@pytest.mark.parametrize("url_name", sorted(MATRIX))
def test_every_url_refuses_a_post_without_the_csrf_token(url_name, grounded_study):
    spec = MATRIX[url_name]
    client, user = csrf_client(allowed_role(url_name))
    objects = {"cohort": grounded_study.items.first().participant.cohort, "study": grounded_study}
    kwargs = spec["kwargs"](objects, user) if callable(spec["kwargs"]) else spec["kwargs"]
    response = client.post(reverse(url_name, kwargs=kwargs) + spec["query"], {"status": "closed", "comment": "forged"})
    if url_name in GET_ONLY_WITHOUT_SESSION:
        assert response.status_code == 405, f"{url_name}: {response.status_code}"
        return
    assert response.status_code == 403, f"{url_name}: {response.status_code}"
    if url_name not in TOKEN_ONLY_WRITES:
        assert b"CSRF" in response.content


@pytest.mark.parametrize("url_name", [name for name in DJANGO_ADMIN_URLS if name.endswith("_add")] + ["admin:logout"])
def test_django_admin_forms_refuse_a_post_without_the_csrf_token(url_name):
    client, _ = csrf_client("admin")
    response = client.post(reverse(url_name), {"name": "forged", "username": "forged"})
    assert response.status_code == 403 and b"CSRF" in response.content


@pytest.mark.parametrize(
    "url_name",
    sorted(name for name, spec in MATRIX.items() if spec["method"] == "post" and name not in TOKEN_ONLY_WRITES),
)
def test_the_same_post_with_the_token_gets_past_the_check(url_name, grounded_study):
    """The control: the 403 above is the CSRF check, not the view refusing the request."""
    spec = MATRIX[url_name]
    role = allowed_role(url_name)
    client, user = csrf_client(role)
    objects = {"cohort": grounded_study.items.first().participant.cohort, "study": grounded_study}
    kwargs = spec["kwargs"](objects, user) if callable(spec["kwargs"]) else spec["kwargs"]
    token = get_random_string(32)  # a CSRF secret: the cookie, and the same value sent back as the token
    client.cookies[settings.CSRF_COOKIE_NAME] = token
    response = client.post(
        reverse(url_name, kwargs=kwargs) + spec["query"], "{}", content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    if url_name in GET_ONLY_WITHOUT_SESSION:
        assert response.status_code == 405
        return
    assert response.status_code in (200, 302, 400), (url_name, response.status_code)  # the view's own answer
    assert b"CSRF verification failed" not in response.content and b"CSRF Failed" not in response.content
