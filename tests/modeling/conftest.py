"""Fixtures of the modeling app's tests."""

import pytest
import torch

from modeling.models import Checkpoint


@pytest.fixture
def twin_checkpoint(tmp_path, db):
    """An untrained tiny twin with a tokenizer fitted on simulated timelines, registered as a checkpoint."""
    from modeling.ml.twin.data import simulated_records
    from modeling.ml.twin.model import HealthFormerConfig, HealthFormerModel
    from modeling.ml.twin.tokens import Tokenizer

    model_dir = tmp_path / "twin"
    tokenizer = Tokenizer.fit(simulated_records(participants=20, days=200, seed=9).records, bins=12)
    torch.manual_seed(0)
    HealthFormerModel(HealthFormerConfig.named("tiny", tokenizer, block_size=128)).save_pretrained(model_dir)
    tokenizer.save(model_dir / "tokenizer.json")
    return Checkpoint.objects.create(family="twin", size="tiny", path=str(model_dir))


@pytest.fixture
def deliver_again():
    """Run a job again the way the broker re-delivers it when its worker died after the run's final writes
    but before the job was marked finished: the row is still running, with a stale heartbeat."""
    from modeling.models import Job
    from modeling.tasks import run_job

    def deliver(job: Job) -> str:
        Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING, heartbeat_at=None)
        outcome = run_job.apply(kwargs={"job_id": job.pk}).get()
        job.refresh_from_db()
        return outcome

    return deliver
