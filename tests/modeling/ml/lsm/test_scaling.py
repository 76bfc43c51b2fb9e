"""The scaling study: every (size, data) run is trained and scored on the same held-out material."""

import json
from pathlib import Path

import pytest
import torch

from modeling.ml.lsm.model import LSMConfig, LSMForMaskedPretraining, parameter_count, standardize
from modeling.ml.lsm.pretrain import (
    PretrainSettings,
    channel_statistics,
    load_pretrained,
    pretrain_with,
    simulated_windows,
)
from modeling.ml.lsm.scaling import ScalingSettings, held_out_loss, run_steps, scaling_study, size_overrides


def test_sizes_are_named_or_width_by_depth():
    assert size_overrides("small") == ("small", {})
    named, overrides = size_overrides("128x3")
    config = LSMConfig.named(named, **overrides)
    assert (config.dim, config.depth, config.heads, config.patch_minutes) == (128, 3, 8, 60)
    with pytest.raises(ValueError, match="multiple of 16"):
        size_overrides("40x2")
    with pytest.raises(ValueError, match="unknown size"):
        size_overrides("huge")


def test_steps_grow_with_the_data_at_a_fixed_number_of_passes():
    fixed = ScalingSettings(steps=4000, batch_size=32)
    assert [run_steps(fixed, windows) for windows in (160, 640, 2560)] == [4000, 4000, 4000]
    passes = ScalingSettings(steps=4000, passes=200, batch_size=32)
    assert [run_steps(passes, windows) for windows in (160, 640, 2560)] == [1000, 4000, 16000]
    assert run_steps(ScalingSettings(passes=0.01, batch_size=32), 20) == 1


@pytest.mark.slow
def test_a_small_study_writes_a_table_and_a_figure(tmp_path):
    settings = ScalingSettings(
        sizes=["32x1", "64x1"],
        windows=[20, 40],
        passes=4.0,
        batch_size=8,
        held_out_participants=5,
        probe_participants=60,
        device="cpu",
    )
    results = scaling_study(settings, tmp_path)
    assert [(r["size"], r["pretraining_windows"]) for r in results] == [
        ("32x1", 16),
        ("32x1", 32),
        ("64x1", 16),
        ("64x1", 32),
    ]
    config = LSMConfig.named("tiny", **size_overrides("32x1")[1], patch_minutes=10, patch_channels=9)
    assert [r["steps"] for r in results] == [10, 20, 10, 20]
    assert results[0]["parameters"] == parameter_count(LSMForMaskedPretraining(config))
    assert results[2]["parameters"] > results[0]["parameters"]
    assert all(result["held_out_loss"] > 0 and 0 <= result["mean_probe_auroc"] <= 1 for result in results)
    assert all(
        0 <= result["tasks_at_least_handcrafted"] <= 32 and result["pretraining_cpu_seconds"] > 0 for result in results
    )
    assert json.loads((tmp_path / "runs" / "32x1-20" / "model" / "config.json").read_text())["patch_minutes"] == 10
    assert (tmp_path / "scaling.md").read_text().count("\n| 32x1 |") == 2
    assert json.loads((tmp_path / "scaling.json").read_text()) == results
    html = (tmp_path / "scaling.html").read_text()
    assert 'src="plotly.min.js"' in html and "held-out reconstruction loss" in html


@pytest.mark.slow
def test_the_held_out_loss_is_in_the_held_out_days_units_whatever_the_model_s_normalization(tmp_path):
    """With the model's SDs equal to the held-out days' own, the loss is the model's own masked loss; with SDs twice
    as large (errors read in units twice as wide), four times it."""
    settings = PretrainSettings(participants=10, days=2, steps=2, batch_size=4, patch_minutes=10, patch_channels=9)
    model_dir = Path(pretrain_with(settings, output_dir=tmp_path / "run", device="cpu")["model_dir"])
    held = simulated_windows(participants=6, days=2, seed=77)
    _, common = channel_statistics(held.values, held.observed)
    normalization = json.loads((model_dir / "normalization.json").read_text())
    losses = []
    for factor in (1.0, 2.0):
        normalization["std"] = (common * factor).tolist()
        (model_dir / "normalization.json").write_text(json.dumps(normalization))
        losses.append(held_out_loss(model_dir, held.values, held.observed, "cpu", seed=5))
    model, mean, std = load_pretrained(model_dir)
    observed = torch.tensor(held.observed)
    with torch.no_grad():
        own = model(
            standardize(torch.tensor(held.values), observed, mean, std),
            observed,
            generator=torch.Generator().manual_seed(5),
        ).loss
    assert losses[1] == pytest.approx(float(own) * 4, rel=1e-4)
    assert losses[0] != pytest.approx(losses[1])
