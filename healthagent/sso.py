"""Single sign-on with OpenID Connect: mozilla-django-oidc does the protocol (authorization code with PKCE, the ID
token's signature against the provider's keys, the userinfo call); this module decides who gets in and as what.

- People are matched by the provider's subject (``sub``), never by email: a local account that shares an email
  address with someone at the provider is not taken over.
- Roles come only from ``OIDC_ROLE_CLAIM`` through the ``OIDC_ROLES`` map, at every sign-in (the provider is the
  source of truth: a person removed from a group loses the role). A claim value that is not mapped gives nothing; a
  person with no mapped value is refused, with a message, and no account is made.
- The adjudicator flag (healthagent.roles) follows the same claim through ``OIDC_ADJUDICATORS`` when that is set; it
  is given to clinicians only.
- Accounts are made on first sign-in with an unusable password and audited like any other.
"""

import logging
import re
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import User
from django.core import checks
from django.db import transaction
from django.db.models import QuerySet
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from healthagent.accounts import user_create_with_roles
from healthagent.audit import Action, audit_record
from healthagent.models import SingleSignOnIdentity
from healthagent.roles import (
    Role,
    user_assign_roles,
    user_is_adjudicator,
    user_roles,
    user_set_adjudicator,
    user_with_roles,
)

logger = logging.getLogger(__name__)


def role_map(text: str) -> dict[Role, set[str]]:
    """``OIDC_ROLES`` read: "clinician=clinicians|doctors,admin=it" -> {clinician: {clinicians, doctors}, admin: {it}}.
    Raises ValueError naming a role that is not one of ours."""
    mapping: dict[Role, set[str]] = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        role, _, values = part.partition("=")
        if role.strip() not in {str(choice) for choice in Role}:
            raise ValueError(f"OIDC_ROLES names {role.strip()!r}, not one of clinician, researcher, admin")
        mapping[Role(role.strip())] = {value.strip() for value in values.split("|") if value.strip()}
    return mapping


def sso_settings_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """A system check (``manage.py check``, and every start): a role map that names no role of ours, or single
    sign-on switched on without the endpoints or a role map, is an error at start rather than a 500 at sign-in."""
    problems: list[checks.CheckMessage] = []
    try:
        mapping = role_map(settings.OIDC_ROLES)
    except ValueError as error:
        problems.append(
            checks.Error(
                str(error), hint="OIDC_ROLES=clinician=doctors|nurses,researcher=research", id="healthagent.E101"
            )
        )
        mapping = {}
    if settings.OIDC_RP_CLIENT_ID:
        missing = [
            name
            for name in (
                "OIDC_OP_AUTHORIZATION_ENDPOINT",
                "OIDC_OP_TOKEN_ENDPOINT",
                "OIDC_OP_USER_ENDPOINT",
                # A shared-secret signature (HS256) needs no provider keys.
                *(() if settings.OIDC_RP_SIGN_ALGO.startswith("HS") else ("OIDC_OP_JWKS_ENDPOINT",)),
            )
            if not getattr(settings, name)
        ]
        if missing:
            problems.append(
                checks.Error(
                    f"single sign-on is on (OIDC_RP_CLIENT_ID) but {', '.join(missing)} is not set",
                    hint="manage.py oidc_discover ISSUER prints them",
                    id="healthagent.E102",
                )
            )
        if not any(mapping.values()):
            problems.append(
                checks.Error(
                    "single sign-on is on but OIDC_ROLES maps no claim value to a role: everyone would be refused",
                    id="healthagent.E103",
                )
            )
    return problems


def roles_from_claims(claims: dict[str, Any]) -> set[Role]:
    """The roles the configured claim's values map to (none for an absent claim or unmapped values)."""
    values = _claim_values(claims)
    return {role for role, accepted in role_map(settings.OIDC_ROLES).items() if values & accepted}


def adjudicator_from_claims(claims: dict[str, Any]) -> bool:
    """Whether the configured claim holds one of the ``OIDC_ADJUDICATORS`` values (the adjudicator flag)."""
    accepted = {value.strip() for value in settings.OIDC_ADJUDICATORS.split("|") if value.strip()}
    return bool(accepted & _claim_values(claims))


def _claim_values(claims: dict[str, Any]) -> set[str]:
    given = claims.get(settings.OIDC_ROLE_CLAIM)
    return (
        set(given) if isinstance(given, list) else set(re.split(r"[\s,]+", given)) if isinstance(given, str) else set()
    )


def _free_username(claims: dict[str, Any]) -> str:
    base = claims.get("preferred_username") or (claims.get("email") or "").split("@")[0] or f"sso-{claims['sub']}"
    base = re.sub(r"[^\w.@+-]", "", str(base))[:140] or "sso-user"
    candidate, number = base, 1
    while User.objects.filter(username=candidate).exists():
        number += 1
        candidate = f"{base}-{number}"
    return candidate


class HospitalOIDCBackend(OIDCAuthenticationBackend):
    def get_user(self, user_id):
        # With the roles, in one query (every signed-in request). A deactivated account's requests are anonymous from
        # here on, as ModelBackend's are (the library's get_user does not check): the login page, not a 403 on every
        # page. (Its session is not deleted: reactivating the account would revive it, as with passwords.)
        user = user_with_roles(user_id)
        return user if user is not None and self.user_can_authenticate(user) else None

    def user_can_authenticate(self, user) -> bool:
        return getattr(user, "is_active", True)

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        if not claims.get("sub"):
            return False
        if not roles_from_claims(claims):
            logger.warning(
                "single sign-on refused for subject %s: no mapped role in %r",
                claims.get("sub"),
                claims.get(settings.OIDC_ROLE_CLAIM),
            )
            messages.error(
                self.request,
                f"Signed in at {settings.OIDC_PROVIDER_NAME}, but your account there holds none of the roles this site "
                "gives (clinician, researcher, admin): ask an admin to add you to the right group.",
            )
            return False
        return True

    def filter_users_by_claims(self, claims: dict[str, Any]) -> QuerySet[User]:
        return User.objects.filter(sso_identity__subject=str(claims["sub"]))

    def create_user(self, claims: dict[str, Any]) -> User:
        with transaction.atomic():
            user = user_create_with_roles(
                username=_free_username(claims),
                roles=sorted(roles_from_claims(claims)),
                password=None,
                email=claims.get("email", ""),
                via="single sign-on",
            )
            user.first_name = str(claims.get("name") or "")[:150]
            user.save(update_fields=["first_name"])
            SingleSignOnIdentity.objects.create(user=user, subject=str(claims["sub"]))
            self._sync_adjudicator(user, claims)
        return user

    def _sync_adjudicator(self, user: User, claims: dict[str, Any]) -> None:
        """The adjudicator flag follows the claim when OIDC_ADJUDICATORS maps it (audited when it changes)."""
        if not settings.OIDC_ADJUDICATORS:
            return
        flag = adjudicator_from_claims(claims) and Role.CLINICIAN in roles_from_claims(claims)
        if flag != user_is_adjudicator(user):
            user_set_adjudicator(user=user, flag=flag)
            audit_record(
                actor=None,
                via="single sign-on",
                action=Action.USER_ROLES_CHANGED,
                target=user,
                details={"adjudicator": flag},
            )

    def update_user(self, user: User, claims: dict[str, Any]) -> User:
        """Roles follow the claim at every sign-in (audited when they change)."""
        roles = roles_from_claims(claims)
        if roles != set(user_roles(user)):
            with transaction.atomic():
                before = sorted(str(role) for role in user_roles(user))
                user_assign_roles(user=user, roles=roles)
                audit_record(
                    actor=None,
                    via="single sign-on",
                    action=Action.USER_ROLES_CHANGED,
                    target=user,
                    details={"before": before, "after": sorted(str(role) for role in roles)},
                )
        with transaction.atomic():
            self._sync_adjudicator(user, claims)
        return user
