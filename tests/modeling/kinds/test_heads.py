"""The head_search job: a classroom with a garbled language model, heads saved and registered, the test split
scored once per task, and the cohort's predictions using a head only where it beat the probe on validation."""

import json

import pytest
import torch

from modeling.jobs import JobError, job_queue
from modeling.models import Checkpoint, Job
from modeling.tasks import run_job
from tests.healthagent.agent.test_backends import FakeChatServer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"


@pytest.fixture
def lsm_checkpoint(tmp_path):
    """An untrained tiny foundation model saved as a checkpoint, with the normalization of simulated days."""
    from modeling.ml.lsm.model import LSMConfig, LSMForMaskedPretraining
    from modeling.ml.lsm.pretrain import channel_statistics, simulated_windows

    model_dir = tmp_path / "model"
    torch.manual_seed(0)
    LSMForMaskedPretraining(LSMConfig.named("tiny")).save_pretrained(model_dir)
    mean, std = channel_statistics(*simulated_windows(participants=4, days=2, seed=0)[:2])
    (model_dir / "normalization.json").write_text(json.dumps({"mean": mean.tolist(), "std": std.tolist(), "clip": 5.0}))
    return Checkpoint.objects.create(family="lsm", size="tiny", path=str(model_dir))


@pytest.fixture
def garbled_server():
    server = FakeChatServer()
    yield server
    server.close()


def search_config(checkpoint, **overrides):
    return {
        "checkpoint": checkpoint.pk,
        "tasks": ["hypertension", "systolic_bp"],
        "proposers": ["random", "tpe"],
        "budget": 2,
        "participants": 30,
        "days": 1,
        "replicates": 2,
        "seed": 7,
        **overrides,
    }


def test_the_language_model_proposer_needs_a_variant(lsm_checkpoint):
    with pytest.raises(JobError, match="agent_variant"):
        job_queue(kind_name="head_search", config=search_config(lsm_checkpoint, proposers=["random", "llm"]))


@pytest.mark.slow
def test_head_search_job_survives_a_garbled_model_registers_heads_and_scores_test_once(
    lsm_checkpoint, garbled_server, monkeypatch
):
    from healthagent.models import AgentVariant
    from modeling.ml.heads import selection
    from modeling.ml.heads.ensemble import load_ensemble

    garbled_server.script = [
        ("ok", "I would try a transformer!"),
        ("ok", '{"head": {"type": "mlp", "depth": 42}}'),
        ("status", 400),
    ] * 4
    variant = AgentVariant.objects.create(
        name="garbled model",
        backend="openai_http",
        config={"base_url": garbled_server.url, "model": "m", "retries": 0, "timeout_s": 5},
    )
    test_scorings = []
    real_score = selection.score
    monkeypatch.setattr(
        selection,
        "score",
        lambda kind, truth, predicted, **kwargs: (
            test_scorings.append(len(truth)) or real_score(kind, truth, predicted, **kwargs)
        ),
    )
    job = job_queue(
        kind_name="head_search",
        config=search_config(lsm_checkpoint, proposers=["random", "llm"], agent_variant=variant.pk),
    )
    assert job.queue == "cpu"
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    job.refresh_from_db()
    assert test_scorings == [6, 6]  # each task's test split (20 % of 30), scored once
    searches = {search["task"]: search for search in job.result["searches"]}
    for search in searches.values():
        assert search["trainings"] == 2 and search["stopped"] == "budget"
        language_model = next(row for row in search["proposers"] if row["proposer"].startswith("llm"))
        assert language_model["invalid"] == language_model["proposals"] >= 1 and language_model["trainings"] == 0
    reasons = " | ".join(
        entry["reason"] for search in searches.values() for entry in search["entries"] if entry["status"] == "invalid"
    )
    assert (
        "no JSON object" in reasons and "depth" in reasons
    )  # prose, then an out-of-bounds spec: rejected with their reasons
    heads = Checkpoint.objects.filter(family="lsm_head", job=job)
    assert sorted(head.metrics["task"] for head in heads) == ["hypertension", "systolic_bp"]
    for head in heads:
        ensemble = load_ensemble(head.path)
        assert len(ensemble.members) == 2 and head.metrics["base_checkpoint"] == lsm_checkpoint.pk
        assert head.metrics["beats_probe"] == searches[head.metrics["task"]]["uses_head"]
    titles = [table["title"] for table in job.result["tables"]]
    assert titles == ["Best head vs linear probe", "Proposers: hypertension", "Proposers: systolic_bp"]


@pytest.mark.slow
def test_cohort_predictions_use_a_head_only_where_it_beat_the_probe_on_validation(
    lsm_checkpoint, tiny_cohort, deliver_again
):
    from modeling.models import Prediction

    search = job_queue(kind_name="head_search", config=search_config(lsm_checkpoint, predict_cohort=tiny_cohort.pk))
    assert run_job.apply(kwargs={"job_id": search.pk}).get() == "succeeded"
    search.refresh_from_db()
    better = Checkpoint.objects.get(pk=search.result["heads"]["hypertension"])
    worse = Checkpoint.objects.get(pk=search.result["heads"]["systolic_bp"])
    # The rule, not this untrained model's luck: one head beat its probe on validation, the other did not.
    Checkpoint.objects.filter(pk=better.pk).update(metrics={**better.metrics, "beats_probe": True})
    Checkpoint.objects.filter(pk=worse.pk).update(metrics={**worse.metrics, "beats_probe": False})
    chained = Job.objects.get(pk=search.result["predictions_job"])
    assert chained.kind == "lsm_predict" and chained.config["use_heads"] is True
    assert (
        deliver_again(search) == "succeeded"
    )  # its worker died before marking it finished: the same heads, the same follow-up
    assert sorted(Checkpoint.objects.filter(job=search, family="lsm_head").values_list("pk", flat=True)) == sorted(
        [better.pk, worse.pk]
    )
    assert list(Job.objects.filter(kind="lsm_predict")) == [chained] and search.result["predictions_job"] == chained.pk
    Checkpoint.objects.filter(pk=better.pk).update(
        metrics={**better.metrics, "beats_probe": True}
    )  # the search wrote its metrics again
    Checkpoint.objects.filter(pk=worse.pk).update(metrics={**worse.metrics, "beats_probe": False})
    predict = job_queue(
        kind_name="lsm_predict",
        config={**chained.config, "reference_participants": 30, "reference_days": 2, "replicates": 3},
    )
    assert run_job.apply(kwargs={"job_id": predict.pk}).get() == "succeeded"
    hypertension = Prediction.objects.filter(checkpoint=lsm_checkpoint, task="hypertension")
    assert hypertension.count() == tiny_cohort.participants.count()
    for prediction in hypertension:
        assert prediction.details["quality"]["head_checkpoint"] == better.pk
        assert (
            0 <= prediction.low <= prediction.estimate <= prediction.high <= 1
            and prediction.label in prediction.details["probabilities"]
        )
    assert not any(
        "head_checkpoint" in p.details["quality"]
        for p in Prediction.objects.filter(checkpoint=lsm_checkpoint, task="systolic_bp")
    )
    probes_only = job_queue(kind_name="lsm_predict", config={**predict.config, "use_heads": False})
    assert run_job.apply(kwargs={"job_id": probes_only.pk}).get() == "succeeded"
    assert not any(
        "head_checkpoint" in p.details["quality"] for p in Prediction.objects.filter(checkpoint=lsm_checkpoint)
    )


def test_pretraining_can_chain_a_head_search_that_queues_the_cohort_predictions(lsm_checkpoint, tiny_cohort):
    from modeling.jobs import kind_config

    config = kind_config("head_search", checkpoint=lsm_checkpoint.pk, predict_cohort=tiny_cohort.pk, seed=3000)
    job = job_queue(kind_name="head_search", config=config)
    assert (
        job.config["proposers"] == ["random", "evolution", "tpe"]
        and job.config["budget"] == 12
        and job.config["predict_cohort"] == tiny_cohort.pk
    )


@pytest.mark.django_db
def test_a_head_that_beat_an_earlier_probe_is_not_used_until_searched_again():
    """A head's "beats the probe" was measured against the probe of its search; once predictions use another probe
    (issue 24: pooled per channel, cross-validated), only a head searched against that one replaces it."""
    from modeling.ml.lsm.evaluate import PROBE
    from modeling.selectors import usable_heads

    base = Checkpoint.objects.create(family="lsm", size="tiny", path="/nowhere")

    def head(task, probe):
        metrics = {"base_checkpoint": base.pk, "task": task, "beats_probe": True}
        return Checkpoint.objects.create(
            family="lsm_head", size="head", path="/nowhere", metrics=metrics | ({"probe": probe} if probe else {})
        )

    head("hypertension", None)  # searched before heads recorded their probe
    head("obesity", "last layer grand mean, C = 1")
    current = head("diabetes", PROBE)
    assert usable_heads(base) == {"diabetes": current}
