"""The live dashboard in Chromium: a researcher watches, a clinician rates in another browser
context, the researcher's page updates without a reload. Served by daphne (websockets) in its
own process, so the database must be a real one (PostgreSQL in CI)."""

import os
import shutil
import tempfile

import pytest
from channels.testing import ChannelsLiveServerTestCase
from django.db import connection
from django.test import override_settings

from evaluation.models import Rating, Rubric
from evaluation.services import StudySpec, study_create, study_set_status
from healthagent.agent.generate import cohort_generate
from healthagent.models import AgentVariant
from tests.conftest import CHROMIUM_ARGS, service_missing
from tests.factories import DEFAULT_PASSWORD, UserFactory, ensure_reference_data, synthetic_cohort

TRAJECTORIES = tempfile.mkdtemp(prefix="live-dashboard-")


@pytest.fixture(autouse=True, scope="module")
def real_database_and_chromium():
    if connection.vendor == "sqlite":
        service_missing(
            "PostgreSQL is not configured: the websocket live server runs in another process and needs a shared database"
        )
    if not shutil.which("chromium"):
        service_missing("Chromium is not installed (Debian package 'chromium')")


@pytest.mark.browser
@pytest.mark.services
@override_settings(
    TRAJECTORY_ROOT=TRAJECTORIES,
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    STORAGES={
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    },
)
class LiveDashboardTest(ChannelsLiveServerTestCase):
    def setUp(self):
        from playwright.sync_api import sync_playwright

        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"  # Playwright's loop on this thread is not Django's
        ensure_reference_data()
        with self.settings(TRAJECTORY_ROOT=TRAJECTORIES):  # where the server process reads them
            cohort = synthetic_cohort("Live", participants=2, days=2, seed=3, history_days=30)
            grounded = AgentVariant.objects.get(name="grounded agent")
            cohort_generate(cohort=cohort, variants=[grounded])
        self.clinician = UserFactory(role="clinician")
        self.researcher = UserFactory(role="researcher")
        spec = StudySpec(
            name="Live study",
            mode="absolute",
            rubric=Rubric.objects.get(name__endswith="(1-5)"),
            cohort=cohort,
            variants=[grounded],
            raters_per_item=1,
            clinicians=[self.clinician],
        )
        self.study = study_set_status(study=study_create(spec=spec, user=self.researcher), status="open")
        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)

    def tearDown(self):
        self.browser.close()
        self.playwright.stop()
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)

    def logged_in_page(self, user):
        context = self.browser.new_context(base_url=self.live_server_url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        page = context.new_page()
        page.goto("/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(DEFAULT_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/" + ("evaluation/queue/" if user == self.clinician else "evaluation/studies/"))
        return page

    def test_the_dashboard_updates_when_a_clinician_rates(self):
        researcher = self.logged_in_page(self.researcher)
        researcher.goto(f"/evaluation/studies/{self.study.pk}/dashboard/")
        researcher.wait_for_selector("[data-dashboard][data-live='true']")
        assert "0 of 2" in researcher.locator("[data-completion]").inner_text()

        clinician = self.logged_in_page(self.clinician)
        clinician.goto(f"/evaluation/queue/{self.study.pk}/next/")
        clinician.wait_for_selector("[data-rating-form][data-ready='true']")
        for key in "452":
            clinician.keyboard.press(key)
        clinician.keyboard.press("Enter")
        clinician.wait_for_url("**/items/**")

        researcher.wait_for_function(
            "() => document.querySelector('[data-completion]').innerText.startsWith('1 of 2')"
        )  # a function: the page's CSP forbids eval of a string
        assert researcher.locator("[data-dashboard]").get_attribute("data-refreshed") == "1"
        assert Rating.objects.count() == 1
