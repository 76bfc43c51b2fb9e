"""Job kinds run through the real task code (in-process here; real workers are in test_jobs.py)."""

import json
from pathlib import Path

import pytest
import torch

from modeling.jobs import JobError, job_queue
from modeling.ml.data.labels import TASKS
from modeling.models import Checkpoint, Job
from modeling.tasks import run_job

pytestmark = pytest.mark.django_db


EVALUATE = {
    "participants": 12,
    "days": 2,
    "few_shot": "2",
    "pca": False,
    "supervised_steps": 1,
    "generative": True,
    "bootstrap": 10,
    "seed": 5,
}


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"


@pytest.mark.slow
def test_lsm_pretrain_job_trains_saves_and_registers_a_checkpoint_then_queues_the_cohort_predictions(
    tiny_cohort, deliver_again
):
    from modeling.ml.lsm.model import LSMForMaskedPretraining

    job = job_queue(
        kind_name="lsm_pretrain",
        config={
            "size": "tiny",
            "participants": 12,
            "days": 2,
            "steps": 20,
            "batch_size": 4,
            "learning_rate": 0.001,
            "mask_strategy": "aim",
            "checkpoint_every": 10,
            "seed": 0,
            "predict_cohort": tiny_cohort.pk,
        },
    )
    assert job.queue == "cpu"
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    job.refresh_from_db()
    checkpoint = Checkpoint.objects.get(job=job)
    assert checkpoint.family == "lsm" and checkpoint.metrics["validation_loss"] > 0
    assert LSMForMaskedPretraining.from_pretrained(checkpoint.path).config.size == "tiny"
    assert job.curve[-1]["step"] == 20 and job.result["held_out_participants"] == 2
    follow_up = Job.objects.get(pk=job.result["predictions_job"])
    assert (
        follow_up.kind == "lsm_predict"
        and follow_up.config["checkpoint"] == checkpoint.pk
        and follow_up.config["cohort"] == tiny_cohort.pk
    )
    assert follow_up.parent == job

    # Delivered again (its worker died before marking it finished): it resumes at its last step and writes nothing twice.
    assert deliver_again(job) == "succeeded"
    assert job.attempts == 2 and job.result["resumed_from_step"] == 20
    assert Checkpoint.objects.get(job=job).pk == checkpoint.pk
    assert list(Job.objects.filter(kind="lsm_predict")) == [follow_up] and job.result["predictions_job"] == follow_up.pk


@pytest.mark.slow
def test_lsm_evaluate_job_reports_tables_on_its_page_and_on_the_checkpoint(client, admin_user, lsm_checkpoint):
    checkpoint = lsm_checkpoint
    with pytest.raises(JobError, match="few_shot"):
        job_queue(kind_name="lsm_evaluate", config={**EVALUATE, "checkpoint": checkpoint.pk, "few_shot": "one, five"})
    job = job_queue(kind_name="lsm_evaluate", config={**EVALUATE, "checkpoint": checkpoint.pk})
    assert job.queue == "cpu" and job.config["few_shot"] == [2]
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    job.refresh_from_db()
    titles = [table["title"] for table in job.result["tables"]]
    assert titles == [
        "Downstream: All training participants",
        "Downstream: 2 labelled participants per class",
        "Generative: Hidden minutes",
        "Generative: Daily metrics recomputed from the filled-in day",
    ]
    assert len(job.result["tables"][0]["rows"]) == len(TASKS)
    assert job.result["tables"][0]["columns"][3:] == ["pre-trained probe", "hand-crafted", "supervised from scratch"]
    assert (Path(job.result["report_dir"]) / "downstream.md").read_text().count("\n| ") > len(TASKS)
    checkpoint.refresh_from_db()
    assert checkpoint.metrics["evaluation"]["job"] == job.pk
    client.force_login(admin_user)
    page = client.get(f"/modeling/jobs/{job.pk}/").content.decode()
    assert (
        '<th scope="col">supervised from scratch</th>' in page
        and "linear interpolation" in page
        and "hypertension" in page
    )

    # The generative tasks alone: no downstream table, no probe, the summary is the generative part's.
    alone = job_queue(
        kind_name="lsm_evaluate",
        config={**EVALUATE, "checkpoint": checkpoint.pk, "generative_only": True, "generative_participants": 10},
    )
    assert run_job.apply(kwargs={"job_id": alone.pk}).get() == "succeeded"
    alone.refresh_from_db()
    assert [table["title"] for table in alone.result["tables"]] == titles[2:]
    assert sorted(path.name for path in Path(alone.result["report_dir"]).iterdir()) == [
        "generative.json",
        "generative.md",
    ]
    assert "10 new simulated participants" in (Path(alone.result["report_dir"]) / "generative.md").read_text()
    checkpoint.refresh_from_db()  # the full evaluation's summary stays the checkpoint's; the generative one beside it
    assert checkpoint.metrics["evaluation"]["job"] == job.pk
    assert checkpoint.metrics["generative_evaluation"]["job"] == alone.pk
    with pytest.raises(JobError, match="generative"):
        job_queue(
            kind_name="lsm_evaluate",
            config={**EVALUATE, "checkpoint": checkpoint.pk, "generative_only": True, "generative": False},
        )


@pytest.fixture
def lsm_checkpoint(tmp_path):
    """An untrained tiny foundation model saved as a checkpoint, with the normalization of simulated days."""
    from modeling.ml.lsm.model import LSMConfig, LSMForMaskedPretraining
    from modeling.ml.lsm.pretrain import channel_statistics, simulated_windows

    model_dir = tmp_path / "model"
    torch.manual_seed(0)  # the same weights every run
    LSMForMaskedPretraining(LSMConfig.named("tiny")).save_pretrained(model_dir)
    mean, std = channel_statistics(*simulated_windows(participants=4, days=2, seed=0)[:2])
    (model_dir / "normalization.json").write_text(json.dumps({"mean": mean.tolist(), "std": std.tolist(), "clip": 5.0}))
    return Checkpoint.objects.create(family="lsm", size="tiny", path=str(model_dir))


@pytest.mark.slow
def test_lsm_predict_job_stores_every_participants_estimates_with_intervals_and_replaces_them_whole(
    tiny_cohort, lsm_checkpoint
):
    from modeling.models import Prediction

    config = {
        "checkpoint": lsm_checkpoint.pk,
        "cohort": tiny_cohort.pk,
        "reference_participants": 30,
        "reference_days": 2,
        "replicates": 3,
        "seed": 1,
    }
    job = job_queue(kind_name="lsm_predict", config=config)
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    job.refresh_from_db()
    predictions = Prediction.objects.filter(checkpoint=lsm_checkpoint)
    participants = tiny_cohort.participants.count()
    assert job.result["participants"] == participants and predictions.count() == job.result["predictions"]
    assert predictions.values("task").distinct().count() * participants == predictions.count() >= 20 * participants
    for prediction in predictions:
        assert prediction.low <= prediction.estimate <= prediction.high
        if prediction.kind != "regression":
            assert (
                prediction.low >= 0 and prediction.high <= 1 and prediction.label in prediction.details["probabilities"]
            )
        assert "quality" in prediction.details and prediction.job_id == job.pk
    assert job.result["tables"][0]["rows"][0][0] == "hypertension"
    again = job_queue(kind_name="lsm_predict", config=config)
    assert run_job.apply(kwargs={"job_id": again.pk}).get() == "succeeded"
    assert (
        set(predictions.values_list("job_id", flat=True)) == {again.pk}
        and predictions.count() == job.result["predictions"]
    )


def test_the_agent_sees_only_the_latest_models_accurate_non_demographic_estimates(tiny_cohort, lsm_checkpoint):
    from healthagent.agent.context import participant_context
    from healthagent.agent.prompt import context_as_text
    from modeling.models import Prediction

    participant = tiny_cohort.participants.order_by("pk").first()
    older = Checkpoint.objects.create(family="lsm", size="tiny", path="/nowhere")
    Checkpoint.objects.filter(pk=older.pk).update(created_at=lsm_checkpoint.created_at.replace(year=2000))

    def store(checkpoint, task, kind, quality, family="cardiovascular", **values):
        Prediction.objects.create(
            participant=participant,
            checkpoint=checkpoint,
            task=task,
            kind=kind,
            details={"family": family, "description": task.replace("_", " "), "unit": "mmHg", "quality": quality},
            **values,
        )

    store(lsm_checkpoint, "hypertension", "binary", {"auroc": 0.81}, label="yes", estimate=0.734, low=0.61, high=0.86)
    store(
        lsm_checkpoint,
        "systolic_bp",
        "regression",
        {"mae": 7.0, "pearson_r": 0.62},
        estimate=131.26,
        low=119.0,
        high=143.5,
    )
    store(
        lsm_checkpoint, "high_ldl", "binary", {"auroc": 0.55}, label="no", estimate=0.6, low=0.5, high=0.7
    )  # too weak a probe
    store(
        lsm_checkpoint,
        "sex",
        "binary",
        {"auroc": 0.99},
        family="demographics",
        label="female",
        estimate=0.9,
        low=0.8,
        high=0.95,
    )
    store(older, "diabetes", "binary", {"auroc": 0.9}, label="yes", estimate=0.9, low=0.8, high=0.95)  # an older model
    predictions = participant_context(participant=participant)["predictions"]
    assert [(p["task"], p["estimate"], p["interval_90"]) for p in predictions] == [
        ("hypertension", 0.73, [0.61, 0.86]),
        ("systolic_bp", 131.3, [119.0, 143.5]),
    ]
    assert predictions[0]["model"] == f"lsm-tiny #{lsm_checkpoint.pk}" and predictions[1]["held_out_quality"] == {
        "pearson_r": 0.62
    }
    text = context_as_text(participant_context(participant=participant))
    assert (
        "wearable-model estimate, not a diagnosis: hypertension: yes, probability 0.73 (90 % interval 0.61 to 0.86)"
        in text
    )
    assert "systolic bp: 131.3 mmHg (90 % interval 119.0 to 143.5)" in text


def test_generate_recommendations_job(tiny_cohort, deliver_again):
    from healthagent.models import AgentVariant, Recommendation

    grounded = AgentVariant.objects.get(name="grounded agent")
    job = job_queue(kind_name="generate_recommendations", config={"cohort": tiny_cohort.pk, "variants": [grounded.pk]})
    assert job.queue == "cpu"
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    job.refresh_from_db()
    assert job.result == {"succeeded": 3, "failed": 0, "blocked": 0, "kept": 0} and job.progress == 1.0
    assert Recommendation.objects.filter(variant=grounded).count() == 3
    assert deliver_again(job) == "succeeded"
    assert job.result["kept"] == 3 and Recommendation.objects.filter(variant=grounded).count() == 3


def test_a_demo_training_delivered_again_registers_its_model_once(deliver_again):
    job = job_queue(
        kind_name="demo_training",
        config={
            "task": "hypertension",
            "participants": 20,
            "days": 1,
            "steps": 10,
            "checkpoint_every": 5,
            "learning_rate": 0.003,
            "step_delay_s": 0.0,
            "seed": 1,
        },
    )
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    first = Checkpoint.objects.get(job=job)
    assert deliver_again(job) == "succeeded"
    assert job.attempts == 2 and list(Checkpoint.objects.filter(job=job)) == [first]


def test_a_finished_job_is_never_run_again():
    job = Job.objects.create(kind="demo_training", config={}, state="succeeded")
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "skipped"


def test_a_recommendations_job_with_failed_answers_lists_them_and_its_retry_generates_only_those(
    tiny_cohort, monkeypatch, client, admin_user
):
    from healthagent.agent import generate
    from healthagent.agent.backends.base import BackendAnswer
    from healthagent.models import AgentVariant, Recommendation
    from modeling.jobs import job_retry

    participants = list(tiny_cohort.participants.order_by("pk"))
    broken = {participants[1].pk}
    answered = []

    class HalfBrokenBackend:  # degenerate output for the participants in ``broken``
        def generate(self, context, *, timeout_s):
            pseudonym = context["participant"]["pseudonym"]
            answered.append(pseudonym)
            if any(participant.pseudonym == pseudonym and participant.pk in broken for participant in participants):
                return BackendAnswer(text=" ".join(["sleep"] * 60), metadata={})
            return BackendAnswer(
                text="Walk for thirty minutes on most days and keep a regular bedtime this week.", metadata={}
            )

    monkeypatch.setattr(generate, "make_backend", lambda backend, config: HalfBrokenBackend())
    variant = AgentVariant.objects.create(name="scripted model", backend="openai_http", config={})
    job = job_queue(
        kind_name="generate_recommendations",
        config={"cohort": tiny_cohort.pk, "variants": [variant.pk], "regenerate": True},
    )
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded with failures"
    job.refresh_from_db()
    assert (
        job.state == "succeeded_with_failures" and job.finished and job.get_state_display() == "Succeeded with failures"
    )
    assert job.failures == [
        {
            "item": f"participant {participants[1].pseudonym} / scripted model",
            "reason": "Failed: the answer repeats itself (degenerate output)",
        }
    ]
    client.force_login(admin_user)
    page = client.get(f"/modeling/jobs/{job.pk}/").content.decode()
    assert "Succeeded with failures" in page and f"participant {participants[1].pseudonym} / scripted model" in page
    assert (
        "the answer repeats itself (degenerate output)" in page and f'action="/modeling/jobs/{job.pk}/retry/"' in page
    )
    assert "Succeeded with failures" in client.get("/modeling/jobs/?state=succeeded_with_failures").content.decode()

    broken.clear()
    answered.clear()
    retry = job_retry(job=job)
    assert retry.config["regenerate"] is False  # the answers that succeeded are kept
    assert run_job.apply(kwargs={"job_id": retry.pk}).get() == "succeeded"
    retry.refresh_from_db()
    assert answered == [participants[1].pseudonym] and retry.result == {
        "succeeded": 1,
        "failed": 0,
        "blocked": 0,
        "kept": 2,
    }
    assert retry.failures == [] and Recommendation.objects.filter(variant=variant, status="succeeded").count() == 3


def test_a_recommendations_job_limited_to_some_participants_writes_only_theirs(tiny_cohort, monkeypatch):
    from healthagent.agent import generate
    from healthagent.agent.backends.base import BackendAnswer
    from healthagent.models import AgentVariant, Cohort, Participant, Recommendation
    from modeling.jobs import JobError

    class Answers:
        def generate(self, context, *, timeout_s):
            return BackendAnswer(
                text="Walk for thirty minutes on most days and keep a regular bedtime this week.", metadata={}
            )

    monkeypatch.setattr(generate, "make_backend", lambda backend, config: Answers())
    variant = AgentVariant.objects.create(name="scripted model", backend="openai_http", config={})
    chosen = list(tiny_cohort.participants.order_by("pk").values_list("pk", flat=True))[:2]
    job = job_queue(
        kind_name="generate_recommendations",
        config={"cohort": tiny_cohort.pk, "variants": [variant.pk], "participants": chosen},
    )
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    assert sorted(Recommendation.objects.filter(variant=variant).values_list("participant_id", flat=True)) == chosen

    stranger = Participant.objects.create(
        cohort=Cohort.objects.create(name="Another", source="synthetic"), pseudonym="P-other"
    )
    with pytest.raises(JobError, match="every participant must belong to the cohort"):
        job_queue(
            kind_name="generate_recommendations",
            config={"cohort": tiny_cohort.pk, "variants": [variant.pk], "participants": [stranger.pk]},
        )


def test_the_jobs_list_tells_generation_jobs_apart(client, admin_user, tiny_cohort):
    from healthagent.models import AgentVariant

    llm, grounded = AgentVariant.objects.get(name="LLM only"), AgentVariant.objects.get(name="grounded agent")
    chosen = list(tiny_cohort.participants.values_list("pk", flat=True))[:2]
    job_queue(
        kind_name="generate_recommendations",
        config={"cohort": tiny_cohort.pk, "variants": [llm.pk], "participants": chosen},
    )
    job_queue(
        kind_name="generate_recommendations",
        config={"cohort": tiny_cohort.pk, "variants": [grounded.pk], "regenerate": True},
    )
    client.force_login(admin_user)
    listing = client.get("/modeling/jobs/").content.decode()
    assert "LLM only · 2 participants" in listing and "grounded agent · the whole cohort, answers replaced" in listing


def test_a_job_page_names_what_its_config_refers_to(client, admin_user, tiny_cohort):
    from healthagent.models import AgentVariant

    variants = list(AgentVariant.objects.filter(name__in=["grounded agent", "LLM only"]).order_by("name"))
    participants = list(tiny_cohort.participants.order_by("pk"))
    job = Job.objects.create(
        kind="generate_recommendations",
        config={
            "cohort": tiny_cohort.pk,
            "variants": [variant.pk for variant in variants],
            "participants": [participants[0].pk, 987654],
            "regenerate": False,
        },
    )
    client.force_login(admin_user)
    page = client.get(f"/modeling/jobs/{job.pk}/").content.decode()
    assert f'<th scope="row">Cohort</th><td>{tiny_cohort.name}</td>' in page
    assert '<th scope="row">Variants</th><td>LLM only, grounded agent</td>' in page
    assert f'<th scope="row">Participants</th><td>{participants[0].pseudonym}, #987654 (deleted)</td>' in page


def test_a_finished_job_that_reported_no_metric_shows_no_empty_chart(client, admin_user):
    client.force_login(admin_user)
    quiet = Job.objects.create(kind="simulate", config={}, state=Job.State.SUCCEEDED, curve=[])
    running = Job.objects.create(kind="simulate", config={}, state=Job.State.RUNNING, curve=[])
    assert "Every metric the run reported" not in client.get(f"/modeling/jobs/{quiet.pk}/").content.decode()
    assert "Every metric the run reported" in client.get(f"/modeling/jobs/{running.pk}/").content.decode()
