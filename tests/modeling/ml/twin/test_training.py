"""A tiny training run: the held-out loss (participants never trained on) falls; the model reloads."""

import json

import pytest
import torch

from modeling.ml.train import TrainConfig
from modeling.ml.twin.training import load_twin, train_twin

pytestmark = pytest.mark.slow


def test_a_tiny_run_lowers_the_held_out_loss_and_saves_a_loadable_twin(tmp_path):
    config = TrainConfig(steps=60, batch_size=8, learning_rate=3e-3, warmup_steps=5, checkpoint_every=100, log_every=20)
    result = train_twin(
        size="tiny",
        participants=40,
        days=365,
        seed=1,
        train_config=config,
        output_dir=tmp_path,
        device="cpu",
        block_size=128,
        bins=12,
    )
    assert result["held_out_participants"] == 8
    assert result["held_out_loss"]["loss"] < result["held_out_loss_before"]["loss"] - 1.0
    model, tokenizer = load_twin(tmp_path / "model")
    assert model.config.vocab_size == tokenizer.vocab_size
    assert json.loads((tmp_path / "model" / "training.json").read_text())["seed"] == 1


def test_training_records_withhold_smoking_for_a_share_and_leave_others_unchanged():
    from modeling.ml.twin.data import simulated_records

    plain = simulated_records(participants=60, days=120, seed=3)
    withheld = simulated_records(participants=60, days=120, seed=3, unknown_smoking_probability=0.5)
    unknown = [i for i, record in enumerate(withheld.records) if record.smoker is None]
    assert 10 < len(unknown) < 50 and all(record.smoker is not None for record in plain.records)
    assert all(
        a.measurements == b.measurements and a.events == b.events
        for a, b in zip(plain.records, withheld.records, strict=True)
    )


def test_a_continued_run_keeps_the_vocabulary_drops_the_head_and_calibration_and_refuses_an_old_cohort(tmp_path):
    from modeling.ml.twin.evaluate import TwinReportSettings, twin_report
    from modeling.ml.twin.hazard import add_hazard_head
    from modeling.ml.twin.training import training_runs, training_seeds

    config = TrainConfig(steps=3, batch_size=4, warmup_steps=1, checkpoint_every=100, log_every=10)
    heard = []
    first = train_twin(
        size="tiny",
        participants=20,
        days=200,
        seed=4,
        train_config=config,
        output_dir=tmp_path / "a",
        bins=8,
        preparing=lambda *call: heard.append(call),
    )
    assert heard == [(0.0, "simulating participant 1 of 20")]  # a job's heartbeat before the steps (every 200th)
    first_dir = tmp_path / "a" / "model"
    add_hazard_head(first_dir, participants=30, seed=21, days=200)
    model, _ = load_twin(first_dir)
    model.config.risk_calibration = {"death": 1.5}
    model.config.save_pretrained(first_dir)
    with pytest.raises(ValueError, match="already trained on"):
        train_twin(
            size="tiny",
            participants=20,
            days=200,
            seed=4,
            train_config=config,
            output_dir=tmp_path / "b",
            continue_from=first_dir,
        )
    barely = TrainConfig(steps=3, batch_size=4, learning_rate=1e-9, warmup_steps=1, checkpoint_every=100)
    second = train_twin(
        size="small",  # not used: the continued model keeps its own size, bins and block size
        participants=30,
        days=200,
        seed=9,
        train_config=barely,  # so its weights are still the first run's, not a fresh start's
        output_dir=tmp_path / "b",
        bins=20,
        block_size=64,
        continue_from=first_dir,
    )
    second_dir = tmp_path / "b" / "model"
    assert (second_dir / "tokenizer.json").read_text() == (first_dir / "tokenizer.json").read_text()
    continued, _ = load_twin(second_dir)
    assert continued.config.risk_calibration == {} and continued.config.size == "tiny"
    # the head read the trunk's states before this run: gone, with its record, until it is fitted again
    assert continued.hazard_head is None and continued.config.hazard_endpoints == [] and not continued.config.hazard_fit
    assert continued.config.block_size == model.config.block_size
    assert second["parameters"] == first["parameters"]
    started = dict(model.named_parameters())
    assert all(torch.allclose(value, started[name], atol=1e-6) for name, value in continued.named_parameters())
    assert {name for name in started if name.startswith("hazard_head.")} == {"hazard_head.weight", "hazard_head.bias"}
    assert training_seeds(second_dir) == {4, 9}
    assert training_runs(json.loads((second_dir / "training.json").read_text())) == (
        "3 steps on 20 simulated participants, seed 4, then 3 steps on 30 simulated participants, seed 9"
    )
    for seed in (4, 9):  # neither cohort it trained on can be a report's
        with pytest.raises(ValueError, match="overlaps the model's training seed"):
            twin_report(second_dir, TwinReportSettings(seed=seed, participants=5), parts=("fidelity",))
