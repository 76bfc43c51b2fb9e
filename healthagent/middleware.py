"""Site-wide response rules that no single view should have to remember."""

import functools
import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponseBadRequest, JsonResponse
from django.utils.cache import add_never_cache_headers


class NoStoreMiddleware:
    """``Cache-Control: no-store`` on every page and data response of the site (issue 23): they carry participants'
    data, ratings or study results, which must stay out of the browser's disk cache and any shared cache on a hospital
    workstation. Static files are served (and cached) by WhiteNoise before this middleware is reached."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "no-store" not in response.get("Cache-Control", ""):
            del response["Cache-Control"]  # a view's private caching gives way: stored data is what must not be
            add_never_cache_headers(response)  # no-cache, no-store, must-revalidate, private, max-age=0
        return response


class NulCharacterMiddleware:
    """A 400 for a query or form field holding a NUL character (issue 23): no PostgreSQL text column keeps one, so
    it would otherwise be a server error wherever the value reaches a query or a row, and no browser sends one from
    what a person typed. Query strings and plain (url-encoded) forms, which every rating and study form is."""

    MESSAGE = "A field of this request holds a NUL character (\\x00), which no text field can keep: nothing was saved."

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        fields = [request.GET]
        # A plain form only: reading a multipart body here would consume the stream a view may read as a whole
        # (request.body), and an upload form's fields go through Django forms, which refuse NUL characters.
        if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
            fields.append(request.POST)
        for data in fields:
            if any("\x00" in key or any("\x00" in value for value in data.getlist(key)) for key in data):
                if request.path.startswith("/api/"):  # the API answers in JSON, refusals too
                    return JsonResponse({"detail": self.MESSAGE}, status=400)
                return HttpResponseBadRequest(self.MESSAGE, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


class SessionIdleMiddleware:
    """A session ends after ``SESSION_COOKIE_AGE`` seconds without a request: an active session's expiry (and its
    cookie's) moves forward, but at most every :meth:`renew_every_s`, so a clinician's requests do not each write
    their session (Django's SESSION_SAVE_EVERY_REQUEST would: three more queries on every rating page). A session
    therefore ends between the idle time less that interval and the idle time after its last request: a hundredth
    of it, at least a minute (4.8 minutes of the 8 hours' default), and at most a quarter (a short idle time)."""

    RENEW_EVERY_S = 60.0
    RENEWED_AT = "_renewed_at"

    @classmethod
    def renew_every_s(cls) -> float:
        """Every 60 s, a clinician rating an item every 30 s wrote their session on every other item (an update and
        a commit in the database, and the cache): under 1 % of the 8 hours' idle time, it was precision nobody
        needed (issue 27)."""
        age = settings.SESSION_COOKIE_AGE
        return min(max(cls.RENEW_EVERY_S, age / 100), age / 4)

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        # After the view, which has read the session if it reads the user (the rated item's views read it with their
        # own rows: evaluation.access), so this reads it again for no signed-in request; the renewal is saved by the
        # session middleware's answer, as a renewal made before the view was.
        session = getattr(request, "session", None)
        if session is not None and not session.is_empty():
            now = time.time()
            if now - session.get(self.RENEWED_AT, 0.0) >= self.renew_every_s():
                session[self.RENEWED_AT] = now  # modified: saved with a new expiry, and its cookie sent again
        return response


def session_renewed_at_login(sender, request, user, **kwargs) -> None:
    """A log-in writes a fresh session (with its expiry): the first request after it need not write it again."""
    if request is not None and hasattr(request, "session"):
        request.session[SessionIdleMiddleware.RENEWED_AT] = time.time()


@functools.cache
def content_security_policy() -> str:
    """The header's value, built once per process from the settings by django-csp's builder (built again after a
    test changes the setting: :func:`content_security_policy_changed`)."""
    from csp.utils import build_policy

    if getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None) or (
        (getattr(settings, "CONTENT_SECURITY_POLICY", None) or {}).get("EXCLUDE_URL_PREFIXES")
    ):
        raise ImproperlyConfigured(
            "healthagent.middleware.ContentSecurityPolicyMiddleware sends one policy on every response: a report-only "
            "policy or excluded URL prefixes want django-csp's csp.middleware.CSPMiddleware in MIDDLEWARE instead"
        )
    return build_policy()


def content_security_policy_changed(*, setting: str, **kwargs) -> None:
    """``setting_changed``: a test that changes the policy gets the header it set."""
    if setting.startswith("CONTENT_SECURITY_POLICY"):
        content_security_policy.cache_clear()


class ContentSecurityPolicyMiddleware:
    """The ``Content-Security-Policy`` header of ``settings.CONTENT_SECURITY_POLICY`` on every response, built once
    per process by django-csp's own builder (:func:`content_security_policy`). django-csp's middleware builds it again
    for each response (a deep copy of the policy parts, then the string: a fifth of a millisecond of every rated
    item's three requests), for the per-view policies, nonces, report-only policies and excluded URLs it offers; this
    site uses none of them (``tests/healthagent/test_csp.py`` checks the header is the one django-csp's middleware
    sends). A response that set its own keeps it; with ``DEBUG`` on, a 404 or 500 page (Django's debug page, with its
    inline script) gets none, as django-csp does."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.DEBUG and response.status_code in (404, 500):
            return response
        policy = content_security_policy()
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response
