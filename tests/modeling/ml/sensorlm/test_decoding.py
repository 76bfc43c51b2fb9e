"""Decoding held to what the sensor side recognizes: sampled captions reranked by similarity to the day, and greedy
captions whose activities sentence states the detected activities and no other."""

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling.ml.sensorlm.caption_eval import (
    DETECTION_PRECISIONS,
    GREEDY,
    GROUNDED,
    RERANKED,
    TAGGED,
    caption_scores,
    captioning_table,
)
from modeling.ml.sensorlm.decoding import (
    ActivitySentence,
    fit_activity_detector,
    grounded_captions,
    precise_threshold,
    reranked_captions,
)
from modeling.ml.sensorlm.evaluate import EvaluationSettings, prepare
from modeling.ml.sensorlm.facts import stated_facts
from modeling.ml.sensorlm.model import load_sensorlm, nucleus_sample
from modeling.ml.sensorlm.tokenizer import decode
from modeling.ml.sensorlm.train import captioned_days, embed_texts, standardized

DEMO_MODEL = Path(__file__).resolve().parents[4] / "modeling" / "demo_weights" / "sensorlm"
ITEM = r"an? \d+-minute [a-z ]+ in the (morning|afternoon|evening|night) at [\d:]+"  # the captioner's grammar
COMMUTE = (
    "Activities: a 20-minute commute walk in the morning at 08:10, a 25-minute commute walk in the evening at 17:30. "
    "Slept 7.0 hours (normal night) from 23:30 to 06:30, consolidated sleep with 3 awakenings."
)
REST = "No exercise or commute recorded. Slept 8.0 hours (normal night) from 23:00 to 07:00."


@pytest.fixture(scope="module")
def loaded():
    """The committed model: (model, tokenizer, channel mean, channel SD)."""
    return load_sensorlm(DEMO_MODEL)


@pytest.fixture(scope="module")
def committed(loaded):
    """The committed model and six standardized days of new participants (not its training seed 0)."""
    model, tokenizer, mean, std = loaded
    days = captioned_days(participants=3, days=2, seed=4343)
    values, observed = standardized(days, mean.numpy(), std.numpy())
    return model, tokenizer, values, observed, torch.tensor(days.weekday)


def stated_kinds(caption: str) -> Counter:
    return Counter(activity.kind for activity in stated_facts(caption).activities)


def test_cached_greedy_decoding_writes_what_reading_the_whole_prefix_each_step_writes(committed):
    model, _, values, observed, weekday = committed
    with torch.no_grad():
        tokens, padding = model.sensor_tokens(values[:2], observed[:2], weekday[:2])
        context, context_mask = model.sensor_to_decoder(tokens), (~padding).long()
        ids = torch.full((2, 1), model.config.bos_token_id)
        for _ in range(29):
            logits = model.decoder(
                input_ids=ids, encoder_hidden_states=context, encoder_attention_mask=context_mask, use_cache=False
            ).logits[:, -1]
            ids = torch.cat([ids, logits.argmax(dim=-1, keepdim=True)], dim=1)
    assert model.generate_captions(values[:2], observed[:2], weekday[:2], max_tokens=30) == ids.tolist()


def test_sampling_is_reproducible_with_its_seed_and_draws_only_from_the_nucleus(committed):
    model, _, values, observed, weekday = committed

    def sampled(seed: int) -> list[list[int]]:
        return model.generate_captions(
            values[:3], observed[:3], weekday[:3], 40, temperature=1.0, generator=torch.Generator().manual_seed(seed)
        )

    assert sampled(5) == sampled(5)
    assert sampled(5) != sampled(6)
    logits = torch.tensor([[4.0, 1.0, 0.0, 0.0]]).repeat(200, 1)  # the first token holds 91 % of the probability
    generator = torch.Generator().manual_seed(0)
    assert nucleus_sample(logits, 1.0, 0.9, generator).eq(0).all()  # 0.91 reaches 0.9: the nucleus is one token
    drawn = set(nucleus_sample(logits, 1.0, 0.95, generator).tolist())
    assert drawn == {0, 1}  # the two most likely reach 0.95; the last two are never drawn


def test_the_reranker_keeps_the_sample_most_similar_to_the_day(committed):
    model, tokenizer, values, observed, weekday = committed

    def rerank(seed: int):
        return reranked_captions(
            model,
            tokenizer,
            values[:3],
            observed[:3],
            weekday[:3],
            samples=4,
            temperature=1.0,
            generator=torch.Generator().manual_seed(seed),
            max_tokens=40,
            batch_rows=8,  # two days per batch: the batches join in order
        )

    result = rerank(7)
    assert [len(options) for options in result.candidates] == [4, 4, 4]
    with torch.no_grad():
        sensor = model.embed_sensor(values[:3], observed[:3], weekday[:3])
    for day, options in enumerate(result.candidates):
        similarity = (embed_texts(model, tokenizer, options) @ sensor[day]).numpy()
        assert similarity == pytest.approx(result.similarity[day], abs=1e-5)
        assert result.captions[day] == options[int(np.argmax(similarity))]
    again = rerank(7)
    assert again.candidates == result.candidates and np.array_equal(again.similarity, result.similarity)


@pytest.mark.parametrize(
    "allowed",
    [
        {},
        {"swim": 1},
        {"commute_cycle": 2},
        {"tennis": 1, "housework": 1},
        {"commute_walk": 2, "yoga": 1},
    ],
)
def test_grounded_captions_state_exactly_the_allowed_activities(committed, allowed):
    model, tokenizer, values, observed, weekday = committed
    captions = grounded_captions(model, tokenizer, values, observed, weekday, [allowed] * len(values), max_tokens=90)
    for caption in captions:
        facts = stated_facts(caption)
        assert stated_kinds(caption) == Counter(allowed), caption
        first, rest = caption.split(". ", 1)
        assert rest and (not allowed or re.fullmatch(rf"activities: {ITEM}(, {ITEM})*", first)), caption
        assert all(activity.start_minute is not None for activity in facts.activities)  # the grammar's clock times
        assert facts.activity_sentence and caption.count("activities:") == (1 if allowed else 0)
        if not allowed:
            assert caption.startswith("no exercise or commute recorded.")


def test_the_sentence_is_the_decoder_s_own_where_the_allowed_kinds_are_those_it_writes(committed):
    """Holding the sentence to what greedy decoding states anyway changes nothing of it: the mask only forbids."""
    model, tokenizer, values, observed, weekday = committed
    greedy = [decode(tokenizer, row) for row in model.generate_captions(values, observed, weekday, max_tokens=90)]
    kinds = [dict(stated_kinds(caption)) for caption in greedy]
    held = grounded_captions(model, tokenizer, values, observed, weekday, kinds, max_tokens=90)
    for mine, its_own, allowed in zip(held, greedy, kinds, strict=True):
        if allowed:  # a day greedy writes "No exercise ..." for reads the same, other days up to the first "."
            assert mine.split(". ")[0] == its_own.split(". ")[0]


def test_a_constraint_forces_the_opening_and_forbids_a_second_activities_sentence(committed):
    _, tokenizer, *_ = committed
    constraint = ActivitySentence(tokenizer, [{"run": 1}, {}])
    logits = constraint(torch.full((2, 1), tokenizer.token_to_id("[CLS]")), torch.zeros(2, tokenizer.get_vocab_size()))
    assert logits[0].argmax() == tokenizer.token_to_id("activities") and torch.isfinite(logits[0]).sum() == 1
    assert logits[1].argmax() == tokenizer.token_to_id("no") and torch.isfinite(logits[1]).sum() == 1


def test_a_threshold_is_the_lowest_whose_detections_are_right_often_enough():
    probabilities = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    present = np.array([True, True, False, True, False, False])
    assert precise_threshold(probabilities, present, 0.75) == 0.6  # 3 of the first 4
    assert precise_threshold(probabilities, present, 1.0) == 0.8
    assert precise_threshold(probabilities, ~present, 0.9) == float("inf")


def test_the_detector_finds_a_separable_kind_and_states_it_as_often_as_days_hold_it():
    rng = np.random.default_rng(0)
    commuting = rng.random(200) < 0.4
    embeddings = rng.normal(size=(200, 8))
    embeddings[:, 0] += np.where(commuting, 3.0, -3.0)
    detector = fit_activity_detector(
        embeddings=embeddings,
        truths=[COMMUTE if day else REST for day in commuting],
        groups=np.arange(200) // 4,  # 50 participants of 4 days
        precision=0.9,
    )
    assert set(detector.probes) == {"commute_walk"} and detector.counts == {"commute_walk": 2}
    new = rng.normal(size=(2, 8))
    new[:, 0] = [4.0, -4.0]
    assert detector.detect(new) == [{"commute_walk": 2}, {}]


@pytest.mark.slow
def test_the_evaluation_scores_each_decoding(loaded):
    model, tokenizer, mean, std = loaded
    settings = EvaluationSettings(participants=24, days=2, seed=4321, caption_days=4, caption_samples=2)
    evaluation = prepare(model, mean, std, settings, DEMO_MODEL)  # the committed model's tagger too
    result = caption_scores(evaluation, model, tokenizer, mean, std, settings)
    methods = [GREEDY, RERANKED, *(GROUNDED.format(precision=precision) for precision in DETECTION_PRECISIONS), TAGGED]
    for method in methods:
        assert result[method]["facts"]["days"] == 4 and 0 <= result[method]["bleu"] <= 100
    for precision in DETECTION_PRECISIONS:
        thresholds = result[GROUNDED.format(precision=precision)]["detector"]["thresholds"]
        assert all(value > 0 for value in thresholds.values())
    assert set(result["examples"][0]) == {"reference", *methods}
    table = captioning_table(result)
    assert [row[0] for row in table["rows"]][-len(methods) :] == methods and "2 captions sampled" in table["summary"]
