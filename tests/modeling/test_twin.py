"""The digital twin on the site: records from the database, the job kinds, the page, the agent's citations."""

import re

import numpy as np
import pytest
import torch
from django.urls import reverse

from healthagent.agent.backends.grounded import grounded_items, render
from healthagent.agent.context import participant_context
from healthagent.agent.simulations import simulated_effects
from modeling.jobs import JobError, job_queue
from modeling.ml.twin.data import MIN_WEAR_MINUTES
from modeling.ml.twin.tokens import BIOMARKER_NAMES
from modeling.models import Checkpoint, Job, SimulationRun
from modeling.selectors import participant_record
from modeling.tasks import run_job

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"


def test_a_participant_s_record_comes_from_the_stored_data(tiny_cohort):
    participant = tiny_cohort.participants.order_by("pk").first()
    record = participant_record(participant=participant)
    stored = participant.measurements.filter(name__in=BIOMARKER_NAMES).count()
    worn = participant.daily_summaries.filter(wear_minutes__gte=MIN_WEAR_MINUTES)
    assert stored <= len(record.measurements) <= stored + worn.count()
    # Only steps: the site's resting heart rate and sleep are not what the twin was trained on.
    assert {m["name"] for m in record.measurements if m["name"] in ("resting_heart_rate", "sleep_minutes")} == set()
    assert record.sex == participant.sex and record.smoker is None  # smoking is not stored: its token is simply absent
    low = int(participant.age_band.split("-")[0])
    assert low <= record.age_years <= low + 5
    assert record.last_day >= participant.history_days - 1
    assert {e["kind"] for e in record.events} <= {"diet", "medication", "intervention", "diagnosis", "endpoint"}
    # the height measured (the synthetic source's at the last weighing) is the record's, in metres, and no token
    assert record.height_m == pytest.approx(participant.measurements.get(name="height").value / 100)
    assert "height" not in {m["name"] for m in record.measurements}


def test_only_days_worn_long_enough_in_well_worn_blocks_become_wearable_values():
    from healthagent.models import Cohort, DailySummary, Participant

    cohort = Cohort.objects.create(name="Wear", source="synthetic")
    participant = Participant.objects.create(
        cohort=cohort, pseudonym="p-wear", age_band="40-44", sex="female", history_days=42
    )
    worn_full = [(0, 900), (1, 800), (2, 700), (3, 30)]  # block 0: three valid days and a 30-minute day
    worn_short = [(14, 900), (15, 900), (16, 100)]  # block 1: two valid days only
    for day, minutes in worn_full + worn_short:
        DailySummary.objects.create(
            participant=participant,
            day_index=day,
            wear_minutes=minutes,
            steps=1000 * (day + 1),
            sleep_minutes=None,
            resting_heart_rate_bpm=None,
        )
    record = participant_record(participant=participant)
    assert sorted(m["day"] for m in record.measurements if m["name"] == "daily_steps") == [0, 1, 2]


def test_the_simulate_job_stores_fan_charts_effects_and_risks_for_each_participant(
    tiny_cohort, twin_checkpoint, deliver_again
):
    job = job_queue(
        kind_name="simulate",
        config={
            "checkpoint": twin_checkpoint.pk,
            "cohort": tiny_cohort.pk,
            "interventions": ["statin", "exercise_programme"],
            "horizon_days": 28,
            "samples": 4,
            "seed": 1,
        },
    )
    assert job.queue == "cpu"  # a tiny twin: CPU workers take it (larger sizes go to the gpu queue)
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    runs = list(SimulationRun.objects.filter(job=job))
    assert len(runs) == 3 and job.simulations.count() == 3
    results = runs[0].results
    assert results["arms"] == ["none", "statin", "exercise_programme"]
    assert results["grid_days"][0] == 0 and results["grid_days"][-1] == 28
    fan = results["bands"]["statin"]["ldl"]
    assert all(low <= mid <= high for low, mid, high in zip(fan["0.05"], fan["0.5"], fan["0.95"], strict=True))
    assert set(results["effects"]) == {"statin", "exercise_programme"}
    assert all(0 <= risk <= 1 for risk in results["risk"]["none"].values())
    assert (
        deliver_again(job) == "succeeded"
    )  # its worker died before marking it finished: the runs are overwritten, not added
    assert job.attempts == 2 and sorted(job.simulations.values_list("pk", flat=True)) == sorted(run.pk for run in runs)
    assert sorted(job.simulations.values_list("participant", flat=True)) == sorted(
        tiny_cohort.participants.values_list("pk", flat=True)
    )


def test_the_simulate_form_refuses_a_participant_of_another_cohort(tiny_cohort, twin_checkpoint):
    from healthagent.models import Cohort

    other = Cohort.objects.create(name="Other", source="synthetic")
    with pytest.raises(JobError, match="not in that cohort"):
        job_queue(
            kind_name="simulate",
            config={
                "checkpoint": twin_checkpoint.pk,
                "cohort": other.pk,
                "participant": tiny_cohort.participants.first().pk,
                "interventions": ["statin"],
                "horizon_days": 30,
                "samples": 4,
                "seed": 0,
            },
        )


@pytest.mark.slow
def test_the_training_job_registers_a_loadable_twin_with_its_hazard_head_and_calibration(
    tiny_cohort, deliver_again, monkeypatch
):
    import json
    import shutil
    from pathlib import Path

    from modeling.jobs import JobContext
    from modeling.ml.twin.training import load_twin

    reported = []  # (fraction, message) of every progress the run reports, before the job is marked finished
    record = JobContext.progress
    monkeypatch.setattr(
        JobContext,
        "progress",
        lambda self, fraction, message="", **kw: (
            reported.append((fraction, message)) or record(self, fraction, message, **kw)
        ),
    )

    job = job_queue(
        kind_name="twin_train",
        config={
            "size": "tiny",
            "participants": 20,
            "days": 200,
            "steps": 6,
            "batch_size": 4,
            "learning_rate": 0.002,
            "block_size": 128,
            "checkpoint_every": 3,
            "seed": 0,
            "hazard_participants": 30,
            "hazard_seed": 21,
            "calibration_participants": 40,
            "calibration_seed": 1,
            "simulate_cohort": tiny_cohort.pk,
        },
    )
    assert job.queue == "cpu"
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    checkpoint = Checkpoint.objects.get(job=job, family="twin")
    model, tokenizer = load_twin(checkpoint.path)
    assert model.config.vocab_size == tokenizer.vocab_size and checkpoint.metrics["held_out_loss"] > 0
    # The model the site offers is the whole of it: the trunk, the hazard head and the calibration of its risks.
    assert model.hazard_head is not None and model.config.hazard_fit["seed"] == 21
    assert model.config.hazard_fit["participants"] == 30 and model.config.hazard_fit["days"] == 200
    assert model.config.risk_calibration_fit["seed"] == 1
    assert model.config.risk_calibration_fit["hazard_endpoints"] == model.config.hazard_endpoints
    assert (Path(checkpoint.path) / "calibration.json").exists() and checkpoint.metrics["risk_calibrated"] is True
    assert checkpoint.metrics["hazard_endpoints"] == model.config.hazard_endpoints
    job.refresh_from_db()
    assert job.log_tail.count("hazard head fitted on 30 new participants (seed 21") == 1
    assert job.log_tail.count("risks calibrated on") == 1
    # Training takes the first 60 % of the bar, the head's fit the next 20 %, the calibration the last, in order.
    fractions = [fraction for fraction, _ in reported]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    steps = [fraction for fraction, message in reported if message.startswith("step ")]
    fit = [fraction for fraction, message in reported if message.startswith(("read ", "fitting the head", "hazard"))]
    futures = [fraction for fraction, message in reported if message.startswith(("sampling the futures", "futures of"))]
    assert steps[-1] == pytest.approx(0.6) and fit and min(fit) >= 0.6 and max(fit) == pytest.approx(0.8)
    assert futures and min(futures) >= 0.8 and max(futures) == pytest.approx(1.0)
    follow_up = Job.objects.get(pk=job.result["simulation_job"])
    assert (
        follow_up.kind == "simulate"
        and follow_up.config["checkpoint"] == checkpoint.pk
        and len(follow_up.config["interventions"]) == 5
    )
    head = model.hazard_head.weight.detach().clone()
    trunk = Path(checkpoint.path).parent / "model"  # what training wrote: the trunk alone, never the checkpoint
    assert json.loads((trunk / "config.json").read_text())["hazard_endpoints"] == []
    assert deliver_again(job) == "succeeded"  # resumes at its last step; one model, one simulation job, nothing refit
    assert job.result["resumed_from_step"] == 6 and list(Checkpoint.objects.filter(job=job)) == [checkpoint]
    assert list(Job.objects.filter(kind="simulate")) == [follow_up] and job.result["simulation_job"] == follow_up.pk
    assert job.log_tail.count("hazard head fitted") == 1 and job.log_tail.count("risks calibrated on") == 1
    assert "made by an earlier delivery" in job.log_tail
    # Its worker died while the head and calibration were being made: the next delivery makes them again, whole.
    shutil.rmtree(checkpoint.path)
    assert deliver_again(job) == "succeeded"
    assert job.log_tail.count("hazard head fitted") == 2 and job.log_tail.count("risks calibrated on") == 2
    again, _ = load_twin(checkpoint.path)
    assert torch.equal(again.hazard_head.weight, head) and again.config.risk_calibration_fit["seed"] == 1
    assert list(Checkpoint.objects.filter(job=job)) == [checkpoint] and not (trunk.parent / "completing").exists()


@pytest.mark.parametrize(
    ("seeds", "field"),
    [
        ({"seed": 21, "hazard_seed": 21}, "hazard_seed"),
        ({"seed": 3, "calibration_seed": 3}, "calibration_seed"),
        ({"hazard_seed": 5, "calibration_seed": 5}, "calibration_seed"),
    ],
)
def test_the_training_form_refuses_a_head_or_a_calibration_on_people_the_model_saw(seeds, field):
    from modeling.kinds.twin import TwinTrainForm

    form = TwinTrainForm(data={"steps": "12", **seeds})
    assert not form.is_valid() and list(form.errors) == [field]
    # No head: its seed is free, and the calibration may use it.
    alone = TwinTrainForm(data={"steps": "12", "hazard_participants": "0", "hazard_seed": "5", "calibration_seed": "5"})
    assert alone.is_valid(), alone.errors
    assert alone.cleaned_data["hazard_participants"] == 0 and alone.cleaned_data["calibration_participants"] == 4000


def _stored_run(participant, checkpoint):
    effects = {name: {"mean": 0.01, "low": -0.3, "high": 0.3} for name in BIOMARKER_NAMES}
    effects["systolic_bp"] = {"mean": -4.24, "low": -6.08, "high": -2.31}
    effects["weight"] = {"mean": -0.6, "low": -1.1, "high": -0.2}
    # Changes for the worse, however clear and large: the agent must not recommend diet change for them.
    harmful = {name: {"mean": 0.0, "low": -1.0, "high": 1.0} for name in BIOMARKER_NAMES}
    harmful["ldl"] = {"mean": 30.0, "low": 20.0, "high": 40.0}
    harmful["daily_steps"] = {"mean": -3000.0, "low": -4000.0, "high": -2000.0}
    return SimulationRun.objects.create(
        participant=participant,
        checkpoint=checkpoint,
        interventions=["exercise_programme"],
        horizon_days=90,
        samples=32,
        results={
            "effects": {
                "exercise_programme": effects,
                "statin": {name: {"mean": 0.0, "low": -1.0, "high": 1.0} for name in BIOMARKER_NAMES},
                "diet_change": harmful,
            }
        },
    )


def test_the_agent_cites_the_twin_s_effect_with_its_interval(tiny_cohort, twin_checkpoint):
    participant = tiny_cohort.participants.order_by("pk").first()
    run = _stored_run(participant, twin_checkpoint)
    effects = simulated_effects(participant=participant)
    assert [(e["intervention"], e["biomarker"]) for e in effects] == [
        ("exercise_programme", "systolic_bp")
    ]  # statin: no clear effect; diet: only harm
    context = participant_context(participant=participant, question="How can I lower my blood pressure with exercise?")
    assert context["simulated_effects"] == effects
    items = grounded_items(context)
    item = next(item for item in items if item["key"] == "simulated_exercise_programme")
    stored = run.results["effects"]["exercise_programme"]["systolic_bp"]
    cited = {citation["source"].rsplit(".", 1)[1]: citation["value"] for citation in item["citations"]}
    assert cited == pytest.approx(
        {key: stored[key] for key in ("mean", "low", "high")}, abs=0.051
    )  # recomputed from the stored run
    text = render(context, items)
    assert "predicted to lower your systolic blood pressure by 4.2 mmHg (2.3 to 6.1)" in text


def test_the_twin_page_shows_a_stored_simulation_and_queues_a_new_one(client, researcher, tiny_cohort, twin_checkpoint):
    from modeling.services import simulation_results

    participant = tiny_cohort.participants.order_by("pk").first()
    client.force_login(researcher)
    page = client.get(f"/modeling/twin/?participant={participant.pk}")
    assert page.status_code == 200 and b"No simulation of" in page.content
    assert client.get("/modeling/twin/?participant=x&job=1;").status_code == 200  # nonsense parameters select nothing
    training = Job.objects.create(kind="twin_train", state="running")  # a long run, on the CPU queue
    waiting = Job.objects.create(kind="twin_train", state="queued")  # and another queued before
    response = client.post(
        "/modeling/twin/simulate/",
        {"participant": participant.pk, "interventions": ["statin"], "horizon_days": 30, "samples": 8},
    )
    job = Job.objects.get(kind="simulate")
    assert response.status_code == 302 and response["Location"].endswith(f"?participant={participant.pk}&job={job.pk}")
    assert job.config["participant"] == participant.pk and job.config["checkpoint"] == twin_checkpoint.pk
    assert client.get(f"/modeling/twin/jobs/{job.pk}/status.json").json()["state"] == "queued"
    # A researcher waiting on the page never waits behind training: a tiny twin's simulation runs on the quick queue,
    # and goes ahead of anything queued there before; the page says where the job stands.
    assert job.queue == "quick" and training.queue == waiting.queue == "cpu"
    assert job.priority > waiting.priority and job.pk > waiting.pk
    status = client.get(f"/modeling/twin/jobs/{job.pk}/status.json").json()
    assert status["queue_place"] == "1st in the quick queue; starts next" and "worker_host" not in status
    assert (
        "1st in the quick queue"
        in client.get(f"/modeling/twin/?participant={participant.pk}&job={job.pk}").content.decode()
    )
    training.delete()
    waiting.delete()

    # Once the job has stored its run, the page carries the fan charts' data.
    from modeling.ml.twin.generate import Rollouts

    grid = np.array([0, 7, 14])
    rollouts = Rollouts(
        grid,
        np.random.default_rng(0).normal(size=(1, 2, 4, 3, len(BIOMARKER_NAMES))),
        np.full((1, 2, 4, 11), 0.003),
        np.zeros((1, 2, 4, 1), dtype=int),
        np.zeros((1, 2, 4, 1), dtype=int),
        [None, "statin"],
        14,
    )
    record = participant_record(participant=participant)
    SimulationRun.objects.create(
        participant=participant,
        checkpoint=twin_checkpoint,
        job=job,
        interventions=["statin"],
        horizon_days=14,
        samples=4,
        results=simulation_results(rollouts, participant_index=0, record=record),
    )
    page = client.get(f"/modeling/twin/?participant={participant.pk}&job={job.pk}")
    assert page.status_code == 200 and b'id="twin-data"' in page.content and b"data-fan-chart" in page.content
    ticked = re.findall(r'<input type="checkbox" name="interventions" value="(\w+)"[^>]*checked', page.content.decode())
    assert (
        ticked == ["statin"] and 'name="horizon_days" value="30"' in page.content.decode()
    )  # the form says what was asked
    fresh = client.get(f"/modeling/twin/?participant={participant.pk}").content.decode()
    assert not re.findall(r'name="interventions" value="\w+"[^>]*checked', fresh)  # nothing ticked for the researcher
    assert (
        page.content.decode().count("<td>0.3 %</td>") == 2 * 11
    )  # a small risk per endpoint and arm, not rounded to "0 %"


def test_while_a_twin_trains_the_page_says_so_and_cannot_simulate(client, researcher, tiny_cohort):
    job = Job.objects.create(kind="twin_train", config={}, state=Job.State.RUNNING, progress=0.42)
    client.force_login(researcher)
    page = client.get(reverse("modeling:twin")).content.decode()
    assert f"one is being trained (job #{job.pk}, running, 42 % done)" in page and 'class="primary" disabled' in page


def test_the_jobs_list_names_the_system_for_jobs_nobody_queued(client, admin_user):
    """Demo and follow-up jobs have no user: the list says "system", as the audit log does."""
    Job.objects.create(kind="twin_train", queue="cpu", config={}, queued_by=None)
    client.force_login(admin_user)
    page = client.get(reverse("modeling:job_list")).content.decode()
    assert "<td>system</td>" in page


def test_a_researcher_s_simulations_are_capped_with_a_reason_and_an_admin_s_are_not(
    client, researcher, admin_user, tiny_cohort, twin_checkpoint
):
    from modeling.services import RESEARCHER_MAX_PENDING_SIMULATIONS, RESEARCHER_MAX_SAMPLES

    participant = tiny_cohort.participants.order_by("pk").first()
    request = {"participant": participant.pk, "interventions": ["statin"], "horizon_days": 30}
    client.force_login(researcher)
    page = client.get(reverse("modeling:twin")).content.decode()
    assert (
        "Researchers: at most 64 samples, one participant per simulation and 2 simulations waiting or running at a time"
        in page
    )
    assert f'max="{RESEARCHER_MAX_SAMPLES}"' in page  # the browser's hint; the server checks again below

    page = client.post(
        reverse("modeling:twin_simulate"), {**request, "samples": RESEARCHER_MAX_SAMPLES + 1}, follow=True
    ).content.decode()
    assert (
        "Could not queue the simulation: a researcher can ask for at most 64 samples per arm (you asked for 65)" in page
    )
    assert not Job.objects.exists()

    queued = [
        client.post(reverse("modeling:twin_simulate"), {**request, "samples": RESEARCHER_MAX_SAMPLES})
        for _ in range(RESEARCHER_MAX_PENDING_SIMULATIONS)
    ]
    assert all(response.status_code == 302 and "&job=" in response["Location"] for response in queued)
    first, second = Job.objects.filter(kind="simulate").order_by("pk")
    page = client.post(reverse("modeling:twin_simulate"), {**request, "samples": 8}, follow=True).content.decode()
    assert (
        f"you already have 2 simulations waiting or running (job #{first.pk}, job #{second.pk}); a researcher can have at most 2, "
        "so queue this one when one of them has finished"
    ) in page
    assert Job.objects.count() == 2
    Job.objects.filter(pk=first.pk).update(state=Job.State.SUCCEEDED)
    assert (
        "&job=" in client.post(reverse("modeling:twin_simulate"), {**request, "samples": 8})["Location"]
    )  # a slot is free again

    client.force_login(admin_user)  # admins are not capped: more samples, more pending simulations
    for _ in range(RESEARCHER_MAX_PENDING_SIMULATIONS + 1):
        assert "&job=" in client.post(reverse("modeling:twin_simulate"), {**request, "samples": 256})["Location"]
    assert (
        Job.objects.filter(queued_by=admin_user, config__samples=256).count() == RESEARCHER_MAX_PENDING_SIMULATIONS + 1
    )
    assert f'max="{RESEARCHER_MAX_SAMPLES}"' not in client.get(reverse("modeling:twin")).content.decode()


def test_the_participant_page_leads_to_the_twin_s_simulations(client, researcher, tiny_cohort, twin_checkpoint):
    participant, other = tiny_cohort.participants.order_by("pk")[:2]
    _stored_run(participant, twin_checkpoint)
    client.force_login(researcher)
    page = client.get(f"/cohorts/participants/{participant.pk}/").content.decode()
    assert (
        "The digital twin" in page
        and f'href="/modeling/twin/?participant={participant.pk}">See the simulated futures' in page
    )
    assert "with and without exercise programme" in page
    fresh = client.get(f"/cohorts/participants/{other.pk}/").content.decode()
    assert (
        f"No simulation of {other.pseudonym} yet" in fresh
        and f'/modeling/twin/?participant={other.pk}">Simulate' in fresh
    )


def test_without_a_twin_the_participant_page_has_no_twin_section(client, researcher, tiny_cohort):
    client.force_login(researcher)
    page = client.get(f"/cohorts/participants/{tiny_cohort.participants.first().pk}/").content.decode()
    assert "The digital twin" not in page
