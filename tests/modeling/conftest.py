"""Fixtures of the modeling app's tests."""

import pytest
import torch

from modeling.models import Checkpoint


@pytest.fixture
def twin_checkpoint(tmp_path, db):
    """An untrained tiny twin with a tokenizer fitted on simulated timelines, registered as a checkpoint."""
    from modeling.ml.healthformer.data import simulated_records
    from modeling.ml.healthformer.model import HealthFormerConfig, HealthFormerModel
    from modeling.ml.healthformer.tokens import Tokenizer

    model_dir = tmp_path / "twin"
    tokenizer = Tokenizer.fit(simulated_records(participants=20, days=200, seed=9).records, bins=12)
    torch.manual_seed(0)
    HealthFormerModel(HealthFormerConfig.named("tiny", tokenizer, block_size=128)).save_pretrained(model_dir)
    tokenizer.save(model_dir / "tokenizer.json")
    return Checkpoint.objects.create(family="twin", size="tiny", path=str(model_dir))
