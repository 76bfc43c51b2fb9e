"""A tiny training run: the held-out loss (participants never trained on) falls; the model reloads."""

import json

import pytest

from modeling.ml.healthformer.training import load_twin, train_twin
from modeling.ml.train import TrainConfig

pytestmark = pytest.mark.slow


def test_a_tiny_run_lowers_the_held_out_loss_and_saves_a_loadable_twin(tmp_path):
    config = TrainConfig(steps=60, batch_size=8, learning_rate=3e-3, warmup_steps=5, checkpoint_every=100, log_every=20)
    result = train_twin(size="tiny", participants=40, days=365, seed=1, train_config=config, output_dir=tmp_path, device="cpu",
                        block_size=128, bins=12)
    assert result["held_out_participants"] == 8
    assert result["held_out_loss"]["loss"] < result["held_out_loss_before"]["loss"] - 1.0
    model, tokenizer = load_twin(tmp_path / "model")
    assert model.config.vocab_size == tokenizer.vocab_size
    assert json.loads((tmp_path / "model" / "training.json").read_text())["seed"] == 1
