"""SensorLM: each loss trains and survives save/load, the sensor tower starts from a foundation model, gaps are masked."""

import numpy as np
import pytest
import torch

from modeling.ml.data.cohort import make_cohort
from modeling.ml.lsm.masking import patch_missing
from modeling.ml.lsm.model import LSMConfig, LSMForMaskedPretraining
from modeling.ml.sensorlm.captions import caption_days
from modeling.ml.sensorlm.model import LOSSES, SensorLMConfig, SensorLMModel, load_sensorlm, save_sensorlm
from modeling.ml.sensorlm.tokenizer import decode, encode, load_tokenizer, normalized, save_tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def captioned(windows):
    """The six participants' standardized windows (conftest) with their captions and a tokenizer trained on them."""
    cohort = make_cohort(participants=6, days=2, seed=2)
    captions = [
        caption
        for i in range(6)
        for caption in caption_days(
            cohort.participant(i).minutes.values,
            cohort.participant(i).minutes.mask,
            cohort.participant(i).minutes.events,
        )
    ]
    tokenizer = train_tokenizer(captions)
    return windows[0], windows[1], captions, tokenizer


def tiny(tokenizer, loss: str, **overrides) -> SensorLMConfig:
    return SensorLMConfig.named(
        "tiny",
        loss=loss,
        vocabulary_size=tokenizer.get_vocab_size(),
        max_text_tokens=48,
        pad_token_id=tokenizer.token_to_id("[PAD]"),
        bos_token_id=tokenizer.token_to_id("[CLS]"),
        eos_token_id=tokenizer.token_to_id("[SEP]"),
        **overrides,
    )


def test_the_tokenizer_splits_digits_and_round_trips_captions(captioned, tmp_path):
    *_, captions, tokenizer = captioned
    assert tokenizer.encode("148 bpm").tokens == ["[CLS]", "1", "4", "8", "bpm", "[SEP]"]
    assert all(normalized(tokenizer, caption) == caption.lower() for caption in captions)
    save_tokenizer(tokenizer, tmp_path)
    assert load_tokenizer(tmp_path).encode(captions[0]).ids == tokenizer.encode(captions[0]).ids
    ids, mask = encode(tokenizer, captions[:2], 16)
    assert ids.shape == (2, 16) and int(ids[0, 15]) == tokenizer.token_to_id("[SEP]") and mask.all()
    assert decode(tokenizer, ids[0].tolist()) == normalized(tokenizer, captions[0], 16)


@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_trains_and_survives_save_and_load(captioned, loss, tmp_path):
    values, observed, captions, tokenizer = captioned
    torch.manual_seed(0)
    model = SensorLMModel(tiny(tokenizer, loss))
    input_ids, attention_mask = encode(tokenizer, captions, model.config.max_text_tokens)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        output = model(values, observed, input_ids, attention_mask, generator=torch.Generator().manual_seed(0))
        output.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(output.loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    save_sensorlm(model, tokenizer, {"mean": [0.0] * 27, "std": [1.0] * 27}, tmp_path / "model")
    loaded, loaded_tokenizer, mean, _std = load_sensorlm(tmp_path / "model")
    assert (
        loaded.config.loss == loss
        and loaded_tokenizer.get_vocab_size() == tokenizer.get_vocab_size()
        and mean.shape == (27,)
    )
    with torch.no_grad():
        assert torch.allclose(model.embed_sensor(values, observed), loaded.embed_sensor(values, observed), atol=1e-5)
        assert torch.allclose(
            model.embed_text(input_ids, attention_mask), loaded.embed_text(input_ids, attention_mask), atol=1e-5
        )
        assert torch.allclose(
            model(values, observed, input_ids, attention_mask).loss,
            loaded(values, observed, input_ids, attention_mask).loss,
            atol=1e-4,
        )
    if loss == "coca":
        generated = loaded.generate_captions(values[:2], observed[:2], max_tokens=10)
        assert generated == model.generate_captions(values[:2], observed[:2], max_tokens=10)
        assert all(row[0] == tokenizer.token_to_id("[CLS]") and len(row) <= 10 for row in generated)
    else:
        with pytest.raises(ValueError):
            loaded.generate_captions(values[:1], observed[:1])


def test_the_sensor_tower_starts_from_a_foundation_model_of_the_same_architecture(captioned, tmp_path):
    values, observed, _, tokenizer = captioned
    lsm = LSMForMaskedPretraining(LSMConfig.named("tiny"))
    lsm.save_pretrained(tmp_path / "lsm")
    model = SensorLMModel(tiny(tokenizer, "clip"))
    copied = model.init_sensor_from(tmp_path / "lsm")
    assert copied >= 10
    assert torch.equal(model.sensor.encoder[1].qkv.weight, lsm.encoder[1].qkv.weight)
    assert torch.equal(model.sensor.embed.weight, lsm.embed.weight)
    with torch.no_grad():
        tokens, padding = model.eval().sensor_tokens(values[:2], observed[:2])
        encoded = lsm.eval().token_grid(values[:2], observed[:2])[0]
    assert torch.allclose(
        tokens[0, ~padding[0]].sum(0), encoded[0].sum(0), atol=1e-4
    )  # the same encodings, gaps left out
    LSMForMaskedPretraining(LSMConfig.named("tiny", depth=3)).save_pretrained(tmp_path / "deeper")
    with pytest.raises(ValueError, match="depth"):
        model.init_sensor_from(tmp_path / "deeper")


def test_gaps_are_attention_masked_not_read(captioned):
    values, observed, _, tokenizer = captioned
    model = SensorLMModel(tiny(tokenizer, "siglip")).eval()
    config = model.config
    gaps = patch_missing(observed, config.patch_channels, config.patch_minutes)  # (batch, patches)
    assert gaps.any() and not gaps.all(dim=1).any()  # the windows have fully missing patches, and observed ones
    with torch.no_grad():
        _, padding = model.sensor_tokens(values, observed)
        # (batch, visible patches): each window keeps exactly its observed patches; the rest is padding.
        assert torch.equal((~padding).sum(dim=1), (~gaps).sum(dim=1))
        # Fed as observed zeros instead, the missing patches would be read: the embedding changes.
        as_zeros = torch.where(observed, values, torch.zeros_like(values))
        masked = model.embed_sensor(values, observed)
        read = model.embed_sensor(as_zeros, torch.ones_like(observed))
        assert not torch.allclose(masked, read, atol=1e-3)
        poisoned = torch.where(observed, values, torch.full_like(values, 1e4))
        assert torch.allclose(masked, model.embed_sensor(poisoned, observed), atol=1e-5)
    assert np.isfinite(model.logit_bias.item()) and model.logit_bias.item() == -10.0
