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
    tokens = tokenizer.encode(simulated.records[2]).slice(60)  # the first two months: fewer tokens than either block
    tight, padded = TimelineWindows([tokens], len(tokens)), TimelineWindows([tokens], len(tokens) + 40)
    assert tight.valid.all() and not padded.valid.all()
    assert torch.allclose(model(**tight.batch(torch.tensor([0]))).loss, model(**padded.batch(torch.tensor([0]))).loss, atol=1e-5)


def test_a_checkpoint_reloads_with_from_pretrained(tmp_path, simulated, tokenizer):
    model = _model(tokenizer, seed=4)
    model.save_pretrained(tmp_path)
    loaded = HealthFormerModel.from_pretrained(tmp_path).eval()
    batch = TimelineWindows([tokenizer.encode(simulated.records[0])], 96).batch(torch.tensor([0]))
    assert torch.allclose(model(**batch).loss, loaded(**batch).loss)
