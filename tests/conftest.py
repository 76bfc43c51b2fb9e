"""Shared fixtures: users per role, and the rule for tests that need a real service.

Under ``REQUIRE_SERVICES=1`` (CI) a missing service fails the test that needs it; on a laptop
without it, the test skips with a reason naming the service.
"""

import asyncio
import os
import shutil
import socket

import pytest
from django.conf import settings

from healthagent.roles import Role
from tests.factories import UserFactory, ensure_reference_data, synthetic_cohort

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def service_missing(reason: str):
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def postgres_connect_kwargs() -> dict:
    """psycopg's arguments for a connection of its own to the test database (beside Django's), in autocommit."""
    from django.db import connection

    settings = connection.settings_dict
    return {
        "host": settings["HOST"],
        "port": settings["PORT"],
        "user": settings["USER"],
        "password": settings["PASSWORD"] or None,
        "dbname": settings["NAME"],
        "autocommit": True,
    }


@pytest.fixture
def redis_url() -> str:
    """A reachable Redis, the one the settings use as broker and channel layer."""
    if not settings.REDIS_URL:
        service_missing("Redis is not configured (REDIS_URL is not set)")
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        service_missing(f"Redis at {settings.REDIS_URL} does not answer: {error}")
    return settings.REDIS_URL


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        service_missing("Chromium is not installed (Debian package 'chromium')")
    return path


@pytest.fixture
def clinician(db):
    return UserFactory(role=Role.CLINICIAN)


@pytest.fixture
def researcher(db):
    return UserFactory(role=Role.RESEARCHER)


@pytest.fixture
def admin_user(db):
    return UserFactory(role=Role.ADMIN)


@pytest.fixture
def user_for_role(db):
    """Make a user holding a role, or none for ``"anonymous"``."""

    def make(role_name: str):
        if role_name == "anonymous":
            return None
        return UserFactory(role=Role(role_name))

    return make


@pytest.fixture(autouse=True)
def isolated_storage(settings, tmp_path):
    """Each test writes trajectories and chart files under its own temporary folder, and hashes passwords fast."""
    settings.TRAJECTORY_ROOT = tmp_path / "trajectories"
    settings.CHART_ROOT = tmp_path / "charts"
    settings.STUDY_CHARTS_AT_OPEN = False  # on in tests/evaluation/test_chart_files.py, which is about it
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    from django.core.cache import caches

    from evaluation import selectors

    caches["fragments"].clear()  # rendered for participants of an earlier test, whose ids a later one may reuse
    selectors.rubric_dimensions_forget()  # each test counts its own queries


@pytest.fixture
def tiny_cohort(db):
    """A synthetic cohort of three participants with two minute-level days and 60 days of history."""

    ensure_reference_data()
    return synthetic_cohort("Tiny", participants=3, days=2, seed=5, history_days=60)


@pytest.fixture
def grounded_study(tiny_cohort):
    """An open absolute study over the tiny cohort's grounded answers, k = 2, three enrolled clinicians."""
    from evaluation.models import Rubric
    from evaluation.services import StudySpec, study_create, study_set_status
    from healthagent.agent.generate import cohort_generate
    from healthagent.models import AgentVariant

    grounded = AgentVariant.objects.get(name="grounded agent")
    cohort_generate(cohort=tiny_cohort, variants=[grounded])
    clinicians = [UserFactory(role=Role.CLINICIAN) for _ in range(3)]
    spec = StudySpec(
        name="Pilot study",
        mode="absolute",
        rubric=Rubric.objects.get(name__endswith="(1-5)"),
        cohort=tiny_cohort,
        variants=[grounded],
        raters_per_item=2,
        clinicians=clinicians,
        instructions="Rate each answer.",
    )
    study = study_create(spec=spec, user=UserFactory(role=Role.RESEARCHER))
    return study_set_status(study=study, status="open")


def grounded_and_scripted_answers(cohort, text: str):
    """The grounded agent's answers for every participant of ``cohort``, and the "LLM only" variant's answer
    scripted as ``text``; returns the two variants."""
    from healthagent.agent.generate import cohort_generate
    from healthagent.models import AgentVariant, Recommendation

    grounded, llm = AgentVariant.objects.get(name="grounded agent"), AgentVariant.objects.get(name="LLM only")
    cohort_generate(cohort=cohort, variants=[grounded])
    Recommendation.objects.bulk_create(
        [
            Recommendation(participant=participant, variant=llm, status="succeeded", context={}, text=text)
            for participant in cohort.participants.all()
        ]
    )
    return grounded, llm


@pytest.fixture
def pairwise_study(tiny_cohort):
    """An open pairwise study of the grounded agent against scripted "LLM only" answers, one item, one clinician."""
    from evaluation.models import Rubric
    from evaluation.services import StudySpec, study_create, study_set_status

    grounded, llm = grounded_and_scripted_answers(
        tiny_cohort, "I recommend that you consult with a healthcare provider about your sleep."
    )
    clinician = UserFactory(role="clinician")
    spec = StudySpec(
        name="Head to head",
        mode="pairwise",
        rubric=Rubric.objects.get(name__endswith="(1-5)"),
        cohort=tiny_cohort,
        variants=[grounded, llm],
        raters_per_item=1,
        clinicians=[clinician],
        participants=1,
    )
    return study_set_status(study=study_create(spec=spec, user=UserFactory(role="researcher")), status="open")


@pytest.fixture(autouse=True)
def plain_static_files(settings):
    """Tests serve static files from the finders: no collectstatic manifest needed."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture
def browser(chromium_path, monkeypatch):
    """Debian's Chromium driven by Playwright (``playwright install`` cannot fetch a browser here)."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread, which Django's async-safety check
    # mistakes for async code; the test's ORM calls are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(live_server, browser):
    """A fresh browser context at desktop width; ``page.base_url`` is the live server."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


@pytest.fixture(scope="session", autouse=True)
def close_stray_database_sessions(django_db_setup, django_db_blocker):
    """Worker and live-server threads keep their own connections; end them before the test
    database is dropped, so the drop never fails on a session still in use."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture
def worker(redis_url, settings, tmp_path):
    """A real Celery worker on Redis serving every job queue, in this process, for the tests that follow a job in the
    browser."""
    from celery.contrib.testing.worker import start_worker

    from healthagent.celery import app

    settings.VAR_DIR = tmp_path / "var"
    with start_worker(
        app, queues=list(settings.JOB_QUEUES), pool="solo", perform_ping_check=False, shutdown_timeout=60
    ):
        yield


class Sink:
    """What a test SMTP server received."""

    def __init__(self):
        self.envelopes = []
        self.port = 0

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on a free local port, collecting what it receives."""
    from aiosmtpd.controller import Controller

    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    sink.port = port
    yield sink
    controller.stop()
    asyncio.set_event_loop(None)
