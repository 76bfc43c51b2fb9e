"""A rated item's chart read by a short-lived address that its page's access check minted (issue 27).

The item page has checked, in its read, that the assignment is the clinician's own (``evaluation.access``). It then
names its chart's file in the chart's address, sealed (AES-GCM, under a key derived from ``SECRET_KEY``) together
with the session it was minted for, the address's own path and an expiry ``CHART_LINK_SECONDS`` ahead. The web
server's application (``healthagent.wsgi``) answers such a request before Django's request machinery: the seal
opens for this path, the link has not expired, the request's session cookie is the one sealed in, the browser takes
gzip, the request is one Django would serve (its host allowed, over HTTPS where the site requires it) → the file's
bytes, with the headers the chart view's response carries (its ETag, ``no-store``, the site's security headers,
through the same middlewares). Anything else (no link, an expired, tampered or another session's one, a file not
there) goes to the chart view, which checks access from the database as before: the link only skips a check the
page made moments before, and a page is never worse off for having one.

Measured by leaving the chart's request out of a rated item, the request cost 1.1-1.3 ms of the web server's CPU per
rated item (session 31, docs/load-and-faults.md): a tenth of it.

What it trades: for the link's lifetime, a clinician whose access ends (removed from the study, signed out in another
tab) can still read the chart of the page they were just shown, and only that. The address names neither the
participant nor the window in anything the browser can read (a fresh nonce each time: two items' addresses, or two
views of one item, tell nothing of each other), and the ETag is the chart view's own, salted by the assignment.
"""

import base64
import hashlib
import hmac
import os
import re
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpResponse
from django.http.response import HttpResponseBase
from django.middleware.gzip import re_accepts_gzip
from django.utils.cache import get_conditional_response, patch_vary_headers
from django.utils.http import quote_etag
from django.utils.module_loading import import_string

# The query parameter that carries a link; the chart view ignores it.
PARAMETER = "link"
NONCE_BYTES = 12
# What is sealed, padded to this length: AES-GCM hides the content, not its length, and the file's name holds the
# participant's id, whose digits would otherwise show in the link's length (two links of different lengths could not
# be the same participant). A name too long for it (never, for the store's names) gets no link: the view serves it.
PAYLOAD_BYTES = 192
TAG_BYTES = 16
TOKEN_CHARS = len(base64.urlsafe_b64encode(bytes(NONCE_BYTES + PAYLOAD_BYTES + TAG_BYTES)).rstrip(b"="))
# A link is the whole query, exactly: anything else (another parameter, padding, a character a strict decoder would
# refuse) goes to Django, whose middlewares may refuse it (a NUL character in a parameter, say).
LINK_QUERY = re.compile(rf"{PARAMETER}=[A-Za-z0-9_-]{{{TOKEN_CHARS}}}")

# The middlewares whose part of a response is its headers, in settings.MIDDLEWARE's order: a linked chart's response
# goes through them as the chart view's does. The others read the session, the user, the CSRF cookie, messages, the
# lockout list or static files: a chart's response gets nothing from them (tests/evaluation/test_chart_links.py
# compares the two responses' headers).
HEADER_MIDDLEWARES = (
    "django.middleware.security.SecurityMiddleware",
    "healthagent.middleware.NoStoreMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "healthagent.middleware.ContentSecurityPolicyMiddleware",
)


def chart_etag(*, key: str, salt: str, compressed: bool) -> str:
    """The chart's ETag: a digest (``key`` names the trajectory file, which the browser has no business seeing), made
    the caller's own by ``salt`` (an item's: equal ETags would say that two items show the same data), one per
    encoding."""
    digest = hashlib.sha256((salt + key).encode()).hexdigest()[:32]
    return quote_etag(f"{digest}-gzip" if compressed else digest)


def _key() -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), b"evaluation.chart_links", hashlib.sha256).digest()


def _session_digest(session_key: str) -> str:
    return hashlib.sha256(session_key.encode()).hexdigest()[:32]


def _chart_root() -> Path:
    # Not resolved: the files are named under it as configured (healthagent.cohort.charts), and a sealed name cannot
    # be forged, so it needs no check against climbing out (a resolve() cost the link a fifth of its time).
    return Path(settings.CHART_ROOT)


def chart_link(*, url: str, file: Path, etag: str, session_key: str | None, now: float | None = None) -> str:
    """``url`` with a link to ``file`` (the chart's gzip file under ``CHART_ROOT``, served with ``etag``; built or not:
    a link to a file not there yet goes to the view) for the session ``session_key``; ``url`` alone when there is
    nothing to link (no session, links off): the chart view serves it then."""
    lifetime = settings.CHART_LINK_SECONDS
    if not session_key or lifetime <= 0:
        return url
    try:
        relative = file.relative_to(_chart_root())
    except ValueError:
        return url  # not a file of the chart store: the view serves it
    expires = int((time.time() if now is None else now) + lifetime)
    payload = f"{expires}\n{_session_digest(session_key)}\n{etag}\n{relative.as_posix()}\n".encode()
    if len(payload) > PAYLOAD_BYTES:
        return url
    payload = payload.ljust(PAYLOAD_BYTES, b" ")
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(_key()).encrypt(nonce, payload, url.encode())
    token = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()
    return f"{url}?{PARAMETER}={token}"


def opened_link(*, path: str, token: str, session_key: str | None, now: float | None = None) -> tuple[Path, str] | None:
    """The file and ETag the link ``token`` names, if it was minted for ``path`` and this session and has not expired;
    else None."""
    if not session_key:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = AESGCM(_key()).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], path.encode())
        expires, session, etag, relative, _padding = payload.decode().split("\n")
    except (ValueError, InvalidTag):
        return None
    if int(expires) < (time.time() if now is None else now):
        return None
    if not hmac.compare_digest(session, _session_digest(session_key)):
        return None
    return _chart_root() / relative, etag


def _headers_chain():
    """The header middlewares around a view that returns the response it is given (``request.linked_response``)."""
    handler = lambda request: request.linked_response  # noqa: E731 - the innermost "view"
    for name in reversed(HEADER_MIDDLEWARES):
        # Each layer turns an exception into its response (a 403 for a refused user agent...), as Django's handler.
        handler = convert_exception_to_response(import_string(name)(handler))
    return handler


def serve_chart_links(app):
    """``app`` answering a chart request that carries a valid link itself, from the file, as described above; every
    other request, and a linked one that does not hold, goes to ``app``."""
    chain = None
    start = len(PARAMETER) + 1

    def application(environ, start_response):
        nonlocal chain
        query = environ.get("QUERY_STRING", "")
        if environ.get("REQUEST_METHOD") != "GET" or not LINK_QUERY.fullmatch(query):
            return app(environ, start_response)
        response = _linked_response(environ, query[start:])
        if response is None:
            return app(environ, start_response)
        if chain is None:
            chain = _headers_chain()
        request, response = response
        request.linked_response = response
        response = chain(request)
        status = f"{response.status_code} {response.reason_phrase}"
        headers = [*response.items(), *(("Set-Cookie", cookie.OutputString()) for cookie in response.cookies.values())]
        start_response(status, headers)
        return [response.content]

    return application


def _linked_response(environ, token: str) -> tuple[WSGIRequest, HttpResponseBase] | None:
    # A copy: WSGIRequest rewrites PATH_INFO and SCRIPT_NAME decoded, which Django would decode again if the link
    # does not hold and the request goes on to it.
    request = WSGIRequest(dict(environ))
    try:
        request.get_host()  # as Django's handler would: a host the site does not serve goes there for its 400
    except DisallowedHost:
        return None
    if settings.SECURE_SSL_REDIRECT and not request.is_secure():
        return None  # Django redirects it to HTTPS
    if not re_accepts_gzip.search(request.headers.get("Accept-Encoding", "")):
        return None  # the view serves the plain JSON
    opened = opened_link(path=request.path, token=token, session_key=request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    if opened is None:
        return None
    file, etag = opened
    response: HttpResponseBase | None = get_conditional_response(request, etag=etag)  # as the view
    if response is None:
        try:
            response = HttpResponse(file.read_bytes(), content_type="application/json")
        except OSError:
            return None  # not built yet, or gone (its participant deleted): the view builds it, or decides
        response["Content-Disposition"] = 'inline; filename="chart.json"'
        response["Content-Encoding"] = "gzip"
    response["ETag"] = etag
    # As the view's: it reads the session (whose middleware adds Cookie), and a link holds for its session only.
    patch_vary_headers(response, ("Accept-Encoding", "Cookie"))
    return request, response
