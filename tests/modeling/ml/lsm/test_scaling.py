"""The scaling study: every (size, data) run is trained and scored on the same held-out material."""

import json

import pytest

from modeling.ml.lsm.model import LSMConfig, LSMForMaskedPretraining, parameter_count
from modeling.ml.lsm.scaling import ScalingSettings, scaling_study, size_overrides


def test_sizes_are_named_or_width_by_depth():
    assert size_overrides("small") == ("small", {})
    named, overrides = size_overrides("128x3")
    config = LSMConfig.named(named, **overrides)
    assert (config.dim, config.depth, config.heads, config.patch_minutes) == (128, 3, 8, 60)
    with pytest.raises(ValueError, match="multiple of 16"):
        size_overrides("40x2")
    with pytest.raises(ValueError, match="unknown size"):
        size_overrides("huge")


@pytest.mark.slow
def test_a_small_study_writes_a_table_and_a_figure(tmp_path):
    settings = ScalingSettings(sizes=("32x1", "64x1"), windows=(20, 40), steps=3, probe_participants=20)
    results = scaling_study(settings, tmp_path)
    assert [(r["size"], r["pretraining_windows"]) for r in results] == [
        ("32x1", 16),
        ("32x1", 32),
        ("64x1", 16),
        ("64x1", 32),
    ]
    assert results[0]["parameters"] == parameter_count(
        LSMForMaskedPretraining(LSMConfig.named("tiny", **size_overrides("32x1")[1]))
    )
    assert results[2]["parameters"] > results[0]["parameters"]
    assert all(result["held_out_loss"] > 0 and 0 <= result["mean_probe_auroc"] <= 1 for result in results)
    assert (tmp_path / "scaling.md").read_text().count("\n| 32x1 |") == 2
    assert json.loads((tmp_path / "scaling.json").read_text()) == results
    html = (tmp_path / "scaling.html").read_text()
    assert 'src="plotly.min.js"' in html and "held-out reconstruction loss" in html
