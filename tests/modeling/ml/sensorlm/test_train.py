"""A tiny sensor-language training run: the contrastive loss falls and held-out retrieval beats chance."""

import json

import pytest

from modeling.ml.sensorlm.tagging import load_tagger
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
        # Patches of 60 minutes x 9 channels, the committed model's (72 sensor tokens a day, not 648): 15-17 s here
        # against 55, and on seeds 0, 1 and 2 the loss ratio 0.64-0.75, the mean rank 0.14-0.21 and r@10 0.45-0.50.
        patch_channels=9,
    )
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:2]) / 2  # from ln(32) = 3.47 (a random batch of 32) to about 2.8
    candidates = result["held_out_windows"]
    assert result["held_out_participants"] == 40 and candidates >= 70
    # Under chance the matching caption's mean rank fraction is 0.5 with an SD of about 0.29 / sqrt(candidates) (0.03 here).
    assert result["held_out_mean_rank_fraction"] < 0.35
    assert result["held_out_sensor_to_text_r@10"] > 2 * 10 / candidates
    assert (tmp_path / "model" / "tokenizer.json").exists() and (tmp_path / "model" / "normalization.json").exists()
    # the activity tagger is fitted with the model, on its training days, its threshold on the held-out participants'
    tagger = load_tagger(tmp_path / "model")
    assert tagger is not None and tagger.description["fitting_days"] == result["train_windows"]
    assert result["activity_tagger"]["held_out_days"] == candidates
    assert result["activity_tagger"]["threshold"] == tagger.threshold


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
