"""The activity tagger: slot labels from the event log, runs of slots as activities, the precision threshold, the saved
head, and captions whose first sentence states the tagged activities."""

from pathlib import Path

import numpy as np
import pytest
import torch

from modeling.ml.data.activities import ACTIVITY_NAMES
from modeling.ml.sensorlm.captions import NO_ACTIVITIES, DayEvent, activities_sentence, caption_day, stated_activities
from modeling.ml.sensorlm.facts import fact_scores, stated_facts
from modeling.ml.sensorlm.model import load_sensorlm
from modeling.ml.sensorlm.tagging import (
    NONE,
    TAGGER_DESCRIPTION,
    TAGGER_WEIGHTS,
    FirstSentence,
    TaggedActivity,
    activity_runs,
    choose_threshold,
    fit_tagger,
    load_tagger,
    remove_tagger,
    save_tagger,
    slot_labels,
    slot_probabilities,
    slot_tokens,
    tagged_captions,
    train_tagger,
)
from modeling.ml.sensorlm.train import captioned_days, standardized

DEMO_MODEL = Path(__file__).resolve().parents[4] / "modeling" / "demo_weights" / "sensorlm"
RUN, WALK = ACTIVITY_NAMES.index("run") + 1, ACTIVITY_NAMES.index("walk") + 1


def test_the_activities_sentence_is_the_captioner_s():
    events = [DayEvent("hike", 541, 675), DayEvent("commute_walk", 1050, 1068), DayEvent("sleep", -60, 420)]
    caption = caption_day(np.zeros((27, 1440)), events, ("semantic",))
    sentence = activities_sentence([event for event in events if event.name != "sleep"])
    assert caption.startswith(sentence)
    assert (
        sentence
        == "Activities: a 134-minute hike in the morning at 09:01, an 18-minute commute walk in the evening at 17:30."
    )
    assert activities_sentence([]) == NO_ACTIVITIES


def test_a_slot_takes_the_activity_covering_most_of_it():
    days = [
        [DayEvent("run", 600, 645), DayEvent("sleep", -120, 400)],  # 10:00-10:45: slots 60-63 and half of 64
        [DayEvent("stairs", 723, 727), DayEvent("walk", 1435, 1500), DayEvent("walk", -30, 20)],
    ]
    labels = slot_labels(days, 10)
    assert labels.shape == (2, 144)
    assert list(np.flatnonzero(labels[0])) == [60, 61, 62, 63, 64] and set(labels[0][60:65]) == {RUN}
    # 4 minutes of stairs fill half of themselves in slot 72; a walk past midnight labels the day's last slot; a walk
    # that began the day before is not the day's (its caption does not state it)
    assert labels[1][72] == ACTIVITY_NAMES.index("stairs") + 1 and labels[1][143] == WALK
    assert list(np.flatnonzero(labels[1])) == [72, 143]
    assert slot_labels([[DayEvent("run", 600, 603)]], 10)[0][60] == RUN  # 3 of 3 minutes: its slot
    assert slot_labels([[DayEvent("run", 606, 620)]], 10)[0][60] == NONE  # 4 of 10 minutes, 4 of 14: not half


def probabilities_of(labels: list[int], confidence: list[float]) -> np.ndarray:
    """(1, slots, 1 + kinds): each slot's label at its confidence, the rest spread over no activity."""
    slots = np.zeros((1, len(labels), len(ACTIVITY_NAMES) + 1))
    for slot, (label, value) in enumerate(zip(labels, confidence, strict=True)):
        slots[0, slot, NONE] = 1 - value if label else value
        if label:
            slots[0, slot, label] = value
    return slots


def test_runs_of_one_kind_are_one_activity_across_a_slot_of_doubt():
    labels = [0, RUN, RUN, 0, RUN, 0, 0, WALK, WALK, RUN]
    confidence = [0.9, 0.6, 0.8, 0.7, 0.55, 0.9, 0.9, 0.95, 0.7, 0.99]
    runs = activity_runs(probabilities_of(labels, confidence), 10)[0]
    assert [run.event for run in runs] == [
        DayEvent("run", 10, 50),  # slots 1-4: the 0 at slot 3 is a slot of doubt
        DayEvent("walk", 70, 90),
        DayEvent("run", 90, 100),  # another kind between: another run
    ]
    assert [run.confidence for run in runs] == [0.8, 0.95, 0.99]
    assert activity_runs(probabilities_of([RUN, 0, 0, RUN], [0.9] * 4), 10)[0][1].event == DayEvent("run", 30, 40)


def test_the_threshold_is_the_lowest_whose_stated_activities_are_right_often_enough():
    truth = activities_sentence([DayEvent("run", 600, 640)])
    right = TaggedActivity(DayEvent("run", 600, 640), 0.9)
    wrong = TaggedActivity(DayEvent("swim", 900, 940), 0.6)
    doubtful = TaggedActivity(DayEvent("yoga", 1000, 1040), 0.45)
    runs = [[right, wrong, doubtful]] * 3 + [[TaggedActivity(DayEvent("run", 600, 640), 0.55)]]
    threshold, scores = choose_threshold(runs, [truth] * 4, precision=0.95)
    assert threshold == 0.61 and scores["activity_precision"] == 1.0 and scores["activity_recall"] == 0.75
    threshold, scores = choose_threshold(runs, [truth] * 4, precision=0.5)  # every run right or wrong: 4 of 7
    assert threshold == 0.46 and scores["activity_precision"] == pytest.approx(4 / 7)
    threshold, scores = choose_threshold([[wrong]], [truth], precision=0.9)
    assert threshold is None and scores["activities_stated"] == 0  # never right enough: it states nothing


def planted(days: int, seed: int) -> tuple[torch.Tensor, list[list[DayEvent]]]:
    """Tokens whose first feature rises during a run and second during a walk, in noise; each day one of either."""
    rng = np.random.default_rng(seed)
    tokens = rng.normal(size=(days, 144, 8)).astype(np.float32)
    events = []
    for day in range(days):
        kind, start = ("run", "walk")[day % 2], int(rng.integers(30, 120))
        tokens[day, start : start + 4, day % 2] += 6.0
        events.append([DayEvent(kind, start * 10, (start + 4) * 10)])
    return torch.tensor(tokens), events


def test_the_tagger_learns_where_an_activity_is_and_saves_whole(tmp_path):
    tokens, events = planted(320, 0)
    fitted = fit_tagger(
        tokens, events, fitting=np.arange(240), held_out=np.arange(240, 320), patch_minutes=10, epochs=20
    )
    assert fitted.description["held_out"]["activity_precision"] >= 0.95
    assert fitted.description["held_out"]["activity_recall"] >= 0.9
    new_tokens, new_events = planted(20, 1)
    found = [
        len(tagged) == 1
        and tagged[0].name == true[0].name
        and abs(tagged[0].start_minute - true[0].start_minute) <= 10
        and abs(tagged[0].duration_min - true[0].duration_min) <= 10
        for tagged, true in zip(fitted.activities(new_tokens), new_events, strict=True)
    ]
    assert sum(found) >= 18  # kind, start and length within a slot, on days it never saw
    save_tagger(fitted, tmp_path)
    loaded = load_tagger(tmp_path)
    assert loaded is not None and loaded.threshold == fitted.threshold
    assert np.array_equal(slot_probabilities(loaded.tagger, new_tokens), slot_probabilities(fitted.tagger, new_tokens))
    assert load_tagger(tmp_path / "elsewhere") is None


def test_training_reduces_the_tagging_loss():
    tokens, events = planted(64, 2)
    labels = slot_labels(events, 10)
    untrained = train_tagger(tokens, labels, epochs=0)
    trained = train_tagger(tokens, labels, epochs=10)

    def loss(tagger):
        with torch.no_grad():
            logits = tagger(tokens)
            return float(
                torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), torch.tensor(labels).reshape(-1)
                )
            )

    assert loss(trained) < 0.5 * loss(untrained)


@pytest.fixture(scope="module")
def committed():
    model, tokenizer, mean, std = load_sensorlm(DEMO_MODEL)
    days = captioned_days(participants=3, days=2, seed=4343)
    values, observed = standardized(days, mean.numpy(), std.numpy())
    return model, tokenizer, values, observed, torch.tensor(days.weekday)


def test_the_first_sentence_is_forced_then_no_second_activities_sentence(committed):
    _, tokenizer, *_ = committed
    sentence = "Activities: a 30-minute run in the morning at 07:10."
    constraint = FirstSentence(tokenizer, [sentence])
    forced = tokenizer.encode(sentence, add_special_tokens=False).ids
    ids = torch.tensor([[tokenizer.token_to_id("[CLS]"), *forced[:3]]])
    logits = constraint(ids, torch.zeros(1, tokenizer.get_vocab_size()))
    assert torch.isfinite(logits).sum() == 1 and logits[0].argmax() == forced[3]
    after = constraint(
        torch.tensor([[tokenizer.token_to_id("[CLS]"), *forced]]), torch.zeros(1, tokenizer.get_vocab_size())
    )
    assert not torch.isfinite(after[0, tokenizer.token_to_id("activities")]) and torch.isfinite(after).sum() > 100


def test_captions_state_the_tagged_activities_and_the_decoder_writes_on(committed):
    model, tokenizer, values, observed, weekday = committed
    activities = [[DayEvent("tennis", 1000, 1070), DayEvent("commute_cycle", 480, 505)], []] * 3
    captions = tagged_captions(model, tokenizer, values, observed, weekday, activities, max_tokens=90)
    for caption, day in zip(captions, activities, strict=True):
        stated = stated_facts(caption).activities
        assert [(activity.kind, activity.start_minute, activity.duration_min) for activity in stated] == [
            (event.name, event.start_minute, event.duration_min) for event in day
        ], caption
        assert caption.count("activities:") == (1 if day else 0) and len(caption.split(". ", 1)[1]) > 20


def test_slot_tokens_put_each_time_slot_s_channel_groups_side_by_side(committed):
    model, _, values, observed, weekday = committed
    tokens = slot_tokens(model, values, observed, weekday)
    config = model.config
    assert tokens.shape == (len(values), config.time_patches, config.channel_groups * config.dim)
    grid, _ = model.sensor.token_grid(values, observed, weekday)  # (days, groups x slots, dim), channel-major
    for group, slot in [(0, 0), (1, 50), (config.channel_groups - 1, config.time_patches - 1)]:
        side = tokens[:, slot, group * config.dim : (group + 1) * config.dim]
        assert torch.equal(side, grid[:, group * config.time_patches + slot])


def test_the_committed_tagger_finds_the_activities_of_new_days():
    """The committed model's tagger on 40 days of 20 new participants: the activities it states mostly happened,
    and it finds most of those that did (0.95 and 0.90 on 300 days of the benchmark's fresh seed)."""
    model, _, mean, std = load_sensorlm(DEMO_MODEL)
    days = captioned_days(participants=20, days=2, seed=4344)
    values, observed = standardized(days, mean.numpy(), std.numpy())
    fitted = load_tagger(DEMO_MODEL, model)
    assert fitted is not None
    tagged = fitted.activities(slot_tokens(model, values, observed, torch.tensor(days.weekday)))
    scores = fact_scores(
        [activities_sentence(day) for day in tagged],
        [activities_sentence(stated_activities(events)) for events in days.events],
    )
    assert scores["activities_true"] >= 20
    assert scores["activity_precision"] >= 0.8 and scores["activity_recall"] >= 0.7, scores


def test_a_tagger_is_saved_whole_over_another_and_a_wrong_one_is_refused(tmp_path, committed):
    tokens, events = planted(40, 3)
    first = fit_tagger(tokens, events, fitting=np.arange(30), held_out=np.arange(30, 40), patch_minutes=10, epochs=1)
    save_tagger(first, tmp_path)
    second = fit_tagger(tokens, events, fitting=np.arange(30), held_out=np.arange(30, 40), patch_minutes=10, epochs=3)
    save_tagger(second, tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [TAGGER_DESCRIPTION, TAGGER_WEIGHTS]  # no partial left
    loaded = load_tagger(tmp_path)
    assert np.array_equal(slot_probabilities(loaded.tagger, tokens), slot_probabilities(second.tagger, tokens))
    model = committed[0]
    with pytest.raises(ValueError, match="another sensor tower"):  # 8-wide tokens, not this tower's
        load_tagger(tmp_path, model)
    (tmp_path / TAGGER_WEIGHTS).unlink()
    with pytest.raises(ValueError, match="no weights"):
        load_tagger(tmp_path)
    remove_tagger(tmp_path)
    assert load_tagger(tmp_path) is None and not list(tmp_path.iterdir())
