"""A researcher types a description of a day in Chromium and gets ranked days with drawn charts."""

import pytest

from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.healthagent.cohort.test_find_days import indexed_cohort  # noqa: F401 - the fixture
from tests.test_browser_login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_researcher_finds_days_by_typing_a_description(page, live_server, indexed_cohort):  # noqa: F811 - the fixture
    log_in(page, UserFactory(role="researcher").username, DEFAULT_PASSWORD)
    page.get_by_role("link", name="Find days").click()
    box = page.get_by_label("Describe the day")
    box.fill("fragmented sleep and a morning run")
    box.press("Enter")
    page.wait_for_url("**/cohorts/days/?q=fragmented+sleep*")
    cards = page.locator("[data-day-result]")
    assert cards.count() == 6
    page.wait_for_function("() => document.querySelectorAll('[data-trajectory][data-ready=\"true\"]').length === 6")
    assert page.locator('[data-day-result] [data-chart="minutes"] .main-svg').count() >= 6
    assert "its caption holds" in cards.first.inner_text() and "similarity" in cards.first.inner_text()

    # Zooming a card fetches finer data for the same four panels, not the participant page's eight.
    panels_before = cards.first.locator('[data-chart="minutes"] .main-svg .trace').count()
    cards.first.locator('[data-chart="minutes"]').evaluate("""(chart) => {
        const meta = chart.layout.meta;
        const iso = (minute) => new Date(meta.origin_ms + minute * 60000).toISOString().replace('Z', '').replace('T', ' ');
        Plotly.relayout(chart, {'xaxis.range[0]': iso(meta.start_minute + 360), 'xaxis.range[1]': iso(meta.start_minute + 600)});
    }""")
    section = cards.first.locator("[data-trajectory]")
    page.wait_for_function(
        "(section) => section.dataset.loading === 'false' && section.dataset.loadedStart", arg=section.element_handle()
    )
    assert cards.first.locator('[data-chart="minutes"]').evaluate("(chart) => chart.data.length") == 4
    assert cards.first.locator('[data-chart="minutes"] .main-svg .trace').count() == panels_before
    pseudonym = cards.first.get_by_role("link").first.inner_text()
    cards.first.get_by_role("link").first.click()
    page.wait_for_selector("[data-trajectory][data-ready='true']")
    assert page.get_by_role("heading", name=pseudonym).is_visible()
