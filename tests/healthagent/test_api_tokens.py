"""API tokens (issue 23): a researcher makes one on their account page, sees its secret once, uses it on the API
until it expires or they revoke it; the database keeps only a hash; nobody else can list or revoke it; every
creation and revocation is audited."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken

from healthagent.models import AuditEntry
from healthagent.roles import Role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def make_token(client, days: int = 30) -> tuple[str, str]:
    """Post the account page's form; the secret the page shows, and the token's key."""
    page = client.post(reverse("account_token_create"), {"days": str(days)}).content.decode()
    secret = re.search(r'value="([^"]+)" aria-label="New API token"', page).group(1)
    return secret, AuthToken.objects.get(token_key=secret[:15]).token_key


def api(client, secret: str) -> int:
    return client.get(reverse("api:studies"), HTTP_AUTHORIZATION=f"Token {secret}").status_code


def test_a_token_works_until_revoked_and_is_stored_only_as_a_hash(client, settings):
    researcher = UserFactory(role=Role.RESEARCHER)
    client.force_login(researcher)
    secret, key = make_token(client, days=7)
    token = AuthToken.objects.get(token_key=key)
    assert secret not in str(AuthToken.objects.values_list().get(pk=token.pk))  # the row holds a digest, not it
    assert abs(token.expiry - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    page = client.get(reverse("account")).content.decode()
    assert key in page and secret not in page  # listed by its first characters; the secret is shown only once

    client.logout()
    assert api(client, secret) == 200
    client.force_login(researcher)
    response = client.post(reverse("account_token_revoke", args=[key]), follow=True)
    assert "revoked" in response.content.decode()
    client.logout()
    assert api(client, secret) == 401
    actions = list(AuditEntry.objects.order_by("pk").values_list("action", flat=True))
    assert actions == [AuditEntry.Action.API_TOKEN_CREATED, AuditEntry.Action.API_TOKEN_REVOKED]


def test_a_token_stops_working_when_it_expires(client):
    researcher = UserFactory(role=Role.RESEARCHER)
    client.force_login(researcher)
    secret, key = make_token(client, days=1)
    client.logout()
    assert api(client, secret) == 200
    AuthToken.objects.filter(token_key=key).update(expiry=timezone.now() - timedelta(seconds=1))
    assert api(client, secret) == 401


def test_lifetimes_beyond_the_maximum_and_clinicians_tokens_are_refused(client, settings):
    researcher = UserFactory(role=Role.RESEARCHER)
    client.force_login(researcher)
    for days in ("0", str(settings.API_TOKEN_MAX_DAYS + 1), "forever"):
        response = client.post(reverse("account_token_create"), {"days": days}, follow=True)
        assert "Not made" in response.content.decode()
    assert not AuthToken.objects.exists()
    client.force_login(UserFactory(role=Role.CLINICIAN))
    assert client.post(reverse("account_token_create"), {"days": "5"}).status_code == 403
    assert "API tokens" not in client.get(reverse("account")).content.decode()


def test_nobody_else_sees_or_revokes_a_users_token(client):
    owner = UserFactory(role=Role.RESEARCHER)
    client.force_login(owner)
    secret, key = make_token(client)
    for other in (UserFactory(role=Role.RESEARCHER), UserFactory(role=Role.ADMIN)):
        client.force_login(other)
        assert key not in client.get(reverse("account")).content.decode()
        response = client.post(reverse("account_token_revoke", args=[key]), follow=True)
        assert "Not revoked: no such token of yours" in response.content.decode()
    client.logout()
    assert api(client, secret) == 200


def test_a_user_holds_at_most_the_limit_of_tokens(client, settings):
    settings.API_TOKEN_LIMIT_PER_USER = 2
    client.force_login(UserFactory(role=Role.RESEARCHER))
    make_token(client)
    make_token(client)
    response = client.post(reverse("account_token_create"), {"days": "3"}, follow=True)
    assert "the most one may hold: revoke one first" in response.content.decode()
    assert AuthToken.objects.count() == 2
