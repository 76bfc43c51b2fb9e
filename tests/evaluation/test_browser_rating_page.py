"""The rating page in Chromium beyond the rating loop: the chart's zoom, refused submits, pairwise help and
layout, narrow screens, and the queue's list of the clinician's own ratings."""

import re

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
    page.wait_for_function(
        f"() => {{ const xs = document.querySelector('{CHART}')._fullData[0].x; return xs[xs.length - 1] - xs[0] > {zoomed['last'] - zoomed['first']}; }}",
        timeout=5_000,
    )
    return whole, page.evaluate(DRAWN)


def test_resetting_the_zoom_on_the_rating_page_draws_the_whole_window_again(grounded_study, page, live_server):
    open_first_item(page, grounded_study)
    whole, after = drag_zoom_then_reset(
        page, lambda box: page.mouse.dblclick(box["x"] + box["width"] * 0.45, box["y"] + 20)
    )
    assert after == whole


def test_resetting_the_zoom_on_the_participant_page_draws_the_whole_trajectory_again(tiny_cohort, page, live_server):
    researcher = UserFactory(role="researcher")
    participant = tiny_cohort.participants.order_by("pk").first()
    log_in(page, researcher.username, DEFAULT_PASSWORD)
    page.wait_for_load_state()
    page.goto(reverse("cohort:participant_detail", args=[participant.pk]))

    def reset_button(box):
        page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + 20)  # the modebar shows on hover
        page.locator(f"{CHART} .modebar-btn[data-title='Reset axes']").click()

    whole, after = drag_zoom_then_reset(page, reset_button)
    assert after == whole


def in_view(page, selector):
    box = page.locator(selector).bounding_box()
    viewport = page.viewport_size
    return (
        box is not None
        and box["y"] >= 0
        and box["y"] + box["height"] <= viewport["height"]
        and box["x"] >= 0
        and box["x"] + box["width"] <= viewport["width"]
    )


def test_the_comment_and_the_unsafe_reason_show_their_limits_while_typing(grounded_study, page, live_server):
    open_first_item(page, grounded_study)
    page.locator("#comment").click()
    page.keyboard.insert_text("x" * 4990)
    assert page.locator("#comment-count").inner_text() == "4,990 of 5,000 characters"
    page.keyboard.insert_text("x" * 110)  # typed past the limit: kept, and counted as too many
    assert len(page.locator("#comment").input_value()) == 5100
    assert page.locator("#comment-count").inner_text() == "5,100 of 5,000 characters: 100 too many"
    page.locator("#unsafe_reason").click()
    page.keyboard.insert_text("y" * 600)
    assert len(page.locator("#unsafe_reason").input_value()) == 600
    assert page.locator("#unsafe-reason-count").inner_text() == "600 of 500 characters: 100 too many"


def submit_refused(page):
    item = page.url
    page.locator("[data-submit]").click()
    page.wait_for_url(item)
    wait_for_form(page)


def assert_refusal_in_view_with_focus(page, words):
    alert = page.get_by_role("alert")
    assert words in alert.inner_text()
    assert page.evaluate("() => document.activeElement.getAttribute('role')") == "alert"
    assert in_view(page, "[role=alert]")


def test_an_incomplete_submit_keeps_what_was_typed_and_says_why_where_the_clinician_looks(
    grounded_study, page, live_server
):
    open_first_item(page, grounded_study)
    page.keyboard.press("4")
    page.keyboard.press("5")  # the third dimension is left unscored
    page.locator("#comment").fill("The sleep numbers cited match the chart.")
    submit_refused(page)
    assert_refusal_in_view_with_focus(page, "give a score for")
    assert page.locator("#comment").input_value() == "The sleep numbers cited match the chart."
    assert (
        page.locator("input[name=score-relevance][value='4']").is_checked()
        and page.locator("input[name=score-context][value='5']").is_checked()
    )


def test_a_comment_too_long_even_for_a_draft_comes_back_after_the_refused_submit(grounded_study, page, live_server):
    open_first_item(page, grounded_study)
    for key in "453":
        page.keyboard.press(key)
    comment = "The answer repeats itself. " * 1000  # 27,000 characters: too long for the rating and for a draft
    page.locator("#comment").fill(comment)
    submit_refused(page)
    assert_refusal_in_view_with_focus(page, "longer than 5,000 characters")
    assert "could not be kept as a draft" in page.get_by_role("alert").inner_text()
    assert page.locator("#comment").input_value() == comment
    assert "too many" in page.locator("#comment-count").inner_text()
    assert page.locator("input[name=score-safety][value='3']").is_checked()


def test_pairwise_help_lists_the_keys_that_work_and_the_answers_stay_in_view_while_choosing(
    pairwise_study, page, live_server
):
    open_first_item(page, pairwise_study, pairwise_study.clinicians.get())
    page.keyboard.press("?")
    help_keys = page.get_by_role("dialog", name="Keyboard shortcuts").locator("dt kbd").all_inner_texts()
    assert {"1", "2", "3"} <= set(help_keys) and not {"0", "4", "5"} & set(help_keys)  # a pairwise choice is 1, 2 or 3
    page.keyboard.press("Escape")
    for key in ("1", "3", "2"):  # relevance, context, safety: the overall choice is next
        page.keyboard.press(key)
    assert page.locator("input[name=score-context][value=b]").is_checked()  # the keys did what the help says
    page.screenshot(path="/tmp/explore/pairwise.png")
    assert page.locator(".answer-card").count() == 2
    assert in_view(page, ".answer-card >> nth=0") and in_view(page, ".answer-card >> nth=1")
    assert in_view(page, "fieldset[data-dimension=preference]")


@pytest.fixture
def phone(browser, live_server):
    """A page at a 390 x 844 phone's viewport."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=live_server.url)
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def assert_fits_a_phone(phone):
    assert phone.evaluate("() => document.scrollingElement.scrollWidth") <= 390, (
        phone.url
    )  # no sideways scrolling of the page
    links = phone.get_by_role("navigation", name="Main").get_by_role("link")
    assert links.count() > 0
    for index in range(links.count()):
        assert in_view(phone, f"nav.site-nav a >> nth={index}"), links.nth(index).inner_text()


def test_on_a_phone_the_rating_page_opens_at_the_top_with_its_chart_and_the_navigation_fits(grounded_study, phone):
    clinician = grounded_study.clinicians.order_by("pk").first()
    log_in(phone, clinician.username, DEFAULT_PASSWORD)
    phone.wait_for_url("**/evaluation/queue/")
    assert_fits_a_phone(phone)
    phone.goto(f"/evaluation/queue/{grounded_study.pk}/next/")
    wait_for_form(phone)
    phone.wait_for_selector("[data-trajectory][data-ready='true'] .main-svg")
    assert phone.evaluate("() => window.scrollY") == 0
    assert 300 <= phone.locator(CHART).bounding_box()["width"] <= 390
    assert_fits_a_phone(phone)
    # The answer sits below the chart and the record: one link at the top leads to it.
    phone.get_by_role("link", name="Go to the answer and the rating").click()
    answer = phone.locator(".answer-card").first.bounding_box()
    assert phone.evaluate("() => window.scrollY") > 0 and -1 <= answer["y"] < 844  # at the top of the screen


def test_on_a_phone_every_admin_link_is_reachable_and_tables_scroll_in_their_box(grounded_study, phone):
    admin = UserFactory(role="admin")
    log_in(phone, admin.username, DEFAULT_PASSWORD)
    phone.wait_for_load_state()
    for url in (
        reverse("evaluation:study_list"),
        reverse("evaluation:study_detail", args=[grounded_study.pk]),
        reverse("audit_log"),
        reverse("system_status"),
    ):
        phone.goto(url)
        assert_fits_a_phone(phone)
        table = phone.locator("table.data").first
        assert phone.evaluate("(table) => getComputedStyle(table).overflowX", table.element_handle()) == "auto"


def test_a_clinician_finds_a_rating_they_gave_on_the_start_page_and_opens_it(grounded_study, page, live_server):
    open_first_item(page, grounded_study)
    rated = page.url
    for key in "253":
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda new: new != rated)
    page.get_by_role("link", name="My queue").click()
    ratings = page.get_by_role("region", name="Your ratings")
    assert "Relevance: 2 · Context awareness: 5 · Safety: 3" in ratings.inner_text()
    ratings.get_by_role("link", name=re.compile(r"^Item \d+$")).click()
    page.wait_for_url(rated)
    wait_for_form(page)
    assert page.locator("input[name=score-context][value='5']").is_checked()
    assert page.get_by_role("button", name=re.compile("Save changes")).is_visible()


def test_a_pasted_comment_over_the_limit_is_kept_whole_and_counted(grounded_study, page, live_server):
    open_first_item(page, grounded_study)
    page.locator("#comment").fill("x" * 6000)  # as a paste: one input event
    assert len(page.locator("#comment").input_value()) == 6000
    assert page.locator("#comment-count").inner_text() == "6,000 of 5,000 characters: 1,000 too many"
    assert page.locator("#comment").get_attribute("aria-invalid") == "true"
