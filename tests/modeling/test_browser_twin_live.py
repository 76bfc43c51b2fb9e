"""The twin page over a real websocket: daphne serves the site, a Celery worker on Redis runs the
simulation, and its progress reaches the researcher's page as websocket events, not polls. daphne runs
in its own process, so the database must be a real one (PostgreSQL in CI), and Redis carries the
events from the worker to daphne."""

import os
import shutil
import tempfile
import time
from unittest import mock

import pytest
import torch
from channels.testing import ChannelsLiveServerTestCase
from django.conf import settings
from django.db import connection
from django.test import override_settings

from modeling.jobs import JobContext
from modeling.models import Checkpoint, Job, SimulationRun
from tests.conftest import CHROMIUM_ARGS, service_missing
from tests.factories import DEFAULT_PASSWORD, UserFactory, ensure_reference_data, synthetic_cohort

FOLDER = tempfile.mkdtemp(prefix="live-twin-")


@pytest.fixture(autouse=True, scope="module")
def real_database_redis_and_chromium():
    if connection.vendor == "sqlite":
        service_missing(
            "PostgreSQL is not configured: the websocket live server runs in another process and needs a shared database"
        )
    if not settings.REDIS_URL:
        service_missing(
            "Redis is not configured (REDIS_URL is not set): it carries the worker's events to the live server"
        )
    if not shutil.which("chromium"):
        service_missing("Chromium is not installed (Debian package 'chromium')")


def twin_checkpoint_create(folder: str) -> Checkpoint:
    """An untrained tiny twin, as tests/modeling/conftest.py's fixture makes it (a unittest class cannot take fixtures)."""
    from modeling.ml.twin.data import simulated_records
    from modeling.ml.twin.model import HealthFormerConfig, HealthFormerModel
    from modeling.ml.twin.tokens import Tokenizer

    model_dir = os.path.join(folder, "twin")
    tokenizer = Tokenizer.fit(simulated_records(participants=20, days=200, seed=9).records, bins=12)
    torch.manual_seed(0)
    HealthFormerModel(HealthFormerConfig.named("tiny", tokenizer, block_size=128)).save_pretrained(model_dir)
    tokenizer.save(os.path.join(model_dir, "tokenizer.json"))
    return Checkpoint.objects.create(family="twin", size="tiny", path=model_dir)


@pytest.mark.browser
@pytest.mark.services
@pytest.mark.slow
@override_settings(
    TRAJECTORY_ROOT=os.path.join(FOLDER, "trajectories"),
    VAR_DIR=os.path.join(FOLDER, "var"),
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    STORAGES={
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    },
)
class LiveTwinProgressTest(ChannelsLiveServerTestCase):
    def setUp(self):
        from celery.contrib.testing.worker import start_worker
        from playwright.sync_api import sync_playwright

        from healthagent.celery import app

        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"  # Playwright's loop on this thread is not Django's
        ensure_reference_data()
        self.cohort = synthetic_cohort("Live twin", participants=2, days=2, seed=5, history_days=60)
        twin_checkpoint_create(FOLDER)
        self.researcher = UserFactory(role="researcher")
        report_progress = JobContext.progress

        def unhurried(
            context, *args, **kwargs
        ):  # the in-process worker pauses after each report, so the page sees it running
            report_progress(context, *args, **kwargs)
            time.sleep(3.0)

        self.slow_reports = mock.patch.object(JobContext, "progress", unhurried)
        self.slow_reports.start()
        self.worker = start_worker(
            app, queues=list(settings.JOB_QUEUES), pool="solo", perform_ping_check=False, shutdown_timeout=60
        )
        self.worker.__enter__()
        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)

    def tearDown(self):
        self.browser.close()
        self.playwright.stop()
        self.worker.__exit__(None, None, None)
        self.slow_reports.stop()
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)

    def test_a_simulation_s_progress_arrives_over_the_websocket(self):
        participant = self.cohort.participants.order_by("pk").first()
        context = self.browser.new_context(base_url=self.live_server_url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        page = context.new_page()
        page.goto("/login/")
        page.get_by_label("Username").fill(self.researcher.username)
        page.get_by_label("Password").fill(DEFAULT_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/evaluation/studies/")
        page.goto(f"/modeling/twin/?participant={participant.pk}")
        page.get_by_label("exercise programme", exact=False).check()  # nothing is ticked until the researcher ticks it
        page.get_by_label("Samples").fill("4")
        page.get_by_label("Horizon (days)").fill("14")
        page.get_by_role("button", name="Simulate").click()
        page.wait_for_url(f"**/modeling/twin/?participant={participant.pk}&job=*")

        page.wait_for_function(
            "() => { const job = document.querySelector('[data-twin-job]');"  # a function: the page's CSP forbids eval of a string
            " return job.dataset.via === 'socket' && job.dataset.state === 'running' && Number(job.dataset.progress) > 0"
            " && job.querySelector('[data-live-status]').textContent === '· live'; }",
            timeout=60_000,
        )
        page.wait_for_selector(
            "[data-fan-chart] .main-svg", timeout=120_000
        )  # reloaded, on the succeeded event, with the stored simulation
        job = Job.objects.get(kind="simulate")
        assert job.state == "succeeded" and SimulationRun.objects.filter(job=job).count() == 1
