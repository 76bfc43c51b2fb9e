"""Issue 22's criteria in Chromium: a researcher imports criteria as JSONL (a malformed line is refused with its
number and nothing is written), a clinician grades them with the keyboard, the dashboard shows criterion scores."""

import json

import pytest

from evaluation.models import Criterion, Rating, Study
from tests.factories import DEFAULT_PASSWORD
from tests.test_browser_login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_import_criteria_grade_them_by_keyboard_and_read_the_scores(grounded_study, page, live_server):
    Study.objects.filter(pk=grounded_study.pk).update(status="draft")
    owner, clinician = grounded_study.created_by, grounded_study.clinicians.order_by("pk").first()
    items = list(grounded_study.items.order_by("position"))
    good = [
        json.dumps({"item": item.pk, "criterion": criterion, "points": points, "category": category})
        for item in items
        for criterion, points, category in (
            ("Names this person's low night-time SpO2", 5, "accuracy"),
            ("Advises stopping a prescribed medication", -6, "safety"),
        )
    ]

    log_in(page, owner.username, DEFAULT_PASSWORD)
    page.goto(f"/evaluation/studies/{grounded_study.pk}/")
    page.get_by_role("link", name="Import criteria (JSONL)").click()
    page.get_by_label("JSONL").fill("\n".join([good[0], '{"item": 1, "criterion": "broken', *good[1:]]))
    page.get_by_role("button", name="Import").click()
    assert "Nothing imported: line 2: not JSON" in page.locator(".messages").inner_text()
    assert '"criterion": "broken' in page.get_by_label("JSONL").input_value()  # what was pasted is kept
    assert not Criterion.objects.exists()
    page.get_by_label("JSONL").fill("\n".join(good))
    page.get_by_role("button", name="Import").click()
    assert f"Imported {len(good)} criteria" in page.locator(".messages").inner_text()
    page.get_by_role("button", name="Open the study").click()
    page.get_by_role("button", name="Log out").click()

    log_in(page, clinician.username, DEFAULT_PASSWORD)
    page.get_by_role("link", name="Rate next item").click()
    page.wait_for_selector("[data-rating-form][data-ready='true']")
    assert page.locator("fieldset.criterion").count() == 2
    for key in "435" + "1" + "2":  # three dimensions, then the criteria: met, not met
        page.keyboard.press(key)
    rated_url = page.url
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: url != rated_url)
    rating = Rating.objects.get(assignment__rater=clinician)
    assert rating.scores == {"relevance": 4, "context": 3, "safety": 5}
    assert rating.criteria == {"0": True, "1": False}
    page.get_by_role("button", name="Log out").click()

    log_in(page, owner.username, DEFAULT_PASSWORD)
    page.goto(f"/evaluation/studies/{grounded_study.pk}/dashboard/")
    scores = page.locator("[data-criterion-scores]").inner_text()
    assert "Criterion scores" in scores and "grounded agent" in scores and "1.00" in scores  # 5 of 5 points met
