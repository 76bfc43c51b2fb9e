"""Creating accounts with a role (the management commands and the demo call these)."""

from collections.abc import Collection

from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from healthagent.audit import Action, audit_record
from healthagent.roles import Role, user_assign_role, user_assign_roles, user_with_roles


class AccountError(Exception):
    pass


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' lockout check for every log-in that comes with a request (the login pages, the
    Django admin's, DRF). Authentication without a request (the test client's ``login()``, a shell)
    has no client to throttle: axes would raise there, so it is left to the next backend."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        super().authenticate(request, username, password, **kwargs)  # the pair: raises when it is locked out
        # Also per username (many addresses guessing one account's password) and per address (one address
        # spraying passwords over many accounts), each with its own, larger limit: axes counts one limit for all.
        since = timezone.now() - settings.AXES_COOLOFF_TIME
        recent = AccessAttempt.objects.filter(attempt_time__gte=since)
        for lookup, limit in (
            ({"username": username}, settings.LOGIN_FAILURE_LIMIT_PER_USERNAME),
            ({"ip_address": client_ip_address(request)}, settings.LOGIN_FAILURE_LIMIT_PER_ADDRESS),
        ):
            if (recent.filter(**lookup).aggregate(n=Sum("failures_since_start"))["n"] or 0) >= limit:
                request.axes_locked_out = True  # axes' middleware answers with the lockout page
                raise AxesBackendPermissionDenied("too many failed log-ins for this username or from this address")
        return None


class PasswordBackend(ModelBackend):
    """Django's username and password backend, whose ``get_user`` (every signed-in request) also reads the user's
    roles, in the same query."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        user = super().authenticate(request, username, password, **kwargs)
        if user is None and username is not None and password is not None:
            # Refused for good: the legacy ModelBackend listed after this one would check the password again.
            raise PermissionDenied("wrong username or password")
        return user

    def get_user(self, user_id):
        user = user_with_roles(user_id)
        return user if user is not None and self.user_can_authenticate(user) else None


def client_ip_address(request) -> str:
    """The client's address for login throttling: the peer, or, behind ``TRUSTED_PROXY_COUNT``
    proxies, the X-Forwarded-For entry the outermost trusted proxy saw (entries further left can
    be forged by the client)."""
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if proxies > 0 and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "")


def user_create_with_role(
    *,
    username: str,
    role: Role,
    password: str | None,
    email: str = "",
    validate: bool = True,
    actor: User | None = None,
    via: str = "",
) -> User:
    """Create an active user holding exactly ``role`` (audited); raise AccountError and write nothing on bad input."""
    return user_create_with_roles(
        username=username, roles=[role], password=password, email=email, validate=validate, actor=actor, via=via
    )


def user_create_with_roles(
    *,
    username: str,
    roles: Collection[Role],
    password: str | None,
    email: str = "",
    is_active: bool = True,
    validate: bool = True,
    actor: User | None = None,
    via: str = "",
) -> User:
    """Create a user holding exactly ``roles`` (audited); ``password=None`` gives an unusable password
    (an admin must set one). Raise AccountError and write nothing on bad input."""
    if User.objects.filter(username=username).exists():
        raise AccountError(f"A user named {username!r} already exists.")
    user = User(username=username, email=email, is_active=is_active)
    try:
        user.full_clean(exclude=["password"])
        if validate and password is not None:
            validate_password(password, user)
    except ValidationError as error:
        raise AccountError("; ".join(error.messages)) from error
    with transaction.atomic():
        user.set_password(password)  # None: an unusable password
        user.save()
        user_assign_roles(user=user, roles=roles)
        audit_record(
            actor=actor,
            via=via,
            action=Action.USER_CREATED,
            target=user,
            details={"roles": sorted(str(role) for role in roles)},
        )
    return user


def demo_user_ensure(*, username: str, role: Role, password: str) -> User:
    """Create or reset a demo account, so re-running the demo always prints working credentials."""
    with transaction.atomic():
        user, _ = User.objects.get_or_create(username=username)
        user.set_password(password)
        user.is_active = True
        user.save()
        user_assign_role(user=user, role=role)
    return user
