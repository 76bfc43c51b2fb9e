"""A researcher pre-registers a study in Chromium (issue 21): fills the protocol, computes the power analysis, locks
it, is refused a silent change of the primary outcome, records it as a deviation, and finds the manifest's hash
(the one in the audit log) in the downloaded manifest and on the dashboard."""

import hashlib
from pathlib import Path

import pytest

from evaluation.models import Deviation, Study
from healthagent.models import AgentVariant, AuditEntry
from healthagent.roles import Role
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.test_browser_login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_researcher_preregisters_a_study_and_records_a_deviation(pairwise_study, page, live_server):
    owner = UserFactory(role=Role.RESEARCHER)
    Study.objects.filter(pk=pairwise_study.pk).update(created_by=owner, status="draft")
    log_in(page, owner.username, DEFAULT_PASSWORD)
    page.goto(f"/evaluation/studies/{pairwise_study.pk}/")
    page.get_by_role("link", name="Protocol", exact=True).click()
    page.get_by_label("Hypotheses").fill("Grounded answers are more relevant than the language model's alone.")
    page.get_by_label("Primary outcome: dimension").select_option("relevance")
    page.get_by_label("Primary comparison: first variant").select_option(
        str(AgentVariant.objects.get(name="grounded agent").pk)
    )
    page.get_by_label("Second variant").select_option(str(AgentVariant.objects.get(name="LLM only").pk))
    page.get_by_label("Planned items (participants rated for both variants)").fill("10")
    page.get_by_label("Planned raters per item").fill("2")
    page.get_by_label("Expected difference (points)").fill("0.5")
    page.get_by_role("button", name="Compute the power analysis (a few seconds)").click(timeout=180_000)
    page.wait_for_selector("[data-figure='power_figure'][data-drawn='true'] .main-svg", timeout=60_000)
    choice = page.locator("[data-power-choice]").inner_text()
    assert "raters per item" in choice
    planned = int(choice.split(" items")[0])
    assert page.get_by_label("Planned items (participants rated for both variants)").input_value() == str(planned)

    page.get_by_role("button", name="Lock the protocol").click()
    sha256 = page.locator("[data-manifest-sha256]").inner_text()
    assert AuditEntry.objects.get(action="protocol.locked").details["sha256"] == sha256

    # The primary outcome cannot change silently once locked.
    page.get_by_label("Primary outcome: dimension").select_option("safety")
    page.get_by_role("button", name="Record the change as a deviation").click()
    assert (
        "The protocol is locked: changing primary_dimension is a deviation; say why"
        in page.locator("[role=alert]").inner_text()
    )
    assert not Deviation.objects.exists()
    page.get_by_label("Primary outcome: dimension").select_option("safety")
    page.get_by_label("Reason for the change (a locked protocol records it as a deviation)").fill(
        "The ethics board asked for safety as the primary outcome."
    )
    page.get_by_role("button", name="Record the change as a deviation").click()
    row = page.locator("[data-deviations] tbody tr").first.inner_text()
    assert "primary_dimension" in row and "relevance" in row and "safety" in row and "ethics board" in row

    with page.expect_download() as download:
        page.get_by_role("link", name="Download the manifest").click()
    assert hashlib.sha256(Path(download.value.path()).read_bytes()).hexdigest() == sha256

    Study.objects.filter(pk=pairwise_study.pk).update(status="open")
    page.goto(f"/evaluation/studies/{pairwise_study.pk}/dashboard/")
    primary = page.locator("[data-primary-analysis]")
    assert "Pre-registered primary analysis" in primary.inner_text() and sha256 in primary.inner_text()
    assert "ethics board" in primary.inner_text()
