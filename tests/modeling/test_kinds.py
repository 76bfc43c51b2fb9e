"""Job kinds run through the real task code (in-process here; real workers are in test_jobs.py)."""

import pytest

from modeling.jobs import job_queue
from modeling.models import Checkpoint, Job
from modeling.tasks import run_job

pytestmark = pytest.mark.django_db


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
