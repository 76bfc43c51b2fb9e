"""Clinicians rating in Chromium: keyboard only, pairwise, and resuming after logging out."""

import re

import pytest

from evaluation.models import Assignment, Rating
from tests.factories import DEFAULT_PASSWORD
from tests.test_browser_login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def wait_for_form(page):
    page.wait_for_selector("[data-rating-form][data-ready='true']")


def keyboard_log_in(page, username):
    page.goto("/login/")
    page.keyboard.type(username)  # the username field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type(DEFAULT_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/evaluation/queue/")


def test_a_clinician_rates_three_items_with_the_keyboard_alone(grounded_study, page, live_server):
    clinician = grounded_study.clinicians.order_by("pk").first()
    keyboard_log_in(page, clinician.username)
    start = page.get_by_role("link", name="Rate next item")
    start.focus()
    page.keyboard.press("Enter")
    for scores in ("453", "215", "344"):
        wait_for_form(page)
        page.wait_for_selector(
            "[data-trajectory][data-ready='true'] .main-svg"
        )  # the chart, fetched from its own URL, is drawn
        html = page.content().lower()
        assert (
            "grounded" not in html and "llm only" not in html and "p-" not in page.locator("main").inner_text().lower()
        )
        for digit in scores:
            page.keyboard.press(digit)
        url = page.url
        page.keyboard.press("Enter")
        page.wait_for_url(lambda new: new != url)  # noqa: B023 - called within this iteration
    assert "nothing more for you to rate" in page.content()
    ratings = Rating.objects.filter(assignment__rater=clinician).order_by("assignment__completed_at")
    assert [tuple(r.scores[k] for k in ("relevance", "context", "safety")) for r in ratings] == [
        (4, 5, 3),
        (2, 1, 5),
        (3, 4, 4),
    ]
    assert all(a.time_spent_s > 0 for a in Assignment.objects.filter(rater=clinician))


def test_after_a_submit_the_bar_shows_the_next_items_page_and_a_reload_posts_nothing(grounded_study, page, live_server):
    """The submit answers with the next item's page (evaluation.views._next_item_page): the bar and the history hold
    that page's own address, so a reload asks for the page (no "resubmit the form?", no second post) and going back
    and forward returns to the items' pages."""
    clinician = grounded_study.clinicians.order_by("pk").first()
    log_in(page, clinician.username, DEFAULT_PASSWORD)
    page.goto(f"/evaluation/queue/{grounded_study.pk}/next/")
    wait_for_form(page)
    first = page.url
    for key in "453":
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    # The answer's document is at the submit's address until rating.js puts the page's own in its place.
    page.wait_for_url(lambda url: url != first and re.search(r"/evaluation/items/\d+/$", url) is not None)
    wait_for_form(page)
    following = Assignment.objects.get(rater=clinician, state="in_progress")
    assert page.url.endswith(f"/evaluation/items/{following.pk}/")
    posts = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    page.reload()
    wait_for_form(page)
    assert page.url.endswith(f"/evaluation/items/{following.pk}/") and posts == []
    assert Rating.objects.filter(assignment__rater=clinician).count() == 1
    page.go_back()
    page.wait_for_url(first)
    page.go_forward()
    wait_for_form(page)
    assert page.url.endswith(f"/evaluation/items/{following.pk}/") and posts == []


def test_the_help_overlay_opens_with_question_mark(grounded_study, page, live_server):
    clinician = grounded_study.clinicians.order_by("pk").first()
    log_in(page, clinician.username, DEFAULT_PASSWORD)
    page.goto(f"/evaluation/queue/{grounded_study.pk}/next/")
    wait_for_form(page)
    page.keyboard.press("?")
    assert page.get_by_role("dialog", name="Keyboard shortcuts").is_visible()


def test_a_clinician_completes_a_pairwise_item(pairwise_study, page, live_server):
    clinician = pairwise_study.clinicians.get()
    log_in(page, clinician.username, DEFAULT_PASSWORD)
    page.goto(f"/evaluation/queue/{pairwise_study.pk}/next/")
    wait_for_form(page)
    assert (
        page.get_by_role("heading", name="Answer A").is_visible()
        and page.get_by_role("heading", name="Answer B").is_visible()
    )
    left_text = page.locator(".answer-card").first.inner_text()
    for key in ("1", "1", "2", "1"):  # A better on relevance and context, a tie on safety, A better overall
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    page.wait_for_url("**/next/")
    assignment = Assignment.objects.get(rater=clinician)
    rating = assignment.rating
    left_was = "b" if assignment.swapped else "a"  # item terms of what was on the left
    assert rating.preference == left_was and rating.scores == {
        "relevance": left_was,
        "context": left_was,
        "safety": "tie",
    }
    grounded_on_left = "consult with a healthcare provider" not in left_text
    assert (rating.preference == "a") == grounded_on_left  # variant A of the item is the grounded agent


def test_logging_out_mid_queue_resumes_at_the_same_item_with_the_draft(grounded_study, page, live_server):
    clinician = grounded_study.clinicians.order_by("pk").first()
    log_in(page, clinician.username, DEFAULT_PASSWORD)
    page.goto(f"/evaluation/queue/{grounded_study.pk}/next/")
    wait_for_form(page)
    for key in "545":
        page.keyboard.press(key)
    first_item = page.url
    page.keyboard.press("Enter")
    page.wait_for_url(lambda new: new != first_item and "/items/" in new)
    wait_for_form(page)
    second_item = page.url
    page.keyboard.press("2")  # half-rated, then the clinician leaves
    page.wait_for_selector("[data-rating-form][data-draft-saved='true']")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login/")

    log_in(page, clinician.username, DEFAULT_PASSWORD)
    page.wait_for_url("**/evaluation/queue/")
    assert "1 of 2 done" in page.content()
    page.get_by_role("link", name="Rate next item").click()
    page.wait_for_url(second_item)
    wait_for_form(page)
    assert page.locator("input[name=score-relevance][value='2']").is_checked()
    assert page.locator("fieldset.dimension.active").get_attribute("data-dimension") == "context"
