"""Job kinds run through the real task code (in-process here; real workers are in test_jobs.py)."""

import json
from pathlib import Path

import pytest

from modeling.jobs import JobError, job_queue
from modeling.ml.data.labels import TASKS
from modeling.models import Checkpoint, Job
from modeling.tasks import run_job

pytestmark = pytest.mark.django_db


EVALUATE = {"participants": 12, "days": 2, "few_shot": "2", "pca": False, "supervised_steps": 1, "generative": True, "bootstrap": 10, "seed": 5}


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"


@pytest.mark.slow
def test_lsm_pretrain_job_trains_saves_and_registers_a_checkpoint():
    from modeling.ml.lsm.model import LSMForMaskedPretraining

    job = job_queue(kind_name="lsm_pretrain", config={"size": "tiny", "participants": 12, "days": 2, "steps": 20, "batch_size": 4,
                                                     "learning_rate": 0.001, "mask_strategy": "aim", "checkpoint_every": 10, "seed": 0})
    assert job.queue == "cpu"
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    job.refresh_from_db()
    checkpoint = Checkpoint.objects.get(job=job)
    assert checkpoint.family == "lsm" and checkpoint.metrics["validation_loss"] > 0
    assert LSMForMaskedPretraining.from_pretrained(checkpoint.path).config.size == "tiny"
    assert job.curve[-1]["step"] == 20 and job.result["held_out_participants"] == 2


@pytest.mark.slow
def test_lsm_evaluate_job_reports_tables_on_its_page_and_on_the_checkpoint(tmp_path, client, admin_user):
    from modeling.ml.lsm.model import LSMConfig, LSMForMaskedPretraining
    from modeling.ml.lsm.pretrain import channel_statistics, simulated_windows

    model_dir = tmp_path / "model"
    LSMForMaskedPretraining(LSMConfig.named("tiny")).save_pretrained(model_dir)
    mean, std = channel_statistics(*simulated_windows(participants=4, days=2, seed=0)[:2])
    (model_dir / "normalization.json").write_text(json.dumps({"mean": mean.tolist(), "std": std.tolist(), "clip": 5.0}))
    checkpoint = Checkpoint.objects.create(family="lsm", size="tiny", path=str(model_dir))
    with pytest.raises(JobError, match="few_shot"):
        job_queue(kind_name="lsm_evaluate", config={**EVALUATE, "checkpoint": checkpoint.pk, "few_shot": "one, five"})
    job = job_queue(kind_name="lsm_evaluate", config={**EVALUATE, "checkpoint": checkpoint.pk})
    assert job.queue == "cpu" and job.config["few_shot"] == [2]
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    job.refresh_from_db()
    titles = [table["title"] for table in job.result["tables"]]
    assert titles == ["Downstream: All training participants", "Downstream: 2 labelled participants per class",
                      "Generative: Hidden minutes", "Generative: Daily metrics recomputed from the filled-in day"]
    assert len(job.result["tables"][0]["rows"]) == len(TASKS)
    assert job.result["tables"][0]["columns"][3:] == ["pre-trained probe", "hand-crafted", "supervised from scratch"]
    assert (Path(job.result["report_dir"]) / "downstream.md").read_text().count("\n| ") > len(TASKS)
    checkpoint.refresh_from_db()
    assert checkpoint.metrics["evaluation"]["job"] == job.pk
    client.force_login(admin_user)
    page = client.get(f"/modeling/jobs/{job.pk}/").content.decode()
    assert "<th scope=\"col\">supervised from scratch</th>" in page and "linear interpolation" in page and "hypertension" in page


def test_generate_recommendations_job(tiny_cohort):
    from healthagent.models import AgentVariant, Recommendation

    grounded = AgentVariant.objects.get(name="grounded agent")
    job = job_queue(kind_name="generate_recommendations", config={"cohort": tiny_cohort.pk, "variants": [grounded.pk]})
    assert job.queue == "cpu"
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "succeeded"
    job.refresh_from_db()
    assert job.result == {"succeeded": 3, "failed": 0, "blocked": 0, "kept": 0} and job.progress == 1.0
    assert Recommendation.objects.filter(variant=grounded).count() == 3


def test_a_finished_job_is_never_run_again():
    job = Job.objects.create(kind="demo_training", config={}, state="succeeded")
    assert run_job.apply(kwargs={"job_id": job.pk}).get() == "skipped"
