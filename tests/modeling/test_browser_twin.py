"""A researcher queues a digital-twin simulation in Chromium, follows its progress and sees the fan charts,
run by a real worker on Redis."""

import time

import numpy as np
import pytest

from modeling.models import Job, SimulationRun
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.test_browser_login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_a_researcher_queues_a_simulation_and_sees_fan_charts_with_and_without(
    worker, page, live_server, tiny_cohort, twin_checkpoint, monkeypatch
):
    from modeling.jobs import JobContext

    report = JobContext.progress

    def unhurried(self, *args, **kwargs):  # the in-process worker pauses after each report, so the page sees it running
        report(self, *args, **kwargs)
        time.sleep(3.0)  # longer than the page polls (every 2 s)

    monkeypatch.setattr(JobContext, "progress", unhurried)
    participant = tiny_cohort.participants.order_by("pk").first()
    researcher = UserFactory(role="researcher")
    log_in(page, researcher.username, DEFAULT_PASSWORD)
    page.wait_for_url("**/evaluation/studies/")
    page.get_by_role("link", name="Digital twin").click()
    page.get_by_label("Participant").select_option(str(participant.pk))
    page.get_by_label("statin: atorvastatin 20 mg daily").check()
    page.get_by_label("exercise programme", exact=False).check()  # nothing is ticked until the researcher ticks it
    page.get_by_label("Horizon (days)").fill("21")
    page.get_by_label("Samples").fill("4")
    page.get_by_role("button", name="Simulate").click()

    page.wait_for_url(f"**/modeling/twin/?participant={participant.pk}&job=*")
    # Progress arrives while the job runs: over the websocket where the server speaks it, polled here (the test's
    # live server is plain WSGI, like a worker's events that cannot reach the web process in the embedded mode).
    page.wait_for_function(
        "() => { const job = document.querySelector('[data-twin-job]');"
        " return job.dataset.state === 'running' && job.dataset.via === 'poll'"
        " && Number(job.dataset.progress) > 0 && job.querySelector('progress').value > 0; }",
        timeout=60_000,
    )
    page.wait_for_selector("[data-fan-chart] .main-svg", timeout=120_000)  # reloaded with the stored simulation
    assert page.locator("[data-twin-job]").get_attribute("data-state") == "succeeded"
    charts = page.locator("[data-fan-chart]")
    assert charts.count() >= 4
    legend = charts.first.inner_text()
    assert "no intervention" in legend and "statin" in legend and "exercise programme" in legend
    # Every arm starts where the participant is: the first point of each arm's median line is the last measured dot
    # (labs, blood pressure and body composition; wearable values are drawn per day but read per 14-day block).
    starts = page.evaluate(
        """() => [...document.querySelectorAll('[data-fan-chart]')].map(chart => ({
            name: chart.dataset.fanChart,
            measured: chart.data.filter(trace => trace.name === 'measured').map(trace => trace.y[trace.y.length - 1]),
            first: chart.data.filter(trace => trace.line && trace.line.width === 2).map(trace => trace.y[0]),
        }))"""
    )
    from modeling.ml.data.clinical import BIOMARKER_BY_NAME

    checked = [
        start
        for start in starts
        if start["measured"] and BIOMARKER_BY_NAME[start["name"]].modality not in ("cgm", "wearable_daily")
    ]
    assert checked, starts
    for start in checked:
        assert len(start["first"]) == 3  # no intervention, statin, exercise programme
        assert all(abs(first - start["measured"][0]) <= 0.01 for first in start["first"]), start
    job = Job.objects.get(kind="simulate")
    assert job.queued_by == researcher and job.queue == "quick"  # a tiny twin: never behind a training run
    assert SimulationRun.objects.get(job=job).interventions == ["exercise_programme", "statin"]


def test_choosing_a_participant_shows_their_latest_simulation(page, live_server, tiny_cohort, twin_checkpoint):
    first, second = tiny_cohort.participants.order_by("pk")[:2]
    from modeling.ml.twin.generate import Rollouts
    from modeling.ml.twin.tokens import BIOMARKER_NAMES
    from modeling.selectors import participant_record
    from modeling.services import simulation_results

    rollouts = Rollouts(
        np.array([0, 7, 14]),
        np.random.default_rng(0).normal(size=(1, 2, 4, 3, len(BIOMARKER_NAMES))),
        np.full((1, 2, 4, 11), 0.003),
        np.zeros((1, 2, 4, 1), dtype=int),
        np.zeros((1, 2, 4, 1), dtype=int),
        [None, "statin"],
        14,
    )
    results = simulation_results(rollouts, participant_index=0, record=participant_record(participant=second))
    SimulationRun.objects.create(
        participant=second,
        checkpoint=twin_checkpoint,
        interventions=["statin"],
        horizon_days=14,
        samples=4,
        results=results,
    )
    researcher = UserFactory(role="researcher")
    log_in(page, researcher.username, DEFAULT_PASSWORD)
    page.goto(f"/modeling/twin/?participant={first.pk}")
    assert page.get_by_text(f"No simulation of {first.pseudonym} yet").is_visible()
    page.get_by_label("Participant").select_option(str(second.pk))
    page.wait_for_url(f"**/modeling/twin/?participant={second.pk}")
    page.wait_for_selector("[data-fan-chart] .main-svg")  # the second participant's stored simulation, drawn
    assert page.get_by_label("Participant").input_value() == str(second.pk)
