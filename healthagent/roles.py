"""Who may do what: the three roles and the one mechanism that enforces them.

Every view goes through :func:`role_required` (function views) or :class:`RoleRequiredMixin`
(class views); every websocket consumer through :func:`scope_has_role`. A user's roles are the
Django groups of the same names; a superuser holds every role.
"""

import functools
from collections.abc import Callable, Collection, Sequence
from contextvars import ContextVar
from functools import wraps
from typing import Any, cast

from django.apps import apps
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import AnonymousUser, Group, User
from django.contrib.auth.views import redirect_to_login
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DEFAULT_DB_ALIAS, connection, models, router, transaction
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.utils.functional import SimpleLazyObject, empty

from healthagent.joined import JoinedRead


class Role(models.TextChoices):
    CLINICIAN = "clinician", "Clinician"
    RESEARCHER = "researcher", "Researcher"
    ADMIN = "admin", "Admin"


# The roles that see a study's results (variants, every rater's scores): a study's raters must hold neither.
RESULTS_ROLES = (Role.RESEARCHER, Role.ADMIN)

# Where each role starts; the home page redirects there. Earlier roles win for a user with several.
ROLE_HOME_URL_NAMES = {
    Role.ADMIN: "modeling:job_list",
    Role.RESEARCHER: "evaluation:study_list",
    Role.CLINICIAN: "evaluation:queue",
}


def user_roles(user: User | AnonymousUser) -> frozenset[Role]:
    """The roles a user holds, cached on the user object for the request."""
    if not user.is_authenticated or not user.is_active:
        return frozenset()
    cached = getattr(user, "_healthagent_roles", None)
    if cached is None:
        if user.is_superuser:
            cached = frozenset(Role)
        else:
            names = set(user.groups.filter(name__in=Role.values).values_list("name", flat=True))
            cached = frozenset(Role(name) for name in names)
        cast(Any, user)._healthagent_roles = cached  # cached on the request's user object
    return cached


_USER_READ: JoinedRead | None = None
_USER_WITH_ROLES_SQL: str | None = None


def _user_with_roles_statement() -> tuple[JoinedRead, str]:
    """One statement, built once: the user's row and an EXISTS per role. Raw SQL: the ORM would compile the same
    query (three correlated subqueries) again on every request, which cost more than running it; prepared
    (``JoinedRead``), so PostgreSQL does not plan it again either."""
    global _USER_READ, _USER_WITH_ROLES_SQL
    if _USER_READ is None or _USER_WITH_ROLES_SQL is None:
        read = JoinedRead([(User, "u")])
        user = connection.ops.quote_name(User._meta.db_table)
        _USER_WITH_ROLES_SQL = f"SELECT {read.columns}, {', '.join(user_columns('u'))} FROM {user} u WHERE u.id = %s"
        _USER_READ = read
    return _USER_READ, _USER_WITH_ROLES_SQL


def role_columns(alias: str) -> list[str]:
    """One column per role, in Role's order, saying whether the user of table alias ``alias`` holds it; each takes
    the role's name as a parameter (``ROLE_NAMES``). For a statement that reads a user beside something else."""
    quote = connection.ops.quote_name
    group, through = quote(Group._meta.db_table), quote(User.groups.through._meta.db_table)
    return [
        f"EXISTS (SELECT 1 FROM {through} m JOIN {group} g ON g.id = m.group_id WHERE m.user_id = {alias}.id"
        " AND g.name = %s)"
        for _ in Role
    ]


def with_roles(user: User, flags: Sequence[Any]) -> User:
    """``user`` holding the roles ``role_columns`` read for it (what user_roles reads: no second query)."""
    held = (
        frozenset(Role)
        if user.is_superuser
        else frozenset(role for role, holds in zip(Role, flags, strict=True) if holds)
    )
    cast(Any, user)._healthagent_roles = held
    return user


ROLE_NAMES = tuple(Role.values)  # role_columns' parameters, in Role's order


def user_columns(alias: str) -> list[str]:
    """What every signed-in request reads of its user besides the row: ``role_columns`` (parameters ``ROLE_NAMES``),
    then the count of the user's unread notifications, which the navigation shows on every page. Counted in the
    user's own statement (an index probe: Notification's (user, read_at) index), it costs no round trip and is never
    stale, where a per-process cache of it missed for most of a large panel and lagged behind the other processes."""
    notification = apps.get_model("healthagent", "Notification")
    quote = connection.ops.quote_name
    meta = notification._meta
    owner, read_at = (quote(str(cast(models.Field, meta.get_field(name)).column)) for name in ("user", "read_at"))
    return [
        *role_columns(alias),
        f"(SELECT COUNT(*) FROM {quote(meta.db_table)} n WHERE n.{owner} = {alias}.id AND n.{read_at} IS NULL)",
    ]


USER_COLUMNS = len(ROLE_NAMES) + 1  # how many values user_columns adds to a row


def with_user_columns(user: User, values: Sequence[Any]) -> User:
    """``user`` holding what ``user_columns`` read for it: its roles and ``unread_notifications``."""
    with_roles(user, values[: len(ROLE_NAMES)])
    cast(Any, user).unread_notifications = int(values[len(ROLE_NAMES)] or 0)
    return user


# A user read with roles by the request's own statement, handed to the backend's get_user, once
# (authenticate_read_ahead): a list of at most one, emptied by the read that takes it.
_READ_AHEAD: ContextVar[list[User] | None] = ContextVar("user_read_ahead", default=None)


def user_with_roles(user_id: Any) -> User | None:
    """The user with this id and the roles they hold, read in one query, for the request's user: the authentication
    backends' ``get_user``, which every signed-in request calls."""
    pk = session_user_pk(user_id)
    if pk is None:
        return None  # not an id: a session that was tampered with, or of another user model
    ahead = _READ_AHEAD.get()
    if ahead and ahead[0].pk == pk:
        return ahead.pop()
    read, sql = _user_with_roles_statement()
    try:
        found = read.fetch_one_with_extra(sql, [*ROLE_NAMES, pk])
    except OverflowError:
        return None  # an id no user can have
    if found is None:
        return None
    (user,), values = found
    return with_user_columns(user, values)


def session_user_pk(user_id: Any) -> Any | None:
    try:
        return User._meta.pk.to_python(user_id)
    except (ValidationError, TypeError, ValueError):
        return None


def _user_unread(request) -> bool:
    """Whether the request's user is AuthenticationMiddleware's lazy one, not read yet (else: read already, or set by
    something other than AuthenticationMiddleware, and left as it is)."""
    user = request.__dict__.get("user")
    return isinstance(user, SimpleLazyObject) and user._wrapped is empty and "_cached_user" not in request.__dict__


def unread_session_user_pk(request) -> Any | None:
    """The user id the request's session names, while the request's user is not read yet (AuthenticationMiddleware
    reads it lazily, on first use); else None. A view that reads rows of that user can read the user in the same
    statement and hand it to :func:`authenticate_read_ahead`."""
    if not _user_unread(request) or not hasattr(request, "session"):
        return None
    user_id = request.session.get(auth.SESSION_KEY)
    return None if user_id is None else session_user_pk(user_id)


@functools.cache  # asked on each of a rated item's requests
def _database_stores() -> frozenset[type]:
    """The session stores whose record is their row of Django's session table, read as :func:`session_join` reads it:
    Django's database store, its cached one and this site's (healthagent.sessions), which write the database first."""
    from django.contrib.sessions.backends.cached_db import SessionStore as CachedDatabaseSessionStore

    from healthagent.sessions import SessionStore as SiteSessionStore

    return frozenset({DatabaseSessionStore, CachedDatabaseSessionStore, SiteSessionStore})


def unread_session(request) -> DatabaseSessionStore | None:
    """The request's session while neither it nor the request's user is read yet, when it is one of the stores of
    :func:`_database_stores` on the default database; else None. A view that reads rows of the session's user can read
    the session's row in the same statement (:func:`session_join`), the user being the one its own rows name, and hand
    it to :func:`adopt_session`: one round trip fewer (the session's read from the cache, or the database) on each of a
    rated item's requests."""
    if not _user_unread(request):
        return None
    session = getattr(request, "session", None)
    if not isinstance(session, DatabaseSessionStore) or type(session) not in _database_stores():
        return None
    if hasattr(session, "_session_cache") or not session.session_key:
        return None
    if router.db_for_read(type(session).get_model_class()) != DEFAULT_DB_ALIAS:
        return None
    return session


def session_join() -> str:
    """A join of the session's row, if it has not expired (no row otherwise, so nothing is read or locked): ``ds``,
    with two parameters, :func:`session_parameters`; its data is ``ds.session_data``. The store's own read's
    condition."""
    quote = connection.ops.quote_name
    meta = apps.get_model("sessions", "Session")._meta
    key, expiry = (
        quote(str(cast(models.Field, meta.get_field(name)).column)) for name in ("session_key", "expire_date")
    )
    return f" JOIN {quote(meta.db_table)} ds ON ds.{key} = %s AND ds.{expiry} > %s"


SESSION_DATA = "ds.session_data"


def session_parameters(session: DatabaseSessionStore) -> list[Any]:
    return [session.session_key, connection.ops.adapt_datetimefield_value(timezone.now())]  # as the ORM sends it


def adopt_session(session: DatabaseSessionStore, data: str, user_pk: Any) -> bool:
    """Whether the session's data, read through :func:`session_join`, names the user ``user_pk``; if it does, the store
    holds it from now on as if it had read it itself (decoded as it decodes it: a signature that does not hold gives
    an empty session), so nothing reads it again for the request."""
    decoded = session.decode(data)
    if session_user_pk(decoded.get(auth.SESSION_KEY)) != user_pk:
        return False
    cast(Any, session)._session_cache = decoded
    return True


def authenticate_read_ahead(request, user: User) -> bool:
    """Authenticate the request as every request is (Django's ``auth.get_user``: the session's backend, still listed;
    the session's hash of the password; the backend's ``user_can_authenticate``), with ``user``, read with its roles
    (``role_columns``) by the caller's own statement for :func:`unread_session_user_pk`, standing in for the backend's
    read of the user. Sets ``request.user``; True when it is ``user`` (a session that fails a check is signed out,
    as always)."""
    token = _READ_AHEAD.set([user])
    try:
        authenticated = auth.get_user(request)
    finally:
        _READ_AHEAD.reset(token)
    request._cached_user = authenticated  # what AuthenticationMiddleware's lazy request.user would have cached
    request.user = authenticated
    return authenticated.is_authenticated and authenticated.pk == user.pk


def user_has_role(user: User | AnonymousUser, *roles: Role) -> bool:
    return bool(user_roles(user) & set(roles))


def user_primary_role(user: User | AnonymousUser) -> Role | None:
    held = user_roles(user)
    return next((role for role in ROLE_HOME_URL_NAMES if role in held), None)


def role_refusal(request, *roles: Role) -> HttpResponseBase | None:
    """What :func:`role_required` answers a request it refuses (the login page for an anonymous one; a user without
    any of ``roles``: PermissionDenied, raised), else None. For a view that authenticates its request within its own
    work (evaluation.views.assignment_submit) and checks the role there, before anything else."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not user_has_role(request.user, *roles):
        raise PermissionDenied("Your role does not give access to this page.")
    return None


def role_required(*roles: Role) -> Callable:
    """Decorate a view: anonymous users go to the login page, users without a role get 403."""
    if not roles:
        raise ValueError("role_required needs at least one role.")

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            return role_refusal(request, *roles) or view(request, *args, **kwargs)

        cast(Any, wrapped).allowed_roles = frozenset(roles)  # read by the authorization tests
        return wrapped

    return decorator


class RoleRequiredMixin:
    """The class-view form of :func:`role_required`; set ``allowed_roles`` on the view."""

    allowed_roles: tuple[Role, ...] = ()

    @classmethod
    def as_view(cls, **initkwargs):
        if not cls.allowed_roles:
            raise ValueError(f"{cls.__name__} must set allowed_roles.")
        return role_required(*cls.allowed_roles)(super().as_view(**initkwargs))


def scope_has_role(scope: dict, *roles: Role) -> bool:
    """For websocket consumers: does the scope's authenticated user hold one of ``roles``?

    Call it from a sync context (``database_sync_to_async``) because it may query the groups.
    """
    return user_has_role(scope.get("user") or AnonymousUser(), *roles)


def user_assign_role(*, user: User, role: Role) -> None:
    """Give ``user`` exactly ``role``; admins are staff so they can use the Django admin too."""
    user_assign_roles(user=user, roles=[role])


def user_assign_roles(*, user: User, roles: Collection[Role]) -> None:
    """Give ``user`` exactly ``roles`` (possibly none); admins are staff so they can use the Django admin too."""
    with transaction.atomic():
        user.groups.remove(*Group.objects.filter(name__in=Role.values).exclude(name__in=roles))
        # get_or_create: the groups come from a data migration, which a flushed test database lacks.
        user.groups.add(*(Group.objects.get_or_create(name=role)[0] for role in roles))
        user.is_staff = Role.ADMIN in roles
        user.save(update_fields=["is_staff"])
    user.__dict__.pop("_healthagent_roles", None)  # the cached roles are stale now


# The adjudicator flag: a clinician the hospital names as a safety adjudicator, held as the Django group of this name.
# When single sign-on maps it (OIDC_ADJUDICATORS), the provider is its only source and only flagged clinicians may be
# named a study's adjudicators; without it, any clinician who does not rate the study may be.
ADJUDICATOR_GROUP = "safety-adjudicator"


def adjudicator_flag_required() -> bool:
    return bool(settings.OIDC_RP_CLIENT_ID and settings.OIDC_ADJUDICATORS)


def user_is_adjudicator(user: User | AnonymousUser) -> bool:
    return bool(user.is_authenticated and user.groups.filter(name=ADJUDICATOR_GROUP).exists())


def user_set_adjudicator(*, user: User, flag: bool) -> None:
    if flag:
        user.groups.add(Group.objects.get_or_create(name=ADJUDICATOR_GROUP)[0])
    else:
        user.groups.remove(*Group.objects.filter(name=ADJUDICATOR_GROUP))


def roles_context(request) -> dict:
    """Template context: the user's roles, so the navigation shows only what they may open. None on an error page of a
    request refused before its user was read (a host the site does not serve: Django's 400)."""
    user = getattr(request, "user", None)
    held = user_roles(user) if user is not None else frozenset()
    return {
        "user_roles": held,
        "is_clinician": Role.CLINICIAN in held,
        "is_researcher": Role.RESEARCHER in held,
        "is_admin": Role.ADMIN in held,
    }
