"""In Chromium: an admin indexes a cohort that came without an event log with the committed sensor-language model (a
real worker runs the job), and a researcher then finds its days by the activities the model read from the data."""

import pytest

from healthagent.models import Event
from modeling.models import Job
from tests.factories import DEFAULT_PASSWORD, UserFactory, committed_sensorlm_checkpoint_create
from tests.test_browser_login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_an_admin_indexes_a_cohort_without_an_event_log_and_a_researcher_finds_its_days(
    worker, page, live_server, tiny_cohort, tmp_path
):
    committed_sensorlm_checkpoint_create(tmp_path / "sensorlm")
    Event.objects.filter(participant__cohort=tiny_cohort).delete()  # as a wearable export arrives: no event log
    admin = UserFactory(role="admin")
    log_in(page, admin.username, DEFAULT_PASSWORD)
    page.wait_for_url("**/modeling/jobs/")
    page.get_by_role("link", name="Sensor-language model: index a cohort").click()
    page.get_by_label("Cohort").select_option(label=tiny_cohort.name)
    page.get_by_role("button", name="Queue").click()
    page.wait_for_url("**/modeling/jobs/*/")
    page.wait_for_function(
        "() => ['succeeded', 'succeeded_with_failures', 'failed', 'cancelled'].includes(document.querySelector('[data-job]').dataset.state)",
        timeout=90_000,
    )
    job = Job.objects.get(kind="sensorlm_index")
    assert job.state == "succeeded", job.error
    assert job.result["read_by_model"] > 0

    page.context.clear_cookies()
    researcher = UserFactory(role="researcher")
    log_in(page, researcher.username, DEFAULT_PASSWORD)
    page.wait_for_url(lambda url: "/login/" not in url)
    page.goto("/cohorts/days/")
    page.get_by_label("Describe the day").fill("a walk in the morning")
    page.get_by_role("button", name="Find").click()
    page.wait_for_selector("[data-day-result]")
    read = page.locator("[data-day-result]:has([data-read-by-model])")
    assert read.count() > 0
    first = read.first
    assert first.locator(".caption").inner_text().startswith("Activities: a")
    assert "the sensor-language model's reading of the wearable data" in first.inner_text()
    assert "No exercise or commute recorded" not in page.locator("ol.day-results").inner_text()
