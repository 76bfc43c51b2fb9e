"""The participant's record on the rating page, from the keyboard alone, in Chromium."""

import pytest

from evaluation.models import Rating
from tests.evaluation.test_browser_rating import wait_for_form
from tests.factories import DEFAULT_PASSWORD
from tests.test_browser_login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MAX_TABS = 120  # the chart's toolbar and the form come before it or after it: enough to go round the page once


def test_the_record_is_reached_with_tab_and_opened_with_enter(grounded_study, page, live_server):
    clinician = grounded_study.clinicians.order_by("pk").first()
    log_in(page, clinician.username, DEFAULT_PASSWORD)
    page.goto(f"/evaluation/queue/{grounded_study.pk}/next/")
    wait_for_form(page)
    item_url = page.url
    record = page.locator("[data-participant-record]")
    summary = record.locator("summary")
    assert summary.is_visible() and not record.locator("table").first.is_visible()  # folded until asked for

    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        if summary.evaluate("element => element === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the participant's record")
    page.keyboard.press("Enter")

    assert record.evaluate("element => element.open")
    measurements = record.get_by_role("table").first
    assert measurements.is_visible() and "Days before the last day" in measurements.inner_text()
    assert page.url == item_url and not Rating.objects.exists()  # Enter opened the panel; it did not submit the rating
    page.keyboard.press("Enter")
    assert not record.evaluate("element => element.open")
