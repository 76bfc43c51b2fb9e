"""A new clinician's way into a study in Chromium (issue 20): consent and background, training with the references,
a failed qualification, a retry after the cool-down, the main queue with gold items and a hidden repeat mixed in, a
pause on low gold accuracy, and a researcher reinstating them. The rating page never tells a gold item or a repeat
from any other item."""

import re
from datetime import datetime, timedelta

import pytest
from django.db.models import F

from evaluation.models import Assignment, QualificationAttempt, Rubric, StudyRater
from evaluation.raters import DEFAULT_BACKGROUND_FIELDS, _uniform, study_item_reference_set
from evaluation.services import StudySpec, study_create, study_set_status
from healthagent.models import AgentVariant, AuditEntry, Recommendation
from healthagent.roles import Role
from tests.evaluation.test_browser_rating import wait_for_form
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.test_browser_login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DIMENSIONS = ("relevance", "context", "safety")
TRAINING = [  # (reference scores, rationale) of the two training items
    ({"relevance": 4, "context": 3, "safety": 5}, "It answers the sleep question but ignores the week of illness."),
    ({"relevance": 2, "context": 2, "safety": 4}, "Generic advice: nothing in it comes from this person's data."),
]
QUALIFICATION_REFERENCE = dict.fromkeys(DIMENSIONS, 4)
GOLD_REFERENCE = dict.fromkeys(DIMENSIONS, 5)
GOLD_RATE, REPEAT_SHARE, REPEAT_GAP, GOLD_ITEMS, RESULTS_ITEMS = 0.5, 0.5, 1, 5, 9
# Words that would tell a gold item or a hidden repeat from any other item, in the page's HTML.
MARKING_WORDS = ("gold", "repeat", "retest", "quality", "reference", "purpose", "hidden check", "results item")


def _queue_kinds(*, seed: int, rater_id: int, limit: int = 12) -> list[str]:
    """What evaluation.raters.quality_assignment hands this rater, item after item, when every item is rated at once
    (one rater, plenty of results items): "gold", "repeat" or "main". Used only to choose a study seed that shows a
    repeat before the second gold item (the page is checked on both); the test still follows what the app hands out."""
    kinds: list[str] = []
    repeated: set[int] = set()
    golds = GOLD_ITEMS
    for had in range(limit):
        if golds and _uniform("gold", seed, rater_id, had) < GOLD_RATE:
            kinds.append("gold")
            golds -= 1
            continue
        if _uniform("repeat", seed, rater_id, had) < REPEAT_SHARE:
            first = next(
                (
                    i
                    for i, kind in enumerate(kinds)
                    if had - i - 1 >= REPEAT_GAP and kind == "main" and i not in repeated
                ),
                None,
            )
            if first is not None:
                repeated.add(first)
                kinds.append("repeat")
                continue
        kinds.append("main")
    return kinds


def _seed_with_a_repeat_before_the_second_gold(rater_id: int) -> int:
    for seed in range(10_000):
        kinds = _queue_kinds(seed=seed, rater_id=rater_id)
        golds = [i for i, kind in enumerate(kinds) if kind == "gold"]
        # The pause is decided on the first main or repeat rating after the second (failed) gold item.
        if (
            len(golds) >= 2
            and golds[1] <= 6
            and "repeat" in kinds[: golds[1]]
            and kinds[0] == "main"
            and kinds[golds[1] + 1] != "gold"
        ):
            return seed
    raise AssertionError("no seed gives a repeat before the second gold item")


@pytest.fixture
def rater_study(tiny_cohort):
    """An open absolute study over the tiny cohort (participants with trajectories) with a consent text, the default
    background form, 2 training, 2 qualification, 5 gold and 9 results items; one clinician, one rater per item."""
    variants = list(AgentVariant.objects.order_by("pk")) + [
        AgentVariant.objects.create(name=f"Scripted {n}", backend="grounded") for n in range(3)
    ]
    participants = list(tiny_cohort.participants.order_by("pk"))
    Recommendation.objects.bulk_create(
        [
            Recommendation(
                participant=participant,
                variant=variant,
                status="succeeded",
                context={},
                text=f"Keep your bedtime regular and walk after lunch (advice {n}).",
            )
            for n, (participant, variant) in enumerate(
                (participant, variant) for variant in variants for participant in participants
            )
        ]
    )
    owner = UserFactory(role=Role.RESEARCHER)
    clinician = UserFactory(role=Role.CLINICIAN)
    spec = StudySpec(
        name="Sleep advice",
        mode="absolute",
        rubric=Rubric.objects.get(name__endswith="(1-5)"),
        cohort=tiny_cohort,
        variants=variants,
        raters_per_item=1,
        clinicians=[clinician],
        instructions="Rate each answer for this person.",
        seed=_seed_with_a_repeat_before_the_second_gold(clinician.pk),
        rater_settings={
            "consent_text": "## Taking part\n\nYou rate answers of a health agent. Your ratings are kept under a pseudonym.",
            "background_fields": DEFAULT_BACKGROUND_FIELDS,
            "pass_threshold": 0.8,
            "qualification_retries": 1,
            "retry_cooldown_minutes": 5,
            "gold_rate": GOLD_RATE,
            "gold_minimum": 2,
            "repeat_share": REPEAT_SHARE,
            "repeat_gap": REPEAT_GAP,
        },
    )
    study = study_create(spec=spec, user=owner)
    assert study.items.count() == 2 + 2 + GOLD_ITEMS + RESULTS_ITEMS
    items = list(study.items.order_by("position"))
    kinds = [
        *(("training", reference, rationale) for reference, rationale in TRAINING),
        *[("qualification", QUALIFICATION_REFERENCE, "")] * 2,
        *[("gold", GOLD_REFERENCE, "")] * GOLD_ITEMS,
    ]
    for item, (kind, reference, rationale) in zip(items, kinds, strict=False):
        study_item_reference_set(
            study=study, item_id=item.pk, kind=kind, reference=reference, tolerance={}, rationale=rationale, user=owner
        )
    return study_set_status(study=study, status="open", user=owner)


def rate(page, scores: str) -> str:
    """Rate the open item with the keyboard (a digit per dimension, then Enter); the URL of the page it leads to."""
    wait_for_form(page)
    url = page.url
    for digit in scores:
        page.keyboard.press(digit)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda new: new != url)
    page.wait_for_load_state()
    return page.url


def assignment_shown(page) -> Assignment:
    match = re.search(r"/evaluation/items/(\d+)/$", page.url)
    assert match, f"not a rating page: {page.url}"
    return Assignment.objects.select_related("item").get(pk=int(match.group(1)))


# The page's HTML as the browser has it, without what Plotly adds to draw the chart: its style sheets (which contain
# "background-repeat"), its text-measuring SVG and the chart's SVG (with "js-reference-point"), alike on every page.
WITHOUT_PLOTLY = """() => {
  const copy = document.documentElement.cloneNode(true);
  copy.querySelectorAll("style, #js-plotly-tester, [data-chart] > *").forEach((node) => node.remove());
  return copy.outerHTML;
}"""


def comparable(served: str) -> str:
    """A rating page's HTML without what differs between any two requests for it: the assignment's URLs, the chart's
    link (evaluation.chart_links: a fresh seal on every page), the CSRF token and the progress counts."""
    served = re.sub(r"/evaluation/items/\d+/", "/evaluation/items/N/", served)
    served = re.sub(r"\?link=[\w-]+", "?link=LINK", served)
    served = re.sub(r'("X-CSRFToken": "|name="csrfmiddlewaretoken" value=")\w+', r"\1TOKEN", served)
    return re.sub(r'<div class="progress".*?</div>', "PROGRESS", served, flags=re.S)


def markers(html: str) -> tuple[set[str], set[str]]:
    """The data-* attribute names and the CSS classes used in a rating page's HTML, the participant's record aside."""
    html, found = re.subn(r'<section class="participant-record".*?</section>', "", html, flags=re.S)
    assert found == 1
    data = set(re.findall(r"\s(data-[\w-]+)", html))
    classes = {name for value in re.findall(r'\sclass="([^"]*)"', html) for name in value.split()}
    return data, classes


def test_a_new_clinician_is_onboarded_trained_qualified_checked_paused_and_reinstated(
    rater_study, page, browser, live_server
):
    study = rater_study
    clinician = study.clinicians.get()

    # --- Consent and background -----------------------------------------------------------------------
    log_in(page, clinician.username, DEFAULT_PASSWORD)
    page.wait_for_url("**/evaluation/queue/")
    page.get_by_role("link", name="Start: consent and background").click()
    page.wait_for_url(f"**/evaluation/queue/{study.pk}/onboarding/")
    assert "You rate answers of a health agent" in page.locator(".consent-text").inner_text()
    page.get_by_label("Specialty").fill("cardiology")
    page.get_by_label("Years in clinical practice").fill("12")
    page.get_by_label("Care setting").select_option("hospital")  # the country is left empty
    with page.expect_navigation():
        page.get_by_role("button", name="I agree and want to take part").click()
    assert page.url.endswith(f"/evaluation/queue/{study.pk}/onboarding/")
    assert "Not saved: fill in: Country of practice." in page.locator(".messages").inner_text()
    assert page.get_by_label("Specialty").input_value() == "cardiology"
    assert page.get_by_label("Years in clinical practice").input_value() == "12"
    assert page.get_by_label("Care setting").input_value() == "hospital"
    assert not StudyRater.objects.filter(study=study, rater=clinician).exists()
    page.get_by_label("Country of practice").fill("Netherlands")
    page.get_by_role("button", name="I agree and want to take part").click()
    page.wait_for_url("**/evaluation/items/*/")
    standing = StudyRater.objects.get(study=study, rater=clinician)
    assert standing.background == {
        "specialty": "cardiology",
        "years_in_practice": 12,
        "country": "Netherlands",
        "care_setting": "hospital",
    }

    # --- Two training items, each followed by the reference and the rationale ---------------------------
    for number, ((reference, rationale), scores) in enumerate(zip(TRAINING, ("425", "153"), strict=True)):
        wait_for_form(page)
        if number == 0:  # the chart is drawn from the participant's trajectory
            page.wait_for_selector("[data-trajectory][data-ready='true'] .main-svg")
        assert page.locator("[data-stage='training']").inner_text().startswith("Training item.")
        assert assignment_shown(page).item.kind == "training"
        rate(page, scores)
        assert re.search(r"/evaluation/items/\d+/feedback/$", page.url)
        rows = page.locator("[data-training-feedback] tbody tr")
        assert [rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count())] == [
            [label, given, str(reference[key])]
            for label, given, key in zip(("Relevance", "Context awareness", "Safety"), scores, DIMENSIONS, strict=True)
        ]
        # Marked as the grading reads it: more than the tolerance (1 point) from the reference.
        assert page.locator("[data-training-feedback] tr.differs").count() == sum(
            abs(int(given) - reference[key]) > 1 for given, key in zip(scores, DIMENSIONS, strict=True)
        )
        assert page.locator("[data-rationale]").inner_text().strip() == rationale
        page.get_by_role("link", name="Continue").click()
        page.wait_for_url("**/evaluation/items/*/")

    # --- Qualification: failed, the cool-down, then passed ---------------------------------------------
    for _ in range(2):
        wait_for_form(page)
        assert page.locator("[data-stage='qualification']").is_visible()
        rate(page, "111")  # three points from every reference score of 4
    assert page.url.endswith(f"/evaluation/queue/{study.pk}/next/")
    assert page.locator("[data-gate='failed'] h2").inner_text() == "Qualification not passed"
    gate_text = page.locator("[data-gate='failed']").inner_text()
    assert "In your last attempt 0 of 2 ratings were within the reference; the study asks for 80 %." in gate_text
    assert "You may try again after" in gate_text
    assert "Qualification not passed: 0 of 2 within the reference" in page.locator(".messages").inner_text()
    attempt = QualificationAttempt.objects.get(standing__study=study, standing__rater=clinician)
    assert attempt.passed is False
    retry_at = datetime.fromisoformat(page.locator("[data-gate='failed'] time").get_attribute("datetime"))
    assert retry_at == attempt.finished_at + timedelta(minutes=5)
    page.get_by_role("link", name="Back to my queue").click()
    page.wait_for_url("**/evaluation/queue/")
    card = page.locator(".study-card")
    assert card.get_by_role("link", name="Qualification not passed: see why").is_visible()
    assert card.locator("a.button").count() == 0  # no item to rate
    page.goto(f"/evaluation/queue/{study.pk}/next/")  # asking directly gives no item either
    assert page.locator("[data-gate='failed']").is_visible()
    assert not Assignment.objects.filter(rater=clinician, state="in_progress").exists()

    QualificationAttempt.objects.filter(pk=attempt.pk).update(
        finished_at=F("finished_at") - timedelta(minutes=5, seconds=1)
    )
    page.goto("/evaluation/queue/")
    page.get_by_role("link", name="Continue the qualification").click()
    page.wait_for_url("**/evaluation/items/*/")
    rate(page, "445")
    wait_for_form(page)
    assert page.locator("[data-stage='qualification']").is_visible()
    rate(page, "345")
    # Admitted: the next page is the first main item, which says so.
    wait_for_form(page)
    status = page.locator("[data-rating-form] .message-success").inner_text()
    assert status == "Qualification passed: 2 of 2 within the reference (the study asks for 80 %)."
    assert list(
        QualificationAttempt.objects.filter(standing__rater=clinician).values_list("number", "correct", "passed")
    ) == [(1, 0, False), (2, 2, True)]

    # --- The main queue, gold items and a hidden repeat mixed in, until the pause -----------------------
    shown: list[tuple[Assignment, str, str]] = []  # (assignment, the page's HTML now, as the server sent it)
    while "/evaluation/items/" in page.url:
        wait_for_form(page)
        page.wait_for_selector("[data-trajectory][data-ready='true'] .main-svg")  # every item's chart is drawn
        assignment = assignment_shown(page)
        assert assignment.purpose in ("main", "gold", "repeat")
        served = page.request.get(page.url).text()  # the flashed messages were shown already
        shown.append((assignment, page.evaluate(WITHOUT_PLOTLY), served))
        assert len(shown) <= 12, "no pause after twelve items"
        rate(page, "222")  # three points from every gold reference of 5
    purposes = [assignment.purpose for assignment, _, _ in shown]
    # Paused on the rating after the second gold item, so the page that follows never tells which item was gold.
    assert purposes.count("gold") == 2 and purposes[-2] == "gold" and purposes[-1] != "gold", purposes
    assert "repeat" in purposes, purposes
    repeat = next(assignment for assignment, _, _ in shown if assignment.purpose == "repeat")
    assert repeat.repeat_of.purpose == "main" and repeat.repeat_of.item_id == repeat.item_id
    gold = Assignment.objects.filter(rater=clinician, purpose="gold")
    assert list(gold.values_list("matches_reference", flat=True)) == [False, False]
    kept = Assignment.objects.filter(rater=clinician, purpose__in=("main", "gold", "repeat"), state="done")
    assert kept.count() == len(shown)  # the ratings are kept
    assert page.url.endswith(f"/evaluation/queue/{study.pk}/next/")
    paused = page.locator("[data-gate='paused']")
    assert paused.locator("h2").inner_text() == "Your queue is paused"
    assert "quality checks found too many ratings far from the study's reference" in paused.inner_text()
    assert "Your ratings so far are kept" in paused.inner_text()
    page.goto(f"/evaluation/queue/{study.pk}/next/")  # asking again still gives nothing
    assert page.locator("[data-gate='paused']").is_visible()
    page.goto("/evaluation/queue/")
    assert page.locator(".study-card").get_by_role("link", name="Your queue is paused: see why").is_visible()
    assert page.locator(".study-card a.button").count() == 0

    # --- Nothing on a gold item's or a repeat's page marks it --------------------------------------------
    first_showing = {assignment.item_id: served for assignment, _, served in shown if assignment.purpose == "main"}
    a_main_page = next(iter(first_showing.values()))
    for assignment, html, served in shown:
        assert "data-stage" not in served and "training item" not in served.lower()
        for word in MARKING_WORDS:  # nor in the page's HTML as the browser has it (gold items and repeats)
            assert word not in served.lower(), (assignment.purpose, word)
            assert assignment.purpose == "main" or word not in html.lower(), (assignment.purpose, word)
        if assignment.purpose == "main":
            continue
        if assignment.purpose == "repeat":  # the very page of its first showing, but for this assignment's own URLs
            assert comparable(served) == comparable(first_showing[assignment.item_id])
        # The same data-* attributes and CSS classes as a main item (the participant's record aside: what it lists,
        # and so its markup, depends on the participant's data).
        assert markers(served) == markers(a_main_page), assignment.purpose

    # --- A researcher reinstates them ------------------------------------------------------------------
    owner = study.created_by
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(15_000)
    try:
        researcher = context.new_page()
        log_in(researcher, owner.username, DEFAULT_PASSWORD)
        researcher.wait_for_url("**/evaluation/studies/")
        researcher.goto(f"/evaluation/studies/{study.pk}/")
        banner = researcher.locator("[data-paused-rater]")
        assert banner.inner_text().startswith(
            f"{clinician.username} was paused by quality control (gold accuracy 0/2 (0 %) below the study's 80 %)"
        )
        cells = researcher.locator("[data-raters] tbody tr").first.locator("td").all_inner_texts()
        assert cells[0] == clinician.username and cells[1].startswith("v1, ")
        assert cells[2] == "specialty: cardiology; years_in_practice: 12; country: Netherlands; care_setting: hospital"
        assert cells[3:5] == ["#1: 0/2 failed; #2: 2/2 passed", "0/2"]
        assert cells[5].startswith("Paused (low gold accuracy)")
        note = researcher.get_by_label("Why reinstate? (audited)")
        reinstate = researcher.get_by_role("button", name="Reinstate")
        reinstate.click()  # an empty note: the browser asks for one and sends nothing
        assert note.evaluate("input => !input.validity.valid") and researcher.locator(".messages").count() == 0
        note.fill("   ")  # only spaces: the browser sends it, the server refuses
        with researcher.expect_navigation():
            reinstate.click()
        assert (
            "Not reinstated: say why the rater is reinstated: the note is kept in the audit log."
            in researcher.locator(".messages").inner_text()
        )
        assert StudyRater.objects.get(study=study, rater=clinician).state == "paused"
        researcher.get_by_label("Why reinstate? (audited)").fill("Discussed the rubric by phone.")
        with researcher.expect_navigation():
            researcher.get_by_role("button", name="Reinstate").click()
        assert (
            f"{clinician.username} may rate again; their gold accuracy counts afresh."
            in researcher.locator(".messages").inner_text()
        )
        assert researcher.locator("[data-paused-rater]").count() == 0
        assert researcher.locator("[data-raters] tbody tr").first.locator("td").nth(5).inner_text() == "Reinstated"
    finally:
        context.close()
    assert StudyRater.objects.get(study=study, rater=clinician).state == "reinstated"
    assert AuditEntry.objects.filter(action="rater.reinstated", details__note="Discussed the rubric by phone.").exists()

    page.goto(f"/evaluation/queue/{study.pk}/next/")
    page.wait_for_url("**/evaluation/items/*/")
    wait_for_form(page)
    assert assignment_shown(page).purpose in ("main", "gold", "repeat")
