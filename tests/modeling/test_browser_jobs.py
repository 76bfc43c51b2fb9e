"""An admin queues a job in Chromium and watches it progress to success, run by a real worker on Redis."""

import pytest

from modeling.models import Job
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.test_browser_login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_an_admin_queues_a_training_job_and_watches_it_succeed(worker, page, live_server):
    admin = UserFactory(role="admin")
    log_in(page, admin.username, DEFAULT_PASSWORD)
    page.wait_for_url("**/modeling/jobs/")
    page.get_by_role("link", name="Demo training run").click()
    page.get_by_label("Participants").fill("40")
    page.get_by_label("Days").fill("2")
    page.get_by_label("Steps").fill("60")
    page.get_by_label("Step delay s").fill("0.1")
    page.get_by_role("button", name="Queue").click()
    page.wait_for_url("**/modeling/jobs/*/")
    section = page.locator("[data-job]")
    page.wait_for_function(
        "() => Number(document.querySelector('[data-job]').dataset.progress) > 0 && document.querySelector('[data-job]').dataset.state === 'running'",
        timeout=60_000,
    )
    page.wait_for_function("() => document.querySelector('[data-job]').dataset.state === 'succeeded'", timeout=90_000)
    page.wait_for_selector("h2:has-text('Result')")  # the page reloads once with the result and checkpoints
    page.wait_for_selector("[data-curve] .main-svg")  # the loss curve
    assert "100" in section.locator("[data-field=percent]").inner_text()
    assert page.get_by_role("button", name="Cancel").count() == 0
    job = Job.objects.get()
    assert job.state == "succeeded" and job.queued_by == admin


def test_a_bad_config_is_a_form_error_not_a_crashed_worker(page, live_server):
    admin = UserFactory(role="admin")
    log_in(page, admin.username, DEFAULT_PASSWORD)
    page.goto("/modeling/jobs/new/demo_training/")
    page.get_by_label("Steps").fill("0")
    page.evaluate(
        "document.querySelector('form.form-grid').noValidate = true"
    )  # past the browser's own check, to the server's
    page.get_by_role("button", name="Queue").click()
    assert "Ensure this value is greater than or equal to 1" in page.content()
    assert not Job.objects.exists()


@pytest.mark.slow
def test_an_admin_trains_a_twin_whose_checkpoint_has_its_hazard_head_and_calibration(worker, page, live_server):
    from pathlib import Path

    from modeling.ml.twin.training import load_twin
    from modeling.models import Checkpoint

    admin = UserFactory(role="admin")
    log_in(page, admin.username, DEFAULT_PASSWORD)
    page.wait_for_url("**/modeling/jobs/")
    page.get_by_role("link", name="Digital twin: training").click()
    for label, value in {
        "Participants": "20",
        "Days": "200",
        "Steps": "6",
        "Batch size": "4",
        "Block size": "128",
        "Hazard participants": "30",
        "Calibration participants": "40",
    }.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Queue").click()
    page.wait_for_url("**/modeling/jobs/*/")
    page.wait_for_function("() => document.querySelector('[data-job]').dataset.state === 'succeeded'", timeout=180_000)
    page.wait_for_selector("h2:has-text('Result')")
    page.reload()
    text = page.content()
    assert "hazard head fitted on 30 new participants (seed 21" in text and "risks calibrated on" in text
    job = Job.objects.get()
    checkpoint = Checkpoint.objects.get(job=job)
    assert Path(checkpoint.path).name == "complete"
    model, _ = load_twin(checkpoint.path)
    assert model.hazard_head is not None and model.config.risk_calibration_fit["seed"] == 1
