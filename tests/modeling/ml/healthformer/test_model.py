"""The decoder: causal masking, the KV cache, checkpoints."""

import torch

from modeling.ml.healthformer.data import TimelineWindows
from modeling.ml.healthformer.model import HealthFormerConfig, HealthFormerModel


def _model(tokenizer, seed=0):
    torch.manual_seed(seed)
    return HealthFormerModel(HealthFormerConfig.named("tiny", tokenizer, block_size=96)).eval()


def test_perturbing_future_tokens_leaves_past_predictions_unchanged(simulated, tokenizer):
    model = _model(tokenizer)
    batch = TimelineWindows([tokenizer.encode(simulated.records[0])], 96).batch(torch.tensor([0]))
    cut = 40
    changed = {key: value.clone() for key, value in batch.items()}
    changed["input_ids"][:, cut:] = torch.randint(1, tokenizer.vocab_size, changed["input_ids"][:, cut:].shape)
    changed["days"][:, cut:] = changed["days"][:, cut:] + 100
    before = model(**batch, compute_loss=False)
    after = model(**changed, compute_loss=False)
    assert torch.allclose(before.logits[:, :cut], after.logits[:, :cut], atol=1e-5)
    assert torch.allclose(before.rate[:, :cut], after.rate[:, :cut], atol=1e-5)
    assert not torch.allclose(before.logits[:, cut:], after.logits[:, cut:], atol=1e-3)


def test_cached_decoding_matches_the_full_forward_pass(simulated, tokenizer):
    model = _model(tokenizer)
    tokens = tokenizer.encode(simulated.records[1])
    ids, days = torch.tensor(tokens.ids[None, :60]), torch.tensor(tokens.days[None, :60])
    age, valid = torch.tensor([tokens.age_years], dtype=torch.float32), torch.ones(1, 60, dtype=torch.bool)
    full = model(ids, days, age, valid, compute_loss=False)
    cache, logits, rate = model.prefill(ids[:, :45], days[:, :45], age, valid[:, :45], capacity=64)
    for position in range(45, 60):
        logits, rate = model.decode_step(cache, ids[:, position], days[:, position], days[:, position - 1], age, valid[:, position])
    assert torch.allclose(logits, full.logits[:, 59], atol=1e-4) and torch.allclose(rate, full.rate[:, 59], atol=1e-4)


def test_padding_does_not_change_a_window_s_loss(simulated, tokenizer):
    model = _model(tokenizer)
    tokens = tokenizer.encode(simulated.records[2]).slice(60)  # the first two months: one window either way
    short, padded = TimelineWindows([tokens], len(tokens) + 8), TimelineWindows([tokens], len(tokens) + 48)
    assert len(short) == len(padded) == 1 and short.valid.sum() == padded.valid.sum() == len(tokens)
    assert torch.allclose(model(**short.batch(torch.tensor([0]))).loss, model(**padded.batch(torch.tensor([0]))).loss, atol=1e-5)


def test_a_window_after_a_treatment_still_knows_it_started(tokenizer):
    from modeling.ml.healthformer.tokens import ParticipantRecord

    record = ParticipantRecord(age_years=60.0, sex="male", smoker=False, last_day=400,
                               measurements=[{"day": day, "name": "systolic_bp", "value": 140.0} for day in range(0, 400, 2)],
                               events=[{"day": 30, "kind": "intervention", "name": "statin"}])
    windows = TimelineWindows([tokenizer.encode(record)], 64)
    assert len(windows) > 2
    statin = tokenizer.token_id("intervention:statin")
    assert all((windows.input_ids[row] == statin).sum() == 1 for row in range(1, len(windows)))  # pinned after the static tokens


def test_a_checkpoint_reloads_with_from_pretrained(tmp_path, simulated, tokenizer):
    model = _model(tokenizer, seed=4)
    model.save_pretrained(tmp_path)
    loaded = HealthFormerModel.from_pretrained(tmp_path).eval()
    batch = TimelineWindows([tokenizer.encode(simulated.records[0])], 96).batch(torch.tensor([0]))
    assert torch.allclose(model(**batch).loss, loaded(**batch).loss)
