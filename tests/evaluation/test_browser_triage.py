"""Issue 21 end to end in Chromium: a researcher pre-registers a study (power analysis, lock, a refused change, a
deviation) and names a safety adjudicator; a clinician rates an answer severely harmful and ties it to a window they
brush on the chart and one they type; the adjudicator decides the incident from the triage queue; the researcher's
export holds the manifest's hash, the deviation, the incident and the evidence windows."""

import csv
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from evaluation.models import Deviation, Incident, Rating, Rubric
from evaluation.services import StudySpec, study_create
from healthagent.models import AgentVariant, AuditEntry
from healthagent.roles import Role
from tests.conftest import grounded_and_scripted_answers
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.test_browser_login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def draft_harm_study(tiny_cohort):
    grounded, llm = grounded_and_scripted_answers(
        tiny_cohort, "Stop taking your blood pressure medication if you feel dizzy."
    )
    owner = UserFactory(role=Role.RESEARCHER)
    clinician = UserFactory(role=Role.CLINICIAN)
    study = study_create(
        spec=StudySpec(
            name="Harm, pre-registered",
            mode="absolute",
            rubric=Rubric.objects.get(name__endswith="harm (Med-PaLM)"),
            cohort=tiny_cohort,
            variants=[grounded, llm],
            raters_per_item=1,
            clinicians=[clinician],
        ),
        user=owner,
    )
    study.owner, study.clinician = owner, clinician
    return study


def log_out(page):
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login/**")


def test_preregistration_triage_and_evidence_from_protocol_to_export(draft_harm_study, page, live_server):
    study, owner, clinician = draft_harm_study, draft_harm_study.owner, draft_harm_study.clinician
    adjudicator = UserFactory(role=Role.CLINICIAN)

    # The researcher pre-registers the study and names its adjudicator.
    log_in(page, owner.username, DEFAULT_PASSWORD)
    page.goto(f"/evaluation/studies/{study.pk}/protocol/")
    page.get_by_label("Hypotheses").fill("Grounded answers are less harmful and more relevant.")
    page.get_by_label("Primary outcome: dimension").select_option("relevance")
    assert "harm" not in page.get_by_label("Primary outcome: dimension").inner_text()  # harm is no numeric outcome
    page.get_by_label("Primary comparison: first variant").select_option(
        str(AgentVariant.objects.get(name="grounded agent").pk)
    )
    page.get_by_label("Second variant").select_option(str(AgentVariant.objects.get(name="LLM only").pk))
    page.get_by_label("Planned items (participants rated for both variants)").fill("10")
    page.get_by_label("Planned raters per item").fill("1")
    page.get_by_label("Expected difference (points)").fill("1")
    page.get_by_role("button", name="Compute the power analysis (a few seconds)").click(timeout=180_000)
    page.wait_for_selector("[data-figure='power_figure'][data-drawn='true'] .main-svg", timeout=60_000)
    page.get_by_role("button", name="Lock the protocol").click()
    sha256 = page.locator("[data-manifest-sha256]").inner_text()
    page.get_by_label("Primary outcome: dimension").select_option("safety")
    page.get_by_role("button", name="Record the change as a deviation").click()
    assert "changing primary_dimension is a deviation; say why" in page.locator("[role=alert]").inner_text()
    assert not Deviation.objects.exists()
    page.get_by_label("Primary outcome: dimension").select_option("safety")
    page.get_by_label("Reason for the change (a locked protocol records it as a deviation)").fill(
        "The ethics board asked for safety first."
    )
    page.get_by_role("button", name="Record the change as a deviation").click()
    assert "ethics board" in page.locator("[data-deviations]").inner_text()

    page.goto(f"/evaluation/studies/{study.pk}/")
    page.get_by_role("checkbox", name=clinician.username).wait_for(state="detached")  # a rater cannot adjudicate
    page.get_by_role("checkbox", name=adjudicator.username).check()
    page.get_by_role("button", name="Save adjudicators").click()
    assert f"Safety adjudicators: {adjudicator.username}" in page.locator(".messages").inner_text()
    page.get_by_role("button", name="Open the study").click()
    log_out(page)

    # The clinician: scores with the keyboard, severe harm, a window brushed on the chart and one typed.
    log_in(page, clinician.username, DEFAULT_PASSWORD)
    page.get_by_role("link", name="Rate next item").click()
    page.wait_for_selector("[data-rating-form][data-ready='true']")
    page.wait_for_selector("[data-trajectory][data-ready='true']", timeout=30_000)
    for key in "432":  # relevance, context, safety
        page.keyboard.press(key)
    page.keyboard.press("3")  # extent: severe harm or death
    page.keyboard.press("2")  # likelihood: medium
    page.get_by_role("button", name="Mark on the chart").click()
    box = page.locator('[data-chart="minutes"] .nsewdrag').nth(2).bounding_box()  # a lower panel: its own x axis
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.55, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=8)
    page.mouse.up()
    expect(page.get_by_label("From")).to_have_value(
        re.compile(r"^day \d+ \d\d:\d\d$")
    )  # plotly reports it after the drag
    brushed_from = page.get_by_label("From").input_value()
    assert brushed_from.startswith("day ") and page.get_by_label("to", exact=True).input_value().startswith("day ")
    page.locator("[data-evidence-dimension]").select_option("safety")
    page.get_by_label("Note").fill("advice given during the night-time SpO2 dips")
    page.get_by_role("button", name="Add window").click()
    page.keyboard.press("Escape")  # leave the note box; then e goes back to the window fields
    page.keyboard.press("e")
    page.keyboard.type("day 1 07:00")
    page.keyboard.press("Tab")
    page.keyboard.type("day 1 08:30")
    page.locator("[data-evidence-dimension]").select_option("context")
    page.get_by_label("Note").fill("morning run")
    page.get_by_label("Note").press("Enter")  # Enter in a window field adds the window, never submits
    windows = page.locator("[data-evidence-window]")
    assert (
        windows.count() == 2
        and "Context awareness: day 1 07:00 – day 1 08:30 · morning run" in windows.nth(1).inner_text()
    )
    # The draft keeps the harm answers and the windows: a reload (a lost tab) shows them again.
    page.wait_for_timeout(600)  # the autosave runs 400 ms after the last change
    page.wait_for_selector("[data-autosave-status]:has-text('Draft saved')")
    page.reload()
    page.wait_for_selector("[data-evidence][data-ready='true']")
    assert page.locator("[data-evidence-window]").count() == 2
    assert page.get_by_role("radio", name="Severe harm or death").first.is_checked()
    rated_url = page.url
    page.get_by_role("button", name="Submit and next").click()
    page.wait_for_url(lambda url: url != rated_url)
    rating = Rating.objects.get(assignment__rater=clinician)
    assert rating.harm == {"extent": "severe", "likelihood": "medium"}
    assert [(w["dimension"], w["note"]) for w in rating.evidence] == [
        ("safety", "advice given during the night-time SpO2 dips"),
        ("context", "morning run"),
    ]
    assert rating.evidence[1]["start"] == 7 * 60 and rating.evidence[1]["end"] == 8 * 60 + 30
    incident = Incident.objects.get()
    log_out(page)

    # The adjudicator decides it from the triage queue.
    log_in(page, adjudicator.username, DEFAULT_PASSWORD)
    assert "1 incident waits for your decision" in page.locator("[data-triage-link]").inner_text()
    page.get_by_role("link", name="Safety triage").click()
    page.get_by_role("link", name=f"Incident #{incident.pk}").click()
    ratings = page.locator("[data-incident-ratings]").inner_text()
    assert clinician.username in ratings and "severe" in ratings and "morning run" in ratings
    page.get_by_label("Confirmed harmful").check()
    page.get_by_label("Note (what you found, and what should happen)").fill("Stopping the medication is dangerous.")
    page.get_by_role("button", name="Decide").click()
    page.wait_for_selector("[data-triage='decided']")
    assert f"Incident #{incident.pk}" in page.locator("[data-triage='decided']").inner_text()
    assert AuditEntry.objects.filter(action="incident.viewed", actor=adjudicator).exists()
    log_out(page)

    # The researcher's export holds the manifest hash (as in the audit log), the deviation, the incident and evidence.
    log_in(page, owner.username, DEFAULT_PASSWORD)
    page.goto(f"/evaluation/studies/{study.pk}/")
    with page.expect_download() as download:
        page.get_by_role("link", name="Bundle for publication (zip: ratings, protocol, deviations)").click()
    bundle = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
    assert hashlib.sha256(bundle.read("protocol.json")).hexdigest() == sha256
    assert AuditEntry.objects.get(action="protocol.locked").details["sha256"] == sha256
    assert json.loads(bundle.read("deviations.json"))[0]["reason"] == "The ethics board asked for safety first."
    incidents = json.loads(bundle.read("incidents.json"))
    assert incidents[0]["decision"] == "confirmed" and incidents[0]["decided_by"] == adjudicator.username
    rows = list(csv.DictReader(io.StringIO(bundle.read("ratings.csv").decode())))
    assert rows[0]["protocol_sha256"] == sha256 and rows[0]["safety_incident"] == "confirmed"
    assert rows[0]["harm_extent"] == "severe"
    assert [w["note"] for w in json.loads(rows[0]["evidence"])][1] == "morning run"
