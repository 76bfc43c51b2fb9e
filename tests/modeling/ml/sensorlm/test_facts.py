"""Captions judged on facts: the reader recovers the simulator's events from the captioner's words, and the scores
count a wrong activity, a missed one and a wrong time."""

import pytest

from modeling.ml.data.activities import ACTIVITY_NAMES
from modeling.ml.sensorlm.facts import StatedActivity, fact_scores, stated_facts
from modeling.ml.sensorlm.train import captioned_days


@pytest.fixture(scope="module")
def days():
    return captioned_days(participants=12, days=2, seed=11)


def test_reading_a_reference_caption_gives_back_the_days_activities_and_night(days):
    captions = days.captions()
    checked = 0
    for caption, events in zip(captions, days.events, strict=True):
        facts = stated_facts(caption)
        true = sorted(
            (event.name, event.duration_min, event.start_minute)
            for event in events
            if event.name in ACTIVITY_NAMES and event.start_minute >= 0
        )
        read = sorted((activity.kind, activity.duration_min, activity.start_minute) for activity in facts.activities)
        assert read == true
        nights = [event for event in events if event.name == "sleep" and event.start_minute < 12 * 60]
        if nights:
            night = max(nights, key=lambda event: event.duration_min)
            assert facts.sleep_hours == pytest.approx(night.duration_min / 60, abs=0.051)
        checked += len(true)
    assert checked >= 5  # the simulated days hold activities to check


def test_lowercased_text_reads_the_same_as_the_caption():
    caption = (
        "Activities: a 134-minute hike in the morning at 09:01, an 18-minute commute walk in the evening at 17:40. "
        "Slept 8.7 hours (normal night) from 23:34 to 08:13, consolidated sleep with 4 awakenings. No stress episodes."
    )
    facts = stated_facts(caption)
    assert facts.activities == (
        StatedActivity("hike", 134, 9 * 60 + 1),
        StatedActivity("commute_walk", 18, 17 * 60 + 40),
    )
    assert (facts.sleep_hours, facts.awakenings) == (8.7, 4)
    assert stated_facts(caption.lower()) == facts


def test_a_caption_without_activities_states_none_and_garbled_times_are_kept_without_a_time():
    assert stated_facts("No exercise or commute recorded. No night sleep recorded.").activities == ()
    assert stated_facts("no exercise or commute recorded.").sleep_hours is None
    garbled = stated_facts("activities: a 20-minute commute walk in the morning at 107:0. slept 7.5 hours")
    assert garbled.activities == (StatedActivity("commute_walk", 20, None),)


def test_scores_count_a_wrong_kind_a_missed_activity_and_the_time_errors():
    truth = (
        "Activities: a 134-minute hike in the morning at 09:01. "
        "Slept 8.7 hours (normal night) from 23:34 to 08:13, consolidated sleep with 4 awakenings."
    )
    right = "activities: a 120-minute hike in the morning at 09:31. slept 8.2 hours (normal night), consolidated sleep with 2 awakenings."
    wrong = (
        "activities: a 20-minute commute walk in the morning at 08:41, a 20-minute commute walk in the evening at 17:07. "
        "slept 7.5 hours (normal night), fragmented sleep with 10 awakenings."
    )
    scores = fact_scores([right, wrong], [truth, truth])
    assert (scores["activities_stated"], scores["activities_true"], scores["activities_matched"]) == (3, 2, 1)
    assert scores["activity_precision"] == pytest.approx(1 / 3)
    assert scores["activity_recall"] == pytest.approx(1 / 2)
    assert scores["days_without_false_activity"] == pytest.approx(1 / 2)
    assert scores["start_error_min_median"] == 30
    assert scores["duration_error_min_median"] == 14
    assert scores["sleep_hours_error_median"] == pytest.approx((0.5 + 1.2) / 2)
    assert scores["awakenings_error_median"] == 4
    perfect = fact_scores([truth], [truth])
    assert (perfect["activity_precision"], perfect["activity_recall"], perfect["days_without_false_activity"]) == (
        1.0,
        1.0,
        1.0,
    )


def test_a_kind_stated_twice_is_matched_to_its_occurrences_by_the_closest_times():
    truth = "Activities: a 20-minute commute walk in the morning at 08:00, a 25-minute commute walk in the evening at 17:00."
    said = "activities: a 25-minute commute walk in the evening at 17:10, a 20-minute commute walk in the morning at 08:05."
    scores = fact_scores([said], [truth])
    assert scores["activities_matched"] == 2
    assert scores["start_error_min_median"] == 7.5
    assert scores["duration_error_min_median"] == 0
