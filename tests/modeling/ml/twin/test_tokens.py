"""Timelines to tokens and back."""

import numpy as np
import pytest

from modeling.ml.twin.tokens import CODES, ParticipantRecord, Tokenizer, quantile_levels


def test_encode_decode_encode_gives_the_same_tokens(simulated, tokenizer):
    for record in simulated.records:
        tokens = tokenizer.encode(record)
        again = tokenizer.encode(tokenizer.decode(tokens))
        assert np.array_equal(tokens.ids, again.ids) and np.array_equal(tokens.days, again.days)


def test_decoded_values_stay_in_their_quantile_bin_and_events_survive(simulated, tokenizer):
    record = max(simulated.records, key=lambda r: len(r.events))
    decoded = tokenizer.decode(tokenizer.encode(record))
    summarized = sorted(tokenizer.summarize(record.measurements), key=lambda m: (m["day"], m["name"]))
    assert len(decoded.measurements) == len(summarized)
    for original, back in zip(
        summarized, sorted(decoded.measurements, key=lambda m: (m["day"], m["name"])), strict=True
    ):
        assert (original["day"], original["name"]) == (back["day"], back["name"])
        assert tokenizer.value_bin(original["name"], original["value"]) == tokenizer.value_bin(
            back["name"], back["value"]
        )
    assert sorted((e["day"], e["name"]) for e in decoded.events) == sorted((e["day"], e["name"]) for e in record.events)
    assert (decoded.sex, decoded.smoker, decoded.age_years) == (record.sex, record.smoker, record.age_years)


def test_dense_modalities_become_one_token_per_block(tokenizer):
    record = ParticipantRecord(
        age_years=50.0,
        sex=None,
        smoker=None,
        last_day=27,
        measurements=[{"day": day, "name": "daily_steps", "value": 5000.0 + day} for day in range(28)]
        + [{"day": 3, "name": "ldl", "value": 130.0}],
    )
    tokens = tokenizer.encode(record)
    names = [CODES[code][0] for code in tokens.codes]
    assert names.count("measure:daily_steps") == 2 and names.count("measure:ldl") == 1
    assert tokens.days.tolist() == sorted(tokens.days.tolist())  # by day; missing data is simply absent


def test_the_tokenizer_saves_and_loads(tmp_path, tokenizer, simulated):
    tokenizer.save(tmp_path / "tokenizer.json")
    loaded = Tokenizer.load(tmp_path / "tokenizer.json")
    assert loaded.vocab_size == tokenizer.vocab_size
    assert np.array_equal(loaded.encode(simulated.records[0]).ids, tokenizer.encode(simulated.records[0]).ids)


def test_bins_are_denser_in_the_tails_where_the_diagnostic_limits_lie(simulated):
    levels = quantile_levels(32)
    assert len(levels) == 31 and np.all(np.diff(levels) > 0)
    assert levels[:4].tolist() == [0.005, 0.01, 0.02, 0.04] and levels[-4:].tolist() == [0.96, 0.98, 0.99, 0.995]
    assert np.allclose(quantile_levels(12), np.arange(1, 12) / 12)  # few bins: evenly spaced
    ldl = [m["value"] for record in simulated.records for m in record.measurements if m["name"] == "ldl"]
    edges = Tokenizer.fit(simulated.records, bins=32).edges["ldl"]
    np.testing.assert_allclose(edges[-2:], np.quantile(ldl, [0.99, 0.995]), atol=1e-6)


def test_the_height_travels_with_the_record_and_its_tokens_but_is_no_token(simulated, tokenizer):
    from dataclasses import replace

    record = simulated.records[0]
    assert record.height_m == pytest.approx(float(simulated.traits.height_m[0]))
    tokens = tokenizer.encode(record)
    assert tokens.height_m == record.height_m and tokens.slice(30).height_m == record.height_m
    assert tokenizer.decode(tokens).height_m == record.height_m
    unknown = tokenizer.encode(replace(record, height_m=None))
    assert unknown.height_m is None
    np.testing.assert_array_equal(unknown.ids, tokens.ids)  # the model sees the same tokens either way
