"""A researcher reads two weeks of a participant's data in Chromium, and zooms into a morning."""

import pytest

from tests.factories import DEFAULT_PASSWORD, UserFactory, synthetic_cohort
from tests.test_browser_login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_researcher_browses_to_a_participant_and_zooms(page, live_server):
    cohort = synthetic_cohort("Browser cohort", participants=2, days=14, seed=8, history_days=120)
    participant = cohort.participants.order_by("pseudonym").first()
    researcher = UserFactory(role="researcher")

    log_in(page, researcher.username, DEFAULT_PASSWORD)
    page.get_by_role("link", name="Cohorts").click()
    page.get_by_role("link", name="Browser cohort").click()
    page.get_by_role("link", name=participant.pseudonym).click()
    page.wait_for_selector("[data-trajectory][data-ready='true']")
    assert page.locator('[data-chart="minutes"] .main-svg').count() > 0
    assert page.locator('[data-chart="daily"] .main-svg').count() > 0
    assert "Day 1" in page.locator('[data-chart="minutes"]').inner_text()

    # Zoom to 06:00-10:00 of day 3, as a drag would: finer data is fetched for that range.
    page.evaluate("""() => {
        const chart = document.querySelector('[data-chart="minutes"]');
        const origin = chart.layout.meta.origin_ms;
        const iso = (minute) => new Date(origin + minute * 60000).toISOString().replace('Z', '').replace('T', ' ');
        Plotly.relayout(chart, {'xaxis.range[0]': iso(2 * 1440 + 360), 'xaxis.range[1]': iso(2 * 1440 + 600)});
    }""")
    page.wait_for_selector("[data-trajectory][data-loaded-start]")
    section = page.locator("[data-trajectory]")
    assert section.get_attribute("data-loaded-start") == str(2 * 1440 + 360)
    assert section.get_attribute("data-loaded-end") == str(2 * 1440 + 600)
    assert section.get_attribute("data-loading") == "false"


def test_clinicians_cannot_browse_participants(page, live_server):
    cohort = synthetic_cohort("Hidden", participants=1, days=1, seed=8, history_days=1)
    clinician = UserFactory(role="clinician")
    log_in(page, clinician.username, DEFAULT_PASSWORD)
    page.wait_for_url("**/evaluation/queue/")
    assert page.get_by_role("link", name="Cohorts").count() == 0
    response = page.goto(f"/cohorts/participants/{cohort.participants.get().pk}/")
    assert response.status == 403
