"""The wearable foundation model: masking invariants, a tiny pre-training whose loss falls, checkpoints."""

import numpy as np
import pytest
import torch

from modeling.ml.lsm.masking import STRATEGIES, make_mask, patch_missing
from modeling.ml.lsm.model import LSMConfig, LSMForMaskedPretraining


def test_aim_counts_real_gaps_toward_the_ratio_and_adds_the_rest():
    missing = torch.zeros(4, 100, dtype=torch.bool)
    missing[0, :30] = True  # 30 % genuinely missing
    missing[1, :90] = True  # more missing than the ratio
    masked = make_mask("aim", missing, 0.8, channel_groups=1, generator=torch.Generator().manual_seed(0))
    assert masked.sum(dim=1).tolist() == [80, 90, 80, 80]
    assert masked[missing].all()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_masks_missing_patches(strategy):
    missing = torch.rand(3, 24 * 27, generator=torch.Generator().manual_seed(1)) < 0.2
    masked = make_mask(strategy, missing, 0.5, channel_groups=27, generator=torch.Generator().manual_seed(2))
    assert masked[missing].all() and masked.float().mean() >= 0.5


def test_aim_group_hides_a_whole_channel_group_in_about_half_the_windows_and_keeps_the_ratio():
    groups, time_patches, windows = 3, 144, 400
    missing = torch.zeros(windows, groups * time_patches, dtype=torch.bool)
    missing[:, :10] = True  # a real gap at the start of group 0
    masked = make_mask("aim_group", missing, 0.8, channel_groups=groups, generator=torch.Generator().manual_seed(4))
    assert masked[missing].all() and (masked.sum(dim=1) == round(0.8 * groups * time_patches)).all()
    whole_group = masked.reshape(windows, groups, time_patches).all(dim=2).any(dim=1)
    assert 0.4 < whole_group.float().mean() < 0.6  # by chance, AIM alone hides a whole group of 144 patches never
    plain = make_mask("aim", missing, 0.8, channel_groups=groups, generator=torch.Generator().manual_seed(4))
    assert not plain.reshape(windows, groups, time_patches).all(dim=2).any()
    one_group = missing[:, :time_patches]
    assert torch.equal(  # one group: plain AIM
        make_mask("aim_group", one_group, 0.8, channel_groups=1, generator=torch.Generator().manual_seed(4)),
        make_mask("aim", one_group, 0.8, channel_groups=1, generator=torch.Generator().manual_seed(4)),
    )


DECODERS = ("self", "cross")


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_missing_value_is_never_a_reconstruction_target(windows, decoder):
    values, observed = windows
    model = LSMForMaskedPretraining(LSMConfig.named("tiny", decoder_attention=decoder))
    poisoned = values.clone()
    poisoned[~observed] = 1e6  # whatever sits under a gap must not change the loss
    generator_a, generator_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    loss_clean = model(values, observed, generator=generator_a).loss
    loss_poisoned = model(poisoned, observed, generator=generator_b).loss
    assert torch.allclose(loss_clean, loss_poisoned)


def test_gaps_are_attention_masked_not_imputed_when_embedding(windows):
    values, observed = windows
    model = LSMForMaskedPretraining(LSMConfig.named("tiny")).eval()
    changed = values.clone()
    missing = patch_missing(observed, 1, 60)
    patches_minutes = (~observed).reshape(*observed.shape[:2], 24, 60).all(-1)  # (windows, channels, 24)
    changed.reshape(*observed.shape[:2], 24, 60)[patches_minutes] = 99.0
    assert missing.any()
    torch.testing.assert_close(
        model.embed_windows(values, observed), model.embed_windows(changed, observed), atol=1e-6, rtol=0, equal_nan=True
    )


@pytest.mark.slow
@pytest.mark.parametrize("decoder", DECODERS)
def test_a_tiny_pretraining_lowers_the_loss(windows, decoder):
    values, observed = windows
    torch.manual_seed(0)
    model = LSMForMaskedPretraining(LSMConfig.named("tiny", decoder_attention=decoder))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        loss = model(values, observed, generator=generator).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3])


@pytest.mark.parametrize("decoder", DECODERS)
def test_save_then_from_pretrained_gives_identical_outputs(tmp_path, windows, decoder):
    values, observed = windows
    model = LSMForMaskedPretraining(LSMConfig.named("tiny", decoder_attention=decoder)).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").exists() and (tmp_path / "model.safetensors").exists()
    loaded = LSMForMaskedPretraining.from_pretrained(tmp_path).eval()
    masked = make_mask(
        "random", patch_missing(observed, 1, 60), 0.8, channel_groups=27, generator=torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(
        loaded(values, observed, masked=masked).reconstruction, model(values, observed, masked=masked).reconstruction
    )
    torch.testing.assert_close(
        loaded.embed_windows(values, observed), model.embed_windows(values, observed), equal_nan=True
    )


def test_the_cross_decoder_reconstructs_masked_patches_only_and_each_from_the_visible_ones(windows):
    values, observed = windows
    model = LSMForMaskedPretraining(LSMConfig.named("tiny", decoder_attention="cross")).eval()
    masked = make_mask(
        "random", patch_missing(observed, 1, 60), 0.8, channel_groups=27, generator=torch.Generator().manual_seed(3)
    )
    output = model(values, observed, masked=masked)
    tokens = model.patchify(torch.where(observed, values, torch.zeros_like(values)))
    assert torch.equal(output.reconstruction[~masked], tokens[~masked])  # visible patches come back as given
    assert not torch.allclose(output.reconstruction[masked], tokens[masked])
    # A masked patch's value never reaches the prediction of another masked patch (no self-attention among them).
    changed = values.clone()
    first_masked = int(masked[0].nonzero()[0])
    channel, hour = divmod(first_masked, 24)
    changed[0, channel, hour * 60 : (hour + 1) * 60] += 50.0
    again = model(changed, observed, masked=masked)
    torch.testing.assert_close(again.reconstruction, output.reconstruction)


def test_calendar_features_make_the_weekday_count_and_are_saved_with_the_model(tmp_path, windows):
    values, observed = windows
    monday, saturday = torch.zeros(len(values), dtype=torch.long), torch.full((len(values),), 5)
    plain = LSMForMaskedPretraining(LSMConfig.named("tiny")).eval()
    torch.testing.assert_close(
        plain.embed_windows(values, observed, monday), plain.embed_windows(values, observed, saturday), equal_nan=True
    )
    model = LSMForMaskedPretraining(LSMConfig.named("tiny", calendar_features=True)).eval()
    assert not torch.allclose(
        model.embed_windows(values, observed, monday), model.embed_windows(values, observed, saturday), equal_nan=True
    )
    model.save_pretrained(tmp_path)
    loaded = LSMForMaskedPretraining.from_pretrained(tmp_path).eval()
    assert loaded.config.calendar_features
    torch.testing.assert_close(
        loaded.embed_windows(values, observed, saturday),
        model.embed_windows(values, observed, saturday),
        equal_nan=True,
    )


@pytest.mark.slow
def test_pretraining_with_calendar_features_feeds_each_windows_weekday(tmp_path):
    from modeling.ml.lsm.pretrain import pretrain
    from modeling.ml.train import TrainConfig

    result = pretrain(
        size="tiny",
        participants=6,
        days=2,
        seed=0,
        train_config=TrainConfig(steps=3, batch_size=4),
        output_dir=tmp_path,
        calendar_features=True,
    )
    loaded = LSMForMaskedPretraining.from_pretrained(result["model_dir"])
    assert loaded.config.calendar_features and result["validation_loss"] > 0
    assert loaded.weekday_embedding.weight.shape == (7, 64)


@pytest.mark.slow
def test_pretraining_logs_the_held_out_loss_curve_and_takes_the_ablations_architecture(tmp_path):
    """validate_every logs the held-out loss during training (is it still falling?); patch size, mask ratio, width
    and depth come from the settings (0 keeps the named size's)."""
    import json

    from modeling.ml.lsm.pretrain import PretrainSettings, pretrain_with

    settings = PretrainSettings(
        participants=6, days=1, steps=6, batch_size=4, validate_every=3, patch_minutes=15, mask_ratio=0.6, depth=1
    )
    result = pretrain_with(settings, output_dir=tmp_path, device="cpu")
    curve = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [(row["step"], row["validation_loss"]) for row in curve if "validation_loss" in row]
    assert [step for step, _ in logged] == [3, 6]
    assert logged[-1][1] == pytest.approx(result["validation_loss"])  # the same masks every time: comparable
    config = LSMForMaskedPretraining.from_pretrained(result["model_dir"]).config
    assert (config.patch_minutes, config.mask_ratio, config.depth, config.dim) == (15, 0.6, 1, 64)


def test_the_probe_embedding_keeps_one_vector_per_channel(windows):
    """What probes read: the last layer's mean per channel group, concatenated; each block is that channel's own
    patches (NaN for a channel without any observed minute, which probes impute), and the grand mean is their
    patch-weighted mean."""
    values, observed = windows
    model = LSMForMaskedPretraining(LSMConfig.named("tiny")).eval()
    observed = observed.clone()
    observed[:, 4] = False  # channel 4 not worn at all
    embedding = model.embed_windows(values, observed)
    c = model.config
    assert embedding.shape == (len(values), c.channels * c.dim) == (len(values), model.embedding_width)
    blocks = embedding.reshape(len(values), c.channels, c.dim)
    assert blocks[:, 4].isnan().all() and not blocks[:, 5].isnan().any()
    patches = (~patch_missing(observed, 1, 60)).reshape(len(values), c.channels, c.time_patches).sum(-1)
    grand = (blocks.nan_to_num() * patches[..., None]).sum(1) / patches.sum(1, keepdim=True)
    with torch.no_grad():
        torch.testing.assert_close(grand, model.pool(values, observed), atol=1e-5, rtol=1e-4)
