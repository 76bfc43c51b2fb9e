"""The rating page in Chromium beyond the rating loop: the chart's zoom, refused submits, pairwise help and
layout, narrow screens, and the queue's list of the clinician's own ratings."""

import pytest
from django.urls import reverse

from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.test_browser_login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHART = "[data-chart=minutes]"
# What the minute chart draws: the first and last x of its first trace, and how many points it has.
DRAWN = """() => {
  const xs = document.querySelector('[data-chart=minutes]')._fullData[0].x;
  return {first: xs[0], last: xs[xs.length - 1], points: xs.length};
}"""


def wait_for_form(page):
    page.wait_for_selector("[data-rating-form][data-ready='true']")


def open_first_item(page, study, clinician=None):
    clinician = clinician or study.clinicians.order_by("pk").first()
    log_in(page, clinician.username, DEFAULT_PASSWORD)
    page.wait_for_url("**/evaluation/queue/")
    page.goto(f"/evaluation/queue/{study.pk}/next/")
    wait_for_form(page)
    return clinician


def drag_zoom_then_reset(page, reset):
    """Drag across a tenth of the chart, wait for the finer data, then reset the zoom; what is drawn before and after."""
    page.wait_for_selector("[data-trajectory][data-ready='true'] .main-svg")
    whole = page.evaluate(DRAWN)
    box = page.locator(f"{CHART} .nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + 20, steps=5)
    page.mouse.up()
    page.wait_for_selector("[data-trajectory][data-loading='false']")
    zoomed = page.evaluate(DRAWN)
    assert zoomed["first"] > whole["first"] and zoomed["last"] < whole["last"]  # the zoom drew its slice only
    reset(box)
    page.wait_for_function(f"() => {{ const xs = document.querySelector('{CHART}')._fullData[0].x; return xs[xs.length - 1] - xs[0] > {zoomed['last'] - zoomed['first']}; }}",
                           timeout=5_000)
    return whole, page.evaluate(DRAWN)


def test_resetting_the_zoom_on_the_rating_page_draws_the_whole_window_again(grounded_study, page, live_server):
    open_first_item(page, grounded_study)
    whole, after = drag_zoom_then_reset(page, lambda box: page.mouse.dblclick(box["x"] + box["width"] * 0.45, box["y"] + 20))
    assert after == whole


def test_resetting_the_zoom_on_the_participant_page_draws_the_whole_trajectory_again(tiny_cohort, page, live_server):
    researcher = UserFactory(role="researcher")
    participant = tiny_cohort.participants.order_by("pk").first()
    log_in(page, researcher.username, DEFAULT_PASSWORD)
    page.wait_for_load_state()
    page.goto(reverse("cohort:participant_detail", args=[participant.pk]))
    whole, after = drag_zoom_then_reset(page, lambda box: page.mouse.dblclick(box["x"] + box["width"] * 0.45, box["y"] + 20))
    assert after == whole
