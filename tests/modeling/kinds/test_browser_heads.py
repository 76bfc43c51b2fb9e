"""An admin queues a small head search in Chromium, watches it progress, and reads the finished page's charts and tables."""

import pytest

from modeling.models import Checkpoint, Job
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.modeling.kinds.test_heads import lsm_checkpoint  # noqa: F401 - fixture
from tests.test_browser_login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_an_admin_queues_a_head_search_and_reads_its_leaderboard(worker, lsm_checkpoint, page, live_server, tmp_path):  # noqa: F811 - lsm_checkpoint
    admin = UserFactory(role="admin")
    log_in(page, admin.username, DEFAULT_PASSWORD)
    page.goto("/modeling/jobs/new/head_search/")
    page.get_by_label("Tasks").select_option(["hypertension"])
    for proposer in ("random (baseline)", "evolution of the best specs", "Optuna TPE"):
        page.get_by_label(proposer).check()
    page.get_by_label("Budget").fill("4")
    page.get_by_label("Participants").fill("30")
    page.get_by_label("Days").fill("1")
    page.get_by_label("Replicates").fill("2")
    page.get_by_role("button", name="Queue").click()
    page.wait_for_url("**/modeling/jobs/*/")
    page.wait_for_function(
        "() => Number(document.querySelector('[data-job]').dataset.progress) > 0.05", timeout=120_000
    )
    assert "hypertension:" in page.locator("[data-field=message]").inner_text()
    page.wait_for_function("() => document.querySelector('[data-job]').dataset.state === 'succeeded'", timeout=240_000)
    page.wait_for_selector("[data-head-chart] .main-svg")  # after the reload: the leaderboard chart is drawn
    legend = page.locator("[data-head-chart] .legend").text_content()  # SVG text
    assert "best so far" in legend and "linear probe" in legend
    assert (
        page.locator("[data-head-chart] .scatterlayer .trace").count() >= 3
    )  # proposers' points, best-so-far and probe lines
    page.wait_for_selector("h2:has-text('Best head vs linear probe')")
    head_table = page.locator("section.result-table", has_text="Best head vs linear probe")
    assert "hypertension" in head_table.inner_text() and (
        "uses the head" in head_table.inner_text() or "keeps the probe" in head_table.inner_text()
    )
    assert "raised the best" in page.locator("section.result-table", has_text="Proposers: hypertension").inner_text()
    page.screenshot(path=tmp_path / "head_search.png", full_page=True)  # for a reviewer's eyes
    job = Job.objects.get(kind="head_search")
    assert job.state == "succeeded" and Checkpoint.objects.filter(family="lsm_head", job=job).count() == 1
