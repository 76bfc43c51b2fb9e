"""The hierarchical captioner: deterministic, worded as specified, levels selectable, empty days handled."""

import numpy as np
import pytest

from modeling.ml.data.cohort import make_cohort
from modeling.ml.data.spec import FEATURE_INDEX, NUM_FEATURES
from modeling.ml.sensorlm.captions import (
    LEVELS,
    NO_DATA,
    DayEvent,
    caption_day,
    caption_days,
    events_of_day,
    main_activity,
)


def quiet_day() -> np.ndarray:
    """(channels, 1440) a flat, fully observed day with a resting heart rate of 62 bpm."""
    values = np.full((NUM_FEATURES, 1440), 1.0, dtype=np.float32)
    values[FEATURE_INDEX["heart_rate"]] = 62.0
    values[FEATURE_INDEX["steps"]] = 0.0
    return values


def test_a_heart_rate_climb_is_worded_with_its_levels_time_and_recovery():
    values = quiet_day()
    heart_rate = values[FEATURE_INDEX["heart_rate"]]
    heart_rate[430:470] = 148.0  # 07:10 to 07:50 at 148 bpm, then straight back to rest
    caption = caption_day(values, [DayEvent("run", 430, 470)], levels=("structural",))
    assert "Heart rate climbs from 62 to 148 bpm at 07:" in caption
    assert "settles within 5 minutes" in caption


def test_semantic_level_names_activities_sleep_and_stress_with_clock_times():
    values = quiet_day()
    values[FEATURE_INDEX["sleep_stage"], :420] = 1.0
    values[FEATURE_INDEX["sleep_stage"], 420:] = 0.0
    events = [DayEvent("sleep", -60, 420), DayEvent("run", 430, 470), DayEvent("stress", 900, 930)]
    caption = caption_day(values, events, levels=("semantic",))
    assert caption.startswith("Activities: a 40-minute run in the morning at 07:10.")
    assert "Slept 8.0 hours (normal night) from 23:00 to 07:00" in caption
    assert "1 stress episode (30 minutes in total)" in caption
    assert "Heart rate" not in caption


def test_levels_are_selectable_and_joined_semantic_first():
    cohort = make_cohort(participants=1, days=2, seed=4, history_days=2)
    minutes = cohort.participant(0).minutes
    (full,) = caption_days(minutes.values[1:], minutes.mask[1:], minutes.events, LEVELS, first_day=1)
    parts = {
        level: caption_days(minutes.values[1:], minutes.mask[1:], minutes.events, (level,), first_day=1)[0]
        for level in LEVELS
    }
    assert full == " ".join(parts[level] for level in LEVELS)
    assert full.index(parts["semantic"]) == 0 and "mean" in parts["statistical"] and "mean" not in parts["semantic"]
    with pytest.raises(ValueError):
        caption_day(minutes.values[0], [], levels=("poetry",))


def test_captions_are_deterministic():
    first = make_cohort(participants=2, days=3, seed=9, history_days=3).participant(1).minutes
    second = make_cohort(participants=2, days=3, seed=9, history_days=3).participant(1).minutes
    assert caption_days(first.values, first.mask, first.events) == caption_days(
        second.values, second.mask, second.events
    )


def test_a_day_without_data_says_so_and_events_are_cut_per_day():
    values = np.full((NUM_FEATURES, 1440), np.nan, dtype=np.float32)
    assert caption_day(values, [DayEvent("walk", 100, 130)]) == NO_DATA
    events = [DayEvent("walk", 1440 + 100, 1440 + 130), DayEvent("sleep", 1300, 1440 + 400)]
    day_one = events_of_day(events, 1)
    assert DayEvent("walk", 100, 130) in day_one and DayEvent("sleep", -140, 400) in day_one
    assert main_activity(day_one) == "walk" and main_activity(events_of_day(events, 2)) is None
