import logging
import os
from importlib import import_module

from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse
from django.urls import get_resolver

from evaluation.chart_links import serve_chart_links

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthagent.settings")
logger = logging.getLogger("django.request")

# What a WSGI server sets for a request (PEP 3333): every other key of the process's own environment is not the
# request's.
REQUEST_KEYS = frozenset(
    {
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "REMOTE_HOST",
        "RAW_URI",
        "REQUEST_URI",
    }
)


def without_process_environment(app, process_environment=os.environ):
    """``app`` given each request's environ without the keys the server copied from its own process environment.

    granian starts every request's environ from ``os.environ`` (gunicorn does not): the secrets of the environment
    (``SECRET_KEY``, ``DATABASE_URL`` with its password, ...) would be in ``request.META``, where an error report shows
    whatever its filter does not recognise as secret, and a variable named ``HTTP_*`` would pass for a header the
    client never sent. The keys are listed once, at start-up; a request header of the same name and value as a
    process variable ``HTTP_*`` is dropped with it."""
    leaked = tuple(name for name in process_environment if name not in REQUEST_KEYS and not name.startswith("HTTP_"))
    headers = tuple((name, value) for name, value in process_environment.items() if name.startswith("HTTP_"))

    def application(environ, start_response):
        for name in leaked:
            environ.pop(name, None)
        for name, value in headers:
            if environ.get(name) == value:
                del environ[name]
        return app(environ, start_response)

    return application


def one_piece(app):
    """``app`` with each response whose body is already in memory (an ``HttpResponse``: pages, redirects, the charts'
    files) returned as a list of its one piece, closed first (Django's end of the request: ``request_finished``).

    A WSGI server sends a list in one go; any other iterable it walks: granian hands each piece from Python to its
    Rust side separately, holding the interpreter's lock (granian/wsgi.py ``response_iter``: 7-8 % of the web
    workers' samples under the load test, bench/results/load-profile.md). Streaming responses (exports, files sent
    as they are read) are returned as they are."""

    def application(environ, start_response):
        response = app(environ, start_response)
        if not isinstance(response, HttpResponse):
            return response
        body = [response.content]
        try:
            response.close()
        except Exception:  # as a server does when closing after sending: the page stands, the error is logged
            logger.exception("closing the response of %s failed", environ.get("PATH_INFO", ""))
        return body

    return application


# A rated item's chart with the link its page minted is answered from its file, before Django's request machinery
# (evaluation.chart_links); every other request, and a link that does not hold, goes through Django.
application = without_process_environment(serve_chart_links(one_piece(get_wsgi_application())))
# Every view module imported now, as the worker boots, not by its first request: measured under `make loadtest`, that
# first request held a few CPU-seconds of imports per worker (issue 27).
get_resolver().url_patterns  # noqa: B018 - the attribute's access is the import
# The job kinds (torch, transformers: 4 s) are not among them, so that management commands do not pay them; a web
# worker imports them now too, so no request waits for them (a study opening queues its charts' job in its
# transaction, holding the study's row).
import_module("modeling.kinds")
