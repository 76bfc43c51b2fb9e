"""The decoder: causal masking, the KV cache, checkpoints."""

import pytest
import torch

from modeling.ml.twin.cache import SharedPrefixCache
from modeling.ml.twin.data import TimelineWindows
from modeling.ml.twin.model import HealthFormerConfig, HealthFormerModel


def _model(tokenizer, seed=0, **overrides):
    torch.manual_seed(seed)
    return HealthFormerModel(HealthFormerConfig.named("tiny", tokenizer, block_size=96, **overrides)).eval()


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


def _left_padded(sequences, lengths):
    """The first ``lengths`` tokens of each sequence, left-padded as generate.py pads histories: (ids, days, valid)."""
    width = max(lengths)
    ids, days = torch.zeros(len(lengths), width, dtype=torch.long), torch.zeros(len(lengths), width, dtype=torch.long)
    valid = torch.zeros(len(lengths), width, dtype=torch.bool)
    for row, (tokens, length) in enumerate(zip(sequences, lengths, strict=True)):
        ids[row, width - length :] = torch.from_numpy(tokens.ids[:length])
        days[row, width - length :] = torch.from_numpy(tokens.days[:length])
        days[row, : width - length] = int(tokens.days[0])
        valid[row, width - length :] = True
    return ids, days, valid


def _started_mid_record(simulated, tokenizer):
    """Record 0 with a statin started after its 35th token: a start the cached decoding steps over."""
    from dataclasses import replace

    record = simulated.records[0]
    day = int(tokenizer.encode(record).days[35])
    events = [*record.events, {"day": day, "kind": "medication", "name": "statin"}]
    return replace(record, events=sorted(events, key=lambda event: event["day"]))


@pytest.mark.parametrize("treatment_by_level, level_at_start", [(False, False), (True, False), (True, True)])
def test_cached_decoding_of_a_left_padded_batch_matches_each_sequence_s_full_forward_pass(
    simulated, tokenizer, treatment_by_level, level_at_start
):
    model = _model(tokenizer, treatment_by_level=treatment_by_level, level_at_start=level_at_start)
    assert (model.level_projection is not None) == treatment_by_level
    sequences = [
        tokenizer.encode(record) for record in (_started_mid_record(simulated, tokenizer), *simulated.records[1:3])
    ]
    statin = tokenizer.token_id("medication:statin")
    assert statin in sequences[0].ids[30:38].tolist()  # started inside row 0's decoded steps
    lengths, steps = [30, 52, 17], 8
    ids, days, valid = _left_padded(sequences, lengths)
    age = torch.tensor([tokens.age_years for tokens in sequences], dtype=torch.float32)
    cache, (logits, rate, _) = model.prefill(ids, days, age, valid, capacity=max(lengths) + steps)
    for step in range(steps + 1):
        for row, (tokens, length) in enumerate(zip(sequences, lengths, strict=True)):
            end = length + step  # the sequence so far, unpadded
            full = model(
                torch.tensor(tokens.ids[None, :end]),
                torch.tensor(tokens.days[None, :end]),
                age[row : row + 1],
                torch.ones(1, end, dtype=torch.bool),
                compute_loss=False,
            )
            assert torch.allclose(logits[row], full.logits[0, -1], atol=1e-4) and torch.allclose(
                rate[row], full.rate[0, -1], atol=1e-4
            )
        if step < steps:
            position = torch.tensor(lengths) + step
            next_ids = torch.stack([torch.tensor(tokens.ids[p]) for tokens, p in zip(sequences, position, strict=True)])
            next_days = torch.stack(
                [torch.tensor(tokens.days[p]) for tokens, p in zip(sequences, position, strict=True)]
            )
            previous = torch.stack(
                [torch.tensor(tokens.days[p - 1]) for tokens, p in zip(sequences, position, strict=True)]
            )
            logits, rate, _ = model.decode_step(
                cache, next_ids, next_days, previous, age, torch.ones(3, dtype=torch.bool)
            )


@pytest.mark.parametrize("buckets", [1, 2, 4])
def test_a_shared_history_cache_decodes_as_a_history_copied_to_every_row(simulated, tokenizer, buckets):
    # Left-padded histories of different lengths (one empty), each fanned out to 4 rows that write different tokens (some
    # masked, as the control arm's placeholder); one row of a participant, then a whole participant, leave midway.
    model = _model(tokenizer)
    sequences = [tokenizer.encode(simulated.records[index]) for index in range(4)]
    lengths, group, steps = [30, 52, 17, 0], 4, 2 * SharedPrefixCache.GROWTH + 3  # the suffix grows twice
    ids, days, valid = _left_padded(sequences, lengths)
    age = torch.tensor([tokens.age_years for tokens in sequences], dtype=torch.float32)
    rows = torch.arange(4).repeat_interleave(group)
    copied, _ = model.prefill(ids, days, age, valid, capacity=max(lengths) + steps)
    copied = copied.select(rows)
    prefix, _ = model.prefill(ids, days, age, valid, capacity=max(lengths))
    shared = SharedPrefixCache(prefix, group, capacity=steps, buckets=buckets)
    generator = torch.Generator().manual_seed(0)
    row_age, day = age[rows], days[rows, -1]
    for step in range(steps):
        if step == 4:  # one row of participant 1 leaves, then all of participant 0's
            kept = torch.tensor([index for index in range(len(row_age)) if index != 5])
            copied, shared, row_age, day = copied.select(kept), shared.select(kept), row_age[kept], day[kept]
        if step == SharedPrefixCache.GROWTH + 2:
            kept = torch.arange(group, len(row_age))
            copied, shared, row_age, day = copied.select(kept), shared.select(kept), row_age[kept], day[kept]
        token = torch.randint(1, tokenizer.vocab_size, (len(row_age),), generator=generator)
        next_day = day + torch.randint(0, 5, (len(row_age),), generator=generator)
        token_valid = torch.rand(len(row_age), generator=generator) > 0.25
        expected_logits, expected_rate, _ = model.decode_step(copied, token, next_day, day, row_age, token_valid)
        logits, rate, _ = model.decode_step(shared, token, next_day, day, row_age, token_valid)
        assert torch.allclose(logits, expected_logits, atol=1e-5) and torch.allclose(rate, expected_rate, atol=1e-5)
        day = next_day
    assert shared.histories == 3  # the history of the participant with no row left is gone


def test_padding_does_not_change_a_window_s_loss(simulated, tokenizer):
    model = _model(tokenizer)
    tokens = tokenizer.encode(simulated.records[2]).slice(60)  # the first two months: one window either way
    short, padded = TimelineWindows([tokens], len(tokens) + 8), TimelineWindows([tokens], len(tokens) + 48)
    assert len(short) == len(padded) == 1 and short.valid.sum() == padded.valid.sum() == len(tokens)
    assert torch.allclose(
        model(**short.batch(torch.tensor([0]))).loss, model(**padded.batch(torch.tensor([0]))).loss, atol=1e-5
    )


def test_a_window_after_a_treatment_still_knows_it_started(tokenizer):
    from modeling.ml.twin.tokens import ParticipantRecord

    record = ParticipantRecord(
        age_years=60.0,
        sex="male",
        smoker=False,
        last_day=400,
        measurements=[{"day": day, "name": "systolic_bp", "value": 140.0} for day in range(0, 400, 2)],
        events=[{"day": 30, "kind": "intervention", "name": "statin"}],
    )
    windows = TimelineWindows([tokenizer.encode(record)], 64)
    assert len(windows) > 2
    statin = tokenizer.token_id("intervention:statin")
    assert all(
        (windows.input_ids[row] == statin).sum() == 1 for row in range(1, len(windows))
    )  # pinned after the static tokens


def test_a_checkpoint_reloads_with_from_pretrained(tmp_path, simulated, tokenizer):
    model = _model(tokenizer, seed=4)
    model.save_pretrained(tmp_path)
    loaded = HealthFormerModel.from_pretrained(tmp_path).eval()
    batch = TimelineWindows([tokenizer.encode(simulated.records[0])], 96).batch(torch.tensor([0]))
    assert torch.allclose(model(**batch).loss, loaded(**batch).loss)


def test_every_position_sees_each_biomarker_s_latest_value_and_its_day():
    from modeling.ml.twin.model import latest_features, latest_state

    # biomarkers of 5 tokens (0: none): 2, none, 1, 2, none; one earlier value of biomarker 1 before the sequence
    biomarker = torch.tensor([[2, 0, 1, 2, 0]])
    value = torch.tensor([[0.5, 0.0, -1.0, 1.5, 0.0]])
    days = torch.tensor([[10, 12, 20, 30, 40]])
    start_value, start_day = torch.tensor([[0.25, 0.0]]), torch.tensor([[3.0, float("-inf")]])
    values, value_days = latest_state(biomarker, value, days, start_value, start_day)
    assert values[0, :, 0].tolist() == [0.25, 0.25, -1.0, -1.0, -1.0]
    assert value_days[0, :, 0].tolist() == [3.0, 3.0, 20.0, 20.0, 20.0]
    assert values[0, :, 1].tolist() == [0.5, 0.5, 0.5, 1.5, 1.5]
    features = latest_features(values, value_days, days)
    assert features[0, 0].tolist()[:2] == [1.0, 1.0]  # both known at the first token (one from before it)
    unseen = latest_features(values[:, :, 1:], torch.full_like(value_days[:, :, 1:], float("-inf")), days)
    assert unseen.abs().sum() == 0  # never measured: no value, no age, not NaN


def test_the_latest_value_reaches_the_next_prediction_through_the_cache_as_in_a_full_pass(simulated, tokenizer):
    model = _model(tokenizer, seed=5)
    tokens = tokenizer.encode(simulated.records[1]).slice(200)
    ids, days = torch.from_numpy(tokens.ids)[None], torch.from_numpy(tokens.days)[None]
    age, valid = torch.tensor([60.0]), torch.ones_like(ids, dtype=torch.bool)
    cache, _ = model.prefill(ids[:, :-1], days[:, :-1], age, valid[:, :-1], capacity=len(tokens))
    carried_before = cache.carried.latest_value.clone()
    logits = model.decode_step(cache, ids[:, -1], days[:, -1], days[:, -2], age, valid[:, -1]).logits
    full = model(ids, days, age, valid, compute_loss=False).logits[:, -1]
    assert torch.allclose(logits, full, atol=1e-5)
    assert model.latest_projection is not None and torch.isfinite(cache.carried.latest_day).any()
    if tokens.bins[-1] > 0:  # the last token was a measurement: its biomarker's carried value changed
        assert not torch.equal(carried_before, cache.carried.latest_value)


def test_each_treatment_s_ramp_multiplies_each_biomarker_s_latest_value():
    from modeling.ml.twin.model import treatment_level_features

    ramp = torch.tensor([[[0.0, 0.5], [1.0, 0.25]]])  # (batch 1, tokens 2, treatments 2)
    values = torch.tensor([[[2.0, 9.0], [-1.0, 9.0]]])  # (batch 1, tokens 2, biomarkers 2); biomarker 2 never measured
    value_days = torch.tensor([[[3.0, float("-inf")], [3.0, float("-inf")]]])
    features = treatment_level_features(ramp, values, value_days)
    # treatment-major: (t1 b1, t1 b2, t2 b1, t2 b2)
    assert features[0].tolist() == [[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, -0.25, 0.0]]


def test_the_level_at_a_start_is_each_biomarker_s_latest_value_at_the_end_of_the_day_it_first_started():
    from modeling.ml.twin.model import start_levels, treatment_state

    # one row, 5 tokens on days 0, 1, 1, 2, 3; treatment slot 2 starts at token 1 (day 1) and again at token 4; a
    # reading later on day 1 (token 2) counts, biomarker 2 is first measured on day 2 (token 3) and does not
    slots = torch.tensor([[0, 2, 0, 0, 2]])
    days = torch.tensor([[0, 1, 1, 2, 3]])
    values = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.5, 0.0], [1.5, 7.0], [1.5, 7.0]]])
    inf = float("inf")
    value_days = torch.tensor([[[0.0, -inf], [0.0, -inf], [1.0, -inf], [1.0, 2.0], [1.0, 2.0]]])
    first = treatment_state(slots, days, torch.full((1, 2), inf), treatments=2)
    levels = start_levels(first, days, values, value_days, torch.zeros(1, 2, 2))  # (1, tokens, treatments, biomarkers)
    assert levels[0, :, 0].tolist() == [[0.0, 0.0]] * 5  # treatment 1 never started
    assert levels[0, :, 1].tolist() == [[0.0, 0.0], [1.0, 0.0], [1.5, 0.0], [1.5, 0.0], [1.5, 0.0]]
    # started before the sequence (day -3): the carried level holds, the start inside it is not the first
    started = treatment_state(slots, days, torch.tensor([[inf, -3.0]]), treatments=2)
    carried = start_levels(started, days, values, value_days, torch.tensor([[[0.0, 0.0], [4.0, 5.0]]]))
    assert carried[0, :, 1].tolist() == [[4.0, 5.0]] * 5


def test_the_level_at_start_needs_the_treatment_by_level_inputs(tokenizer):
    with pytest.raises(ValueError, match="needs treatment_by_level"):
        HealthFormerConfig.named("tiny", tokenizer, treatment_by_level=False, level_at_start=True)


def test_tokens_in_the_days_after_a_treatment_start_weigh_more():
    from modeling.ml.twin.model import post_start_weights

    inf = float("inf")
    days = torch.tensor([[0, 10, 20, 40, 200]])
    # one treatment started on day 10 (seen from its token on), a second never
    first = torch.tensor([[[inf, inf], [10.0, inf], [10.0, inf], [10.0, inf], [10.0, inf]]])
    # the next tokens: day 10 (the start itself: nothing started before it), 20, 40 (within 90 days), 200 (after)
    assert post_start_weights(first, days, 90, 4.0).tolist() == [[1.0, 4.0, 4.0, 1.0]]


def test_the_post_start_weighting_changes_the_loss_only_where_a_treatment_started(tokenizer):
    from modeling.ml.twin.tokens import ParticipantRecord

    measurements = [{"day": day, "name": "systolic_bp", "value": 150.0 - 0.1 * day} for day in range(0, 120, 7)]
    treated = ParticipantRecord(
        age_years=60.0,
        sex="male",
        smoker=False,
        measurements=measurements,
        events=[{"day": 30, "kind": "intervention", "name": "antihypertensive"}],
        last_day=119,
    )
    untreated = ParticipantRecord(60.0, "male", False, measurements, [], 119)
    losses = {}
    for weight in (1.0, 4.0):
        model = _model(tokenizer, seed=3, post_start_days=90, post_start_loss_weight=weight)
        for name, record in (("treated", treated), ("untreated", untreated)):
            batch = TimelineWindows([tokenizer.encode(record)], 96).batch(torch.tensor([0]))
            losses[name, weight] = float(model(**batch).token_loss)
    assert losses["untreated", 1.0] == pytest.approx(losses["untreated", 4.0])
    assert losses["treated", 1.0] != pytest.approx(losses["treated", 4.0])
