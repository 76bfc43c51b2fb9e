"""The job page in Chromium: cancelling asks first, the buttons follow the job's state, and the chart
names its axes and every metric the run reported."""

import pytest
from django.utils import timezone

from modeling.models import Job
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.test_browser_login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def running_job(**fields) -> Job:
    """A job a worker is running (no worker here: the test plays its part by writing the row)."""
    return Job.objects.create(
        kind="demo_training",
        config={"steps": 400},
        state=Job.State.RUNNING,
        progress=0.3,
        message="step 120 of 400",
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
        attempts=1,
        **fields,
    )


def test_cancelling_a_running_job_asks_first_and_the_buttons_follow_its_state(page, live_server):
    job = running_job()
    log_in(page, UserFactory(role="admin").username, DEFAULT_PASSWORD)
    page.goto(f"/modeling/jobs/{job.pk}/")
    questions = []

    def answer(dialog, accept):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, accept=False))
    page.get_by_role("button", name="Cancel job").click()
    page.wait_for_timeout(300)
    assert questions == [
        f"Cancel job #{job.pk}? It is running: it stops at its next progress report, and what it has not saved is lost."
    ]
    job.refresh_from_db()
    assert not job.cancel_requested  # "no" keeps it running

    page.once("dialog", lambda dialog: answer(dialog, accept=True))
    page.get_by_role("button", name="Cancel job").click()
    page.locator("[data-cancelling]").wait_for(state="visible")
    job.refresh_from_db()
    assert job.cancel_requested and job.state == "running"
    assert (
        page.get_by_role("button", name="Cancel job").count() == 0
        and page.get_by_role("button", name="Retry").count() == 0
    )

    Job.objects.filter(pk=job.pk).update(
        state=Job.State.CANCELLED, message="cancelled while running", finished_at=timezone.now()
    )  # the worker stops it
    page.get_by_role("button", name="Retry").wait_for(timeout=20_000)
    assert page.locator("[data-field=state]").inner_text() == "Cancelled"
    assert page.get_by_role("button", name="Cancel job").count() == 0
    assert not page.locator("[data-cancelling]").is_visible()


def test_the_chart_names_its_axes_and_every_reported_metric(page, live_server):
    # The validation metric is reported every 20 steps only, so the newest point has none.
    curve = [
        {"step": step, "loss": 1 / step, **({"val_auroc": 0.5 + step / 200} if step % 20 == 0 else {})}
        for step in range(5, 70, 5)
    ]
    job = running_job(curve=curve, metrics=curve[-1])
    log_in(page, UserFactory(role="admin").username, DEFAULT_PASSWORD)
    page.goto(f"/modeling/jobs/{job.pk}/")
    page.wait_for_selector("[data-curve] .main-svg")
    chart = page.locator("[data-curve]")
    assert chart.locator(".legendtext").all_text_contents() == ["Loss", "Validation AUROC"]
    assert chart.locator(".g-xtitle").text_content() == "Step"
    assert (
        chart.locator(".g-ytitle").text_content() == "Loss"
        and chart.locator(".g-y2title").text_content() == "Metric value"
    )
