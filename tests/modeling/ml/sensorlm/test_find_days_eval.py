"""Find days measured: labelled queries from the days' ground truth, scored alike for every ranking method."""

from pathlib import Path

import numpy as np
import pytest
import torch

from modeling.ml.sensorlm.evaluate import EvaluationSettings, evaluate
from modeling.ml.sensorlm.find_days_eval import METHODS, _recall_and_reciprocal_rank, labelled_queries

DEMO_MODEL = Path(__file__).resolve().parents[4] / "modeling" / "demo_weights" / "sensorlm"

TRUTHS = [
    "Activities: a 134-minute hike in the morning at 09:01. Slept 8.7 hours (normal night) from 23:34 to 08:13, "
    "consolidated sleep with 4 awakenings.",
    "Activities: a 20-minute commute walk in the morning at 08:10, a 25-minute commute walk in the evening at 17:30. "
    "Slept 5.2 hours (short night) from 01:10 to 06:22, fragmented sleep with 9 awakenings.",
    "No exercise or commute recorded. Slept 9.5 hours (long night) from 22:30 to 08:00, consolidated sleep with "
    "2 awakenings.",
]


def test_queries_and_their_relevant_days_come_from_the_ground_truth():
    queries = {query.text: query for query in labelled_queries(TRUTHS)}
    assert queries["a hike"].relevant.tolist() == [True, False, False]
    assert queries["a long hike"].relevant.tolist() == [True, False, False]
    assert queries["a hike in the morning"].relevant.tolist() == [True, False, False]
    assert "a hike in the evening" not in queries  # no relevant day: not asked
    assert "a long commute walk" not in queries  # 20 and 25 minutes are not long bouts
    assert queries["a commute walk in the evening"].relevant.tolist() == [False, True, False]
    assert queries["a short night"].relevant.tolist() == [False, True, False]  # its own words, not 6.0 h rounded
    assert queries["a long night"].relevant.tolist() == [False, False, True]
    assert queries["fragmented sleep"].relevant.tolist() == [False, True, False]


def test_recall_at_5_counts_relevant_days_among_the_first_five_of_at_most_five():
    relevant = np.array([False] * 6 + [True] * 2)
    score = np.arange(8, dtype=float)  # the two relevant days rank first and second
    assert _recall_and_reciprocal_rank(score, relevant) == (1.0, 1.0)
    assert _recall_and_reciprocal_rank(-score, relevant) == (0.0, 1 / 7)
    many = np.array([True] * 8)
    assert _recall_and_reciprocal_rank(score, many) == (1.0, 1.0)  # five of five, though eight are relevant


@pytest.mark.slow
def test_the_evaluation_scores_find_days_and_the_facts_of_captions(tmp_path):
    result = evaluate(
        DEMO_MODEL,
        EvaluationSettings(participants=16, days=2, seed=4321, bootstrap=20, caption_days=10, retrieval_pool=8),
    )
    find_days = result["find_days"]
    assert find_days["queries"] >= 5 and set(find_days["methods"]) == set(METHODS)
    for scores in find_days["methods"].values():
        assert 0.0 <= scores["recall_at_5"] <= 1.0 and scores["recall_at_5_ci"][0] <= scores["recall_at_5"]
    # a lexical method reads the words the truth is written in: it cannot miss every query
    assert find_days["methods"]["bm25"]["recall_at_5"] > 0.5
    facts = result["captioning"]["nearest caption by hand-crafted statistics"]["facts"]
    assert facts["days"] == 10 and facts["activities_true"] > 0
    retrieval = result["retrieval"]
    assert retrieval["candidates"] == 8 and retrieval["pools"] == 20
    assert retrieval["chance_r@1"] == pytest.approx(1 / 8)


def test_bm25_counts_a_word_most_captions_hold_for_the_day_and_compares_across_indexes():
    """Okapi BM25 gives a word held by most captions a negative weight: "morning" then counted against a morning hike."""
    from modeling.ml.sensorlm.find_days import DayIndex, bm25_share
    from modeling.ml.sensorlm.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(DEMO_MODEL)
    captions = [
        "Activities: a 60-minute hike in the morning at 09:00. Stress score stays level from 50 in the morning.",
        "Activities: a 30-minute run in the evening at 18:00. Stress score stays level from 50 in the morning.",
        "No exercise or commute recorded. Stress score stays level from 50 in the morning.",
        "No exercise or commute recorded. Stress score stays level from 52 in the morning.",
    ]

    def index(texts):
        return DayIndex(
            np.zeros((len(texts), 4), np.float32), np.arange(len(texts)), np.zeros(len(texts)), np.array(texts)
        )

    share = bm25_share(tokenizer, index(captions), "a hike in the morning")
    assert share.argmax() == 0 and share[0] > share[1] >= 0
    assert bm25_share(tokenizer, index(captions), "<script>").tolist() == [0.0] * 4
    # the unit is a caption holding each word once, not the best day of the index: an index without a hike day
    # does not put its best "morning" day at the hike day's score
    other = bm25_share(tokenizer, index(captions[1:]), "a hike in the morning")
    assert other.max() < share[0]


def test_without_queries_the_scores_have_no_intervals_and_the_table_still_renders():
    from modeling.ml.sensorlm.find_days import DayIndex
    from modeling.ml.sensorlm.find_days_eval import find_days_scores

    result = find_days_scores(
        None,
        None,
        DayIndex(np.zeros((1, 4), np.float32), np.zeros(1), np.zeros(1), np.array(["x"])),
        ["No exercise or commute recorded."],
    )
    assert result["queries"] == 0
    assert result["methods"]["bm25"]["recall_at_5"] is None and result["methods"]["bm25"]["recall_at_5_ci"] is None


def test_a_query_s_activity_part_of_day_and_long_bout_are_checked_against_what_captions_state():
    from modeling.ml.sensorlm.find_days import ActivityQuery, DayIndex, activity_query, facts_share

    assert activity_query("a long hike") == ActivityQuery("hike", None, True)
    assert activity_query("A commute walk in the evening") == ActivityQuery("commute_walk", "evening", False)
    assert activity_query("a walk") == ActivityQuery("walk", None, False)
    assert activity_query("fragmented sleep") is None
    assert activity_query("Walking in the morning!") == ActivityQuery("walk", "morning", False)
    assert activity_query("hiking") == ActivityQuery("hike", None, False)
    # a night's length is the night's, not the activity's
    assert activity_query("a run after a long night") == ActivityQuery("run", None, False)
    assert activity_query("a long run after a short night") == ActivityQuery("run", None, True)
    index = DayIndex(np.zeros((3, 4), np.float32), np.arange(3), np.zeros(3), np.array(TRUTHS))
    # the hike day meets kind and length; the others have no hike
    assert facts_share(index, activity_query("a long hike")).tolist() == [1.0, 0.0, 0.0]
    # the commute day's evening walk meets both conditions; its morning walk alone would meet one of two
    assert facts_share(index, activity_query("a commute walk in the evening")).tolist() == [0.0, 1.0, 0.0]
    assert facts_share(index, activity_query("a commute walk in the afternoon")).tolist() == [0.0, 0.5, 0.0]
    assert facts_share(index, None).tolist() == [0.0, 0.0, 0.0]


def test_the_page_ranks_a_long_hike_above_long_nights_and_morning_walks_above_evening_ones():
    from modeling.ml.sensorlm.find_days import DayIndex, rank_days
    from modeling.ml.sensorlm.model import load_sensorlm

    model, tokenizer, _, _ = load_sensorlm(DEMO_MODEL)
    captions = [
        "No exercise or commute recorded. Slept 9.5 hours (long night) from 22:30 to 08:00, consolidated sleep with 2 "
        "awakenings. Stress score stays level from 50 in the morning.",
        "Activities: a 30-minute hike in the morning at 09:00. Slept 9.4 hours (long night) from 22:30 to 07:54.",
        TRUTHS[0],  # a 134-minute hike in the morning
        "Activities: a 25-minute commute walk in the evening at 17:30. Stress score stays level from 50 in the morning.",
        TRUTHS[1],  # commute walks in the morning and in the evening
    ]
    index = DayIndex(
        np.tile(np.eye(1, model.config.embed_dim, dtype=np.float32), (5, 1)),
        np.arange(5),
        np.zeros(5),
        np.array(captions),
    )
    assert rank_days(model, tokenizer, index, "a long hike", 1)[0].row == 2
    assert rank_days(model, tokenizer, index, "a commute walk in the morning", 1)[0].row == 4


def test_without_an_event_log_the_model_s_zero_shot_probability_stands_in_for_the_stated_activity():
    from modeling.ml.sensorlm.find_days import DayIndex, activity_query, rank_days, zero_shot_share
    from modeling.ml.sensorlm.model import load_sensorlm

    model, tokenizer, _, _ = load_sensorlm(DEMO_MODEL)
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(4, model.config.embed_dim)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    shapes_only = np.array(["Heart rate steps up from 60 to 80 bpm around 08:30."] * 4)
    index = DayIndex(embeddings, np.arange(4), np.zeros(4), shapes_only)
    assert not index.has_event_log.any()
    probability = zero_shot_share(model, tokenizer, index, activity_query("a run"))
    assert ((probability > 0) & (probability < 1)).all()
    ranked = rank_days(model, tokenizer, index, "a run", 4)
    assert sorted(day.row for day in ranked) == [0, 1, 2, 3]
    for day in ranked:  # the model's probability stands where a stated activity would
        assert day.stated == pytest.approx(probability[day.row])
    with_log = DayIndex(embeddings[:3], np.arange(3), np.zeros(3), np.array(TRUTHS))
    assert with_log.has_event_log.all()  # "No exercise or commute recorded." says so too


def test_a_participant_without_an_event_log_gets_no_sentence_about_events_and_the_index_knows_it():
    """Without an event log, "No exercise or commute recorded" would state what nobody recorded."""
    from modeling.ml.sensorlm.captions import caption_days
    from modeling.ml.sensorlm.find_days import build_index
    from modeling.ml.sensorlm.model import load_sensorlm
    from modeling.ml.sensorlm.train import captioned_days

    days = captioned_days(participants=2, days=1, seed=5)
    values, mask = days.values[:1], days.observed[:1]
    without = caption_days(values, mask, [], ("semantic", "structural"))[0]
    assert "exercise" not in without.lower() and "slept" not in without.lower() and without
    with_log_but_none_today = caption_days(values, mask, [], ("semantic", "structural"), event_log=True)[0]
    assert with_log_but_none_today.startswith("No exercise or commute recorded.")
    model, _, mean, std = load_sensorlm(DEMO_MODEL)
    index = build_index(model, mean, std, [(1, values, mask, [], 0, 0)])
    assert len(index) == 1 and not index.has_event_log.any() and not index.read_by_model.any()


def test_without_an_event_log_the_model_s_tagger_writes_the_activities_and_the_index_marks_them(tmp_path, monkeypatch):
    """With the model's activity tagger, a participant without an event log gets the activities the tagger reads,
    stated as the captioner states them, and the index marks those days; a participant with a log keeps its own."""
    from modeling.ml.sensorlm.captions import READER_LEVELS, activities_sentence, caption_days
    from modeling.ml.sensorlm.find_days import build_index, load_index, save_index
    from modeling.ml.sensorlm.model import load_sensorlm
    from modeling.ml.sensorlm.tagging import load_tagger, slot_tokens
    from modeling.ml.sensorlm.train import captioned_days, standardized

    days = captioned_days(participants=4, days=1, seed=5)
    model, _, mean, std = load_sensorlm(DEMO_MODEL)
    tagger = load_tagger(DEMO_MODEL)
    logged = [(2, days.values[1:2], days.observed[1:2], days.events[1], 0, 0)]
    unlogged = [(1, days.values[:1], days.observed[:1], [], 0, 0)]
    index = build_index(model, mean, std, unlogged + logged, tagger)
    read = tagger.activities(
        slot_tokens(
            model, *standardized(days.subset(np.array([0])), mean.numpy(), std.numpy()), torch.tensor(days.weekday[:1])
        )
    )[0]
    assert read, "the first day holds activities the tagger reads"
    assert list(index.read_by_model) == [True, False] and index.has_event_log.all()
    from_data = caption_days(days.values[:1], days.observed[:1], [], READER_LEVELS)[0]  # no event log: shapes only
    assert index.captions[0] == f"{activities_sentence(read)} {from_data}" and "exercise" not in from_data.lower()
    # a day the tagger reads nothing on keeps its caption of shapes, and the search reads it by similarity
    rest = build_index(model, mean, std, [(3, days.values[:1], days.observed[:1], [], 0, 0)], None)
    assert not rest.read_by_model.any() and not rest.has_event_log.any()
    # the tagged days' embeddings are the ones their tokens were read with, the tower run once for both: three days
    # in one batch, each with its own gaps, so the tower pads the shorter ones
    three = captioned_days(participants=1, days=3, seed=6)
    values, observed = three.values.copy(), three.observed.copy()
    observed[0, :, :300] = observed[1, :, 600:1200] = False
    assert len({int(day.sum()) for day in observed}) == 3
    plain = build_index(model, mean, std, [(3, values, observed, [], 0, 0)], None)
    encode, passes = model.sensor.encode, []
    monkeypatch.setattr(model.sensor, "encode", lambda *args: passes.append(1) or encode(*args))
    both = build_index(model, mean, std, [(3, values, observed, [], 0, 0)], tagger)
    np.testing.assert_allclose(both.embeddings, plain.embeddings, atol=1e-5)
    assert len(passes) == 1  # one batch of three days
    assert index.captions[1] == caption_days(days.values[1:2], days.observed[1:2], days.events[1], READER_LEVELS)[0]
    save_index(index, tmp_path / "days.npz")
    assert list(load_index(tmp_path / "days.npz").read_by_model) == [True, False]
    np.savez_compressed(  # an index saved before the tagger: no day was read by a model
        tmp_path / "old.npz",
        embeddings=index.embeddings,
        participant_ids=index.participant_ids,
        day_indices=index.day_indices,
        captions=index.captions,
    )
    assert load_index(tmp_path / "old.npz").read_by_model is None
