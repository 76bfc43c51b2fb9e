"""A rated item's chart by the link its page minted (evaluation.chart_links, issue 27): the web server's application
answers it from the chart's file without Django's request machinery or the database, with the bytes and headers the
chart view sends; a link that does not hold for this request (expired, tampered, another item's, another session's,
no gzip, not over HTTPS) goes to the chart view, which checks access as always."""

import base64
import gzip
import io
import json
import re
import sys
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

import pytest
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.urls import reverse

from evaluation import chart_links
from evaluation.assignment import assignment_next
from evaluation.chart_links import serve_chart_links
from healthagent.wsgi import one_piece

pytestmark = pytest.mark.django_db

CHART_URL = re.compile(r'data-minute-figure-url="([^"]+)"')
# Headers whose value is the moment's, or which only the session's own answer carries.
MOMENT = {"Date", "Expires", "Set-Cookie"}


class Server:
    """The WSGI application a web server runs (as healthagent.wsgi builds it), called the way a server calls it, and
    how many requests reached Django."""

    def __init__(self):
        self.reached_django = 0
        django = one_piece(WSGIHandler())

        def counted(environ, start_response):
            self.reached_django += 1
            return django(environ, start_response)

        self.application = serve_chart_links(counted)

    def get(self, url: str, *, session: str | None, gzip_ok: bool = True, https: bool = True, method="GET", **headers):
        parts = urlsplit(url)
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": unquote_to_bytes(parts.path).decode("latin-1"),  # as a server gives it (PEP 3333)
            "QUERY_STRING": parts.query,
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "443" if https else "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "testserver",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.url_scheme": "https" if https else "http",
            "wsgi.errors": sys.stderr,
            **({"HTTP_COOKIE": f"{settings.SESSION_COOKIE_NAME}={session}"} if session else {}),
            **({"HTTP_ACCEPT_ENCODING": "gzip, deflate, br"} if gzip_ok else {}),
            **headers,
        }
        answer: dict = {}

        def start_response(status, response_headers, exc_info=None):
            answer["status"] = int(status.split()[0])
            answer["headers"] = response_headers

        # As Django's test client: a request's start and end would close the test's connection, inside its transaction.
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            answer["body"] = b"".join(self.application(environ, start_response))
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
        return answer


def headers_of(answer) -> dict:
    return {name: value for name, value in answer["headers"] if name not in MOMENT}


@pytest.fixture
def item(client, grounded_study):
    """A clinician signed in at their first item, its chart's file built (by the first request of its link, as the
    study's chart job would have), and the page's chart address."""
    rater = grounded_study.clinicians.order_by("pk").first()
    assignment = assignment_next(study=grounded_study, rater=rater)
    client.force_login(rater)
    page_url = reverse("evaluation:assignment", args=[assignment.pk])
    chart_url = reverse("evaluation:assignment_chart", args=[assignment.pk])
    linked = CHART_URL.search(client.get(page_url).content.decode()).group(1)
    assert linked.startswith(chart_url + "?link=")  # a link whether the file is built or not
    assert not list(Path(settings.CHART_ROOT).rglob("*.json.gz"))
    server = Server()
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert server.get(linked, session=session)["status"] == 200 and server.reached_django == 1  # the view built it
    assert len(list(Path(settings.CHART_ROOT).rglob("*.json.gz"))) == 1
    return {
        "rater": rater,
        "assignment": assignment,
        "page": page_url,
        "chart": chart_url,
        "linked": linked,
        "session": client.cookies[settings.SESSION_COOKIE_NAME].value,
    }


def test_a_linked_chart_is_served_from_its_file_without_django_or_the_database_as_the_view_serves_it(
    item, django_assert_num_queries, settings
):
    settings.SECURE_HSTS_SECONDS = 3600  # as in production: HSTS on every HTTPS response
    server = Server()
    with django_assert_num_queries(0):
        linked = server.get(item["linked"], session=item["session"])
    assert server.reached_django == 0
    viewed = server.get(item["chart"], session=item["session"])  # the chart view, through Django, as before
    assert server.reached_django == 1
    assert linked["status"] == viewed["status"] == 200
    assert linked["body"] == viewed["body"] and len(json.loads(gzip.decompress(linked["body"]))["data"]) == 8
    assert headers_of(linked) == headers_of(viewed)  # ETag, no-store, CSP, HSTS, nosniff, frame, referrer, length...
    names = dict(linked["headers"])
    assert names["Strict-Transport-Security"].startswith("max-age=3600")
    assert "no-store" in names["Cache-Control"] and names["Content-Encoding"] == "gzip" and names["Expires"]
    # The browser's copy is current: a 304, as the view answers.
    again = server.get(item["linked"], session=item["session"], HTTP_IF_NONE_MATCH=names["ETag"])
    assert again["status"] == 304 and not again["body"] and server.reached_django == 1


def test_every_link_has_the_same_length_whatever_the_participant():
    """AES-GCM hides what is sealed, not its length: the participant's id in the file's name must not show in it."""
    root = Path(settings.CHART_ROOT)
    links = {
        chart_links.chart_link(
            url=f"/evaluation/items/{item}/chart.json",
            file=root / "v4" / f"p{participant}" / f"{'a' * 40}.json.gz",
            etag='"' + "b" * 32 + '-gzip"',
            session_key="s" * 32,
        )
        for item, participant in ((7, 1), (7, 12345), (7, 1234567890))
    }
    assert len(links) == 3 and len({len(link) for link in links}) == 1


def test_a_link_tells_nothing_of_the_participant_or_of_other_items(client, item, grounded_study):
    token = item["linked"].split("?link=")[1]
    sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    participant = item["assignment"].item.participant
    file = next(Path(settings.CHART_ROOT).rglob("*.json.gz"))
    for telling in (participant.pseudonym, participant.trajectory_path, file.name[:12], f"p{participant.pk}/", "gzip"):
        assert telling.encode() not in sealed and telling not in token
    # The same page again, or another item's page, gets a link unlike it.
    again = CHART_URL.search(client.get(item["page"]).content.decode()).group(1)
    assert again != item["linked"] and again.split("?")[0] == item["chart"]


@pytest.mark.parametrize(
    "change",
    ["expired", "tampered", "other session", "no session", "no gzip", "other item", "not https", "other host"],
)
def test_a_link_that_does_not_hold_for_the_request_goes_to_the_chart_view(
    client, item, grounded_study, monkeypatch, settings, change
):
    url, session, options = item["linked"], item["session"], {}
    if change == "expired":
        now = chart_links.time.time()
        monkeypatch.setattr(chart_links.time, "time", lambda: now + settings.CHART_LINK_SECONDS + 1)
    elif change == "tampered":
        token = url.split("?link=")[1]
        url = url.replace(token, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    elif change == "other session":
        client.logout()
        client.force_login(item["rater"])  # the same clinician, signed in anew: a new session
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
        assert session != item["session"]
    elif change == "no session":
        session = None
    elif change == "no gzip":
        options = {"gzip_ok": False}
    elif change == "other item":
        other = assignment_next(study=grounded_study, rater=grounded_study.clinicians.order_by("pk")[1])
        url = url.replace(item["chart"], reverse("evaluation:assignment_chart", args=[other.pk]))
    elif change == "not https":
        settings.SECURE_SSL_REDIRECT = True
        options = {"https": False}
    elif change == "other host":
        options = {"HTTP_HOST": "elsewhere.example"}
    server = Server()  # after the settings' change: Django's middlewares read them as they start
    answer = server.get(url, session=session, **options)
    assert server.reached_django == 1  # the chart view decided
    expected = {
        "expired": 200,  # still the clinician's own item: the view serves it, after its check
        "tampered": 200,
        "other session": 200,
        "no session": 302,  # signed out: the sign-in page
        "no gzip": 200,
        "other item": 404,  # not this clinician's item
        "not https": 301,
        "other host": 400,
    }[change]
    assert answer["status"] == expected, answer["body"][:300]


@pytest.mark.parametrize(
    "query",
    ["{token}==", "{token}&x=%00", "{token}&other=1", "other=1&{token}", "link=", "link=abc", "link={token}x"],
)
def test_only_a_query_that_is_exactly_one_link_is_answered_without_django(item, query):
    """Padding, another parameter, a NUL character: Django's middlewares decide (a NUL is their 400)."""
    token = item["linked"].split("?")[1]
    bare = token.removeprefix("link=")
    url = (
        item["chart"]
        + "?"
        + query.format(token=token if query.startswith("{") else bare).replace("link=link=", "link=")
    )
    server = Server()
    answer = server.get(url, session=item["session"])
    assert server.reached_django == 1
    assert answer["status"] == (400 if "%00" in query else 200)


def test_a_post_or_a_path_django_cannot_route_goes_to_django(item):
    server = Server()
    token = item["linked"].split("?")[1]
    assert server.get(item["linked"], session=item["session"], method="POST")["status"] in (403, 405)
    # A path a link was not minted for, not ASCII: Django's 404, not a server error.
    assert server.get("/%E2%82%AC?" + token, session=item["session"])["status"] == 404
    assert server.reached_django == 2


def test_a_link_of_a_clinician_no_longer_in_the_study_holds_only_for_its_lifetime(item, grounded_study, monkeypatch):
    """What the link trades (evaluation.chart_links): the chart just shown can be read again for the link's lifetime
    after the clinician's access ends; after it, the view's check refuses."""
    grounded_study.clinicians.remove(item["rater"])
    server = Server()
    assert server.get(item["linked"], session=item["session"])["status"] == 200 and server.reached_django == 0
    now = chart_links.time.time()
    monkeypatch.setattr(chart_links.time, "time", lambda: now + settings.CHART_LINK_SECONDS + 1)
    assert server.get(item["linked"], session=item["session"])["status"] == 404 and server.reached_django == 1


def test_links_off_give_the_plain_address(client, item, settings):
    settings.CHART_LINK_SECONDS = 0
    assert CHART_URL.search(client.get(item["page"]).content.decode()).group(1) == item["chart"]


def test_the_web_server_s_application_answers_links_itself(item, django_assert_num_queries):
    """healthagent.wsgi's application (what granian and gunicorn run) has the links' answer in front of Django."""
    from healthagent.wsgi import application

    started = []

    def count(**kwargs):
        started.append(kwargs)

    request_started.connect(count)
    try:
        server = Server()
        server.application = application
        with django_assert_num_queries(0):
            linked = server.get(item["linked"], session=item["session"])
        assert linked["status"] == 200 and not started
        assert server.get(item["chart"], session=item["session"])["status"] == 200 and len(started) == 1
    finally:
        request_started.disconnect(count)
