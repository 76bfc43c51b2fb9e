"""A tiny sensor-language training run: the contrastive loss falls and held-out retrieval beats chance."""

import json

import pytest

from modeling.ml.sensorlm.train import train_sensorlm
from modeling.ml.train import TrainConfig


@pytest.mark.slow
def test_contrastive_training_retrieves_held_out_days_better_than_chance(tmp_path):
    # 200 simulated people (40 held out by participant) x 2 days: 80 candidate days, so beating chance is not luck.
    result = train_sensorlm(
        size="tiny",
        participants=200,
        days=2,
        seed=0,
        loss="clip",
        output_dir=tmp_path,
        device="cpu",
        train_config=TrainConfig(
            steps=160, batch_size=32, learning_rate=2e-3, warmup_steps=20, log_every=10, checkpoint_every=1000
        ),
        max_text_tokens=64,
    )
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:2]) / 2  # from ln(32) = 3.47 (a random batch of 32) to about 2.8
    candidates = result["held_out_windows"]
    assert result["held_out_participants"] == 40 and candidates >= 70
    # Under chance the matching caption's mean rank fraction is 0.5 with an SD of about 0.29 / sqrt(candidates) (0.03 here).
    assert result["held_out_mean_rank_fraction"] < 0.35
    assert result["held_out_sensor_to_text_r@10"] > 2 * 10 / candidates
    assert (tmp_path / "model" / "tokenizer.json").exists() and (tmp_path / "model" / "normalization.json").exists()


def test_the_default_caption_length_keeps_the_statistics(tmp_path):
    """Captions of all three levels are ~340 tokens (digits are one token each): the default length must not cut
    the statistical sentences off, and the training record says how long the captions were."""
    from modeling.ml.sensorlm.model import SensorLMConfig

    result = train_sensorlm(
        size="tiny",
        participants=6,
        days=1,
        seed=2,
        train_config=TrainConfig(steps=1, batch_size=4),
        output_dir=tmp_path,
        loss="clip",
        device="cpu",
        vocabulary_size=300,
    )
    lengths = result["caption_tokens"]
    assert lengths["max_tokens"] == SensorLMConfig().max_text_tokens and lengths["median"] > 128
    assert lengths["truncated_fraction"] <= 0.05 and lengths["p95"] <= lengths["max_tokens"]


def test_a_tower_started_from_a_foundation_model_takes_its_architecture_and_normalization(tmp_path):
    """The committed foundation model has 10-minute x 9-channel patches, the tiny sensor tower 60 x 1 by default: starting
    from it must not be refused for a geometry the user never chose, and its weights must see the inputs they were
    trained on (its channel normalization, not one fitted afresh)."""
    from modeling.ml.lsm.pretrain import pretrain
    from modeling.ml.sensorlm.model import load_sensorlm

    lsm = pretrain(
        size="tiny",
        participants=5,
        days=1,
        seed=7,
        train_config=TrainConfig(steps=1, batch_size=2),
        output_dir=tmp_path / "lsm",
        patch_minutes=10,
        patch_channels=9,
    )
    result = train_sensorlm(
        size="tiny",
        participants=6,
        days=1,
        seed=3,
        train_config=TrainConfig(steps=1, batch_size=4),
        output_dir=tmp_path / "sensorlm",
        loss="clip",
        init_from=lsm["model_dir"],
        device="cpu",
        vocabulary_size=200,
    )
    assert result["encoder_tensors_from_lsm"] > 0
    model, _, mean, std = load_sensorlm(result["model_dir"])
    assert (model.config.patch_minutes, model.config.patch_channels) == (10, 9)
    normalization = json.loads((tmp_path / "lsm" / "model" / "normalization.json").read_text())
    assert mean.tolist() == pytest.approx(normalization["mean"]) and std.tolist() == pytest.approx(normalization["std"])


def test_the_patch_geometry_is_a_setting_checked_before_any_work():
    from modeling.ml.common.settings import settings_check
    from modeling.ml.sensorlm.train import SensorLMTrainSettings

    settings = SensorLMTrainSettings(patch_minutes=10, patch_channels=9)
    assert settings.config_overrides() == {"patch_minutes": 10, "patch_channels": 9}
    assert SensorLMTrainSettings().config_overrides() == {}
    with pytest.raises(ValueError, match="patch_minutes: a patch of 7 minutes must divide"):
        settings_check(SensorLMTrainSettings(patch_minutes=7))
    with pytest.raises(ValueError, match="patch_channels: a patch of 4 channels"):
        settings_check(SensorLMTrainSettings(patch_minutes=10, patch_channels=4))
