"""API tokens: made, listed and revoked by their owner only (the account page), each with an expiry.

Tokens are django-rest-knox's: the database keeps a hash of each (and its first characters, to find it), never the
token itself, which its owner sees once. Only researchers and admins, who may use the API, can make one; nobody
can make or list another user's, not even an admin (the admin group has no knox permissions, see apps.py).
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from knox.models import AuthToken

from healthagent.audit import Action, audit_record
from healthagent.models import ApiTokenScope
from healthagent.roles import Role, user_has_role

API_ROLES = (Role.RESEARCHER, Role.ADMIN)


class TokenError(Exception):
    """A token request refused; the message says why."""


def api_tokens_of(user: User) -> QuerySet[AuthToken]:
    """``user``'s tokens that still work, newest first (with their scopes)."""
    return AuthToken.objects.filter(user=user, expiry__gt=timezone.now()).select_related("scope").order_by("-created")


def api_token_may_write(token: object) -> bool:
    """Whether a request's token (``request.auth``) has the write scope; a token without a scope row reads only."""
    if not isinstance(token, AuthToken):
        return False
    return ApiTokenScope.objects.filter(token=token, scope=ApiTokenScope.Scope.WRITE).exists()


def api_token_create(*, user: User, days: int, scope: str = ApiTokenScope.Scope.READ) -> tuple[AuthToken, str]:
    """A new token for ``user`` valid ``days`` days (1 to ``API_TOKEN_MAX_DAYS``) with ``scope`` (read, or write as
    well): the stored token and the secret, which is shown once and kept nowhere."""
    if scope not in ApiTokenScope.Scope.values:
        raise TokenError("a token's scope is read or write")
    if not user_has_role(user, *API_ROLES):
        raise TokenError("the API is for researchers and admins")
    if not 1 <= days <= settings.API_TOKEN_MAX_DAYS:
        raise TokenError(f"a token lasts 1 to {settings.API_TOKEN_MAX_DAYS} days")
    limit = settings.API_TOKEN_LIMIT_PER_USER
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()  # one creation at a time per user: the limit holds
        if api_tokens_of(user).count() >= limit:
            raise TokenError(f"you have {limit} tokens, the most one may hold: revoke one first")
        token, secret = AuthToken.objects.create(user=user, expiry=timedelta(days=days))
        ApiTokenScope.objects.create(token=token, scope=scope)
        audit_record(
            actor=user,
            action=Action.API_TOKEN_CREATED,
            target=user,
            details={"token": token.token_key, "expires": token.expiry.isoformat(), "scope": scope},
        )
    return token, secret


def api_token_revoke(*, user: User, token_key: str) -> None:
    """Revoke one of ``user``'s tokens (another user's is refused like a missing one)."""
    with transaction.atomic():
        deleted, _ = AuthToken.objects.filter(user=user, token_key=token_key).delete()
        if not deleted:
            raise TokenError("no such token of yours")
        audit_record(actor=user, action=Action.API_TOKEN_REVOKED, target=user, details={"token": token_key})
