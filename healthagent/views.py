from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.defaults import page_not_found
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from healthagent.audit import audit_entries
from healthagent.health import service_status, worker_status
from healthagent.invitations import InvitationError, access_invitation, invitation_accept
from healthagent.models import AuditEntry
from healthagent.notifications import notifications_for, notifications_mark_read
from healthagent.roles import ROLE_HOME_URL_NAMES, Role, role_required, user_has_role, user_primary_role
from healthagent.tokens import API_ROLES, TokenError, api_token_create, api_token_revoke, api_tokens_of


def not_found(request, exception):
    """The 404 of a URL that matches nothing: JSON under ``/api/`` (a script reads it), else the 404 page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


@login_required
def home(request):
    """Send each user to their role's page; a user with no role is told so instead of a 403."""
    role = user_primary_role(request.user)
    if role is None:
        return render(request, "healthagent/no_role.html", status=403)
    return redirect(ROLE_HOME_URL_NAMES[role])


@never_cache
@require_GET
def health(request):
    """For load balancers and monitors: 200 ``{"status": "ok"}`` when every service answers, 503
    ``{"status": "unavailable"}`` otherwise. Which service failed and why (host names, error text) is for admins only:
    signed in, or on the system page."""
    status = service_status()
    body = status if user_has_role(request.user, Role.ADMIN) else {}
    return JsonResponse(
        {"status": "ok" if status["ok"] else "unavailable", **body}, status=200 if status["ok"] else 503
    )


@role_required(Role.ADMIN)
def system_status(request):
    status = service_status()
    workers = worker_status() if request.GET.get("workers") else None
    return render(request, "healthagent/system_status.html", {"status": status, "workers": workers})


@role_required(Role.ADMIN)
def audit_log(request):
    """The audit log, newest first, filtered by action; read-only like the log itself."""
    action = request.GET.get("action", "")
    page = Paginator(audit_entries(action=action), 100).get_page(request.GET.get("page"))
    return render(
        request, "healthagent/audit_log.html", {"page": page, "action": action, "actions": AuditEntry.Action.choices}
    )


@role_required(Role.CLINICIAN, Role.RESEARCHER, Role.ADMIN)
@require_http_methods(["GET", "POST"])
def notifications(request):
    """The user's notifications, newest first; posting marks them all read."""
    if request.method == "POST":
        notifications_mark_read(user=request.user)
        return redirect("notifications")
    page = Paginator(notifications_for(user=request.user), 50).get_page(request.GET.get("page"))
    return render(request, "healthagent/notifications.html", {"page": page})


@login_required
@require_GET
def account(request):
    """The user's own page: who they are, their roles and, for researchers and admins, their API tokens."""
    may_use_api = user_has_role(request.user, *API_ROLES)
    return render(
        request,
        "healthagent/account.html",
        {
            "may_use_api": may_use_api,
            "tokens": api_tokens_of(request.user) if may_use_api else [],
            "max_days": settings.API_TOKEN_MAX_DAYS,
        },
    )


@role_required(*API_ROLES)
@require_POST
def account_token_create(request):
    """Make a token; its secret is on the page this returns, once (never stored, so never shown again)."""
    try:
        days = int(request.POST.get("days") or settings.API_TOKEN_MAX_DAYS)
        token, secret = api_token_create(user=request.user, days=days, scope=request.POST.get("scope") or "read")
    except ValueError:
        messages.error(request, "Not made: the number of days must be a whole number.")
        return redirect("account")
    except TokenError as error:
        messages.error(request, f"Not made: {error}.")
        return redirect("account")
    return render(
        request,
        "healthagent/account.html",
        {
            "may_use_api": True,
            "tokens": api_tokens_of(request.user),
            "max_days": settings.API_TOKEN_MAX_DAYS,
            "new_token": token,
            "new_secret": secret,
        },
    )


@role_required(*API_ROLES)
@require_POST
def account_token_revoke(request, token_key: str):
    try:
        api_token_revoke(user=request.user, token_key=token_key)
    except TokenError as error:
        messages.error(request, f"Not revoked: {error}.")
    else:
        messages.success(request, f"Token {token_key}… revoked: it no longer opens the API.")
    return redirect("account")


@never_cache
@require_http_methods(["GET", "POST"])
def invitation_accept_view(request, token: str):
    """An invitation's link: choose a user name and a password, and the account exists with the invited role (signed
    in at once). A link that does not work says why, with 410; a signed-in visitor is asked to sign out first."""
    if not settings.PASSWORD_LOGIN:  # the account it would make could never sign in
        refused = f"passwords are switched off here: sign in with {settings.OIDC_PROVIDER_NAME} instead"
        return render(request, "healthagent/invitation.html", {"refused": refused}, status=410)
    try:
        invitation = access_invitation(token=token)
    except InvitationError as error:
        return render(request, "healthagent/invitation.html", {"refused": str(error)}, status=410)
    context = {"invitation": invitation, "username": invitation.email.split("@")[0]}
    if request.user.is_authenticated:
        return render(request, "healthagent/invitation.html", {**context, "signed_in": True})
    if request.method == "POST":
        username, password = request.POST.get("username", ""), request.POST.get("password", "")
        context["username"] = username
        if password != request.POST.get("password_again", ""):
            context["error"] = "the two passwords differ"
        else:
            try:
                user, said = invitation_accept(token=token, username=username, password=password)
            except InvitationError as error:
                context["error"] = str(error)
            else:
                login(request, user, backend="healthagent.accounts.PasswordBackend")
                messages.success(request, " ".join([f"Welcome, {user.get_username()}.", *said]))
                return redirect("home")
    return render(request, "healthagent/invitation.html", context, status=400 if "error" in context else 200)


class SiteLoginView(LoginView):
    """The login page: the password form unless ``PASSWORD_LOGIN`` is off, and the single sign-on button when it is
    configured. With password login off a posted password is refused before any account is looked up."""

    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        return {
            **super().get_context_data(**kwargs),
            "password_login": settings.PASSWORD_LOGIN,
            "sso_name": settings.OIDC_PROVIDER_NAME if settings.OIDC_RP_CLIENT_ID else "",
        }

    def post(self, request, *args, **kwargs):
        if not settings.PASSWORD_LOGIN:
            messages.error(request, f"Passwords are switched off here: sign in with {settings.OIDC_PROVIDER_NAME}.")
            return redirect("login")
        return super().post(request, *args, **kwargs)


def _sso_configured() -> None:
    if not settings.OIDC_RP_CLIENT_ID:
        raise Http404("single sign-on is not configured")


@never_cache
def sso_login(request):
    """Off to the identity provider (mozilla-django-oidc: state, nonce, PKCE)."""
    _sso_configured()
    return OIDCAuthenticationRequestView.as_view()(request)


@never_cache
def sso_callback(request):
    """Back from the identity provider: the code exchanged, the person signed in or refused (healthagent.sso)."""
    _sso_configured()
    return OIDCAuthenticationCallbackView.as_view()(request)
