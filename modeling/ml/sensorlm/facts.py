"""Captions judged on facts: what a caption states about the day, checked against what happened.

A caption's semantic sentences state the day's activities (kind, duration, clock time) and its night (hours
asleep, when, awakenings). :func:`stated_facts` reads them back from any caption written in the captioner's
words (a reference, a generated or a retrieved one; any case, as the tokenizer normalizes it), and
:func:`fact_scores` compares a set of captions with the days' ground truth:

- stated activities: precision (stated activities that happened that day, matched by kind) and recall
  (activities that happened and are stated), over all days; and the share of days on which no stated
  activity is one that did not happen;
- for every matched activity, the absolute error of its stated start time and duration (minutes); a kind
  stated twice is matched to its occurrences by the closest start times;
- the stated sleep's length (hours) and awakenings against the truth's, on days where both state a night.

The ground truth is the day's own reference caption, read by the same reader: the captioner writes it from the
simulator's event log and sleep stages (``captions.caption_day``), so reading it back gives those events
exactly (``tests/modeling/ml/sensorlm/test_facts.py`` checks that on simulated days). BLEU and ROUGE only
count shared words: "a 20-minute commute walk" for a 134-minute hike shares most of its words with the truth.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from modeling.ml.data.activities import ACTIVITY_NAMES
from modeling.ml.sensorlm.captions import NO_ACTIVITIES, activity_words

KINDS_BY_WORDS = {activity_words(name): name for name in ACTIVITY_NAMES}
# "a 134-minute hike in the morning at 09:01": the kind is whatever words stand between the duration and "in the"
_ACTIVITY = re.compile(r"(\d+)-minute ([a-z][a-z ]*?) in the (?:morning|afternoon|evening|night) at (\d{1,2}):(\d{2})")
_ACTIVITY_LOOSE = re.compile(r"(\d+)-minute ([a-z][a-z ]*?) in the ")  # a stated activity whose time is garbled
_SLEEP = re.compile(r"slept (\d+(?:\.\d+)?) hours")
_AWAKENINGS = re.compile(r"sleep with (\d+) awakenings?")


@dataclass(frozen=True)
class StatedActivity:
    kind: str  # an activity name of the simulator, or the caption's own words where they name none
    duration_min: int
    start_minute: int | None  # minutes after midnight; None where the stated time is not a clock time


@dataclass(frozen=True)
class StatedFacts:
    activities: tuple[StatedActivity, ...]
    sleep_hours: float | None
    awakenings: int | None
    activity_sentence: bool = False  # the caption says what activities the day held ("none" included): an event log


def stated_facts(caption: str) -> StatedFacts:
    """The activities, sleep length and awakenings a caption states (none of them where it states none)."""
    text = " ".join(caption.lower().split())
    activities = []
    sentence = re.search(r"activities: (.*?)(?:\.\s|\.$|$)", text)
    for part in sentence.group(1).split(", a") if sentence else []:
        exact = _ACTIVITY.search(part)
        loose = exact or _ACTIVITY_LOOSE.search(part + " ")
        if not loose:
            continue
        words = loose.group(2).strip()
        start = None
        if exact and int(exact.group(3)) < 24 and int(exact.group(4)) < 60:
            start = 60 * int(exact.group(3)) + int(exact.group(4))
        activities.append(StatedActivity(KINDS_BY_WORDS.get(words, words), int(loose.group(1)), start))
    sleep = _SLEEP.search(text)
    awakenings = _AWAKENINGS.search(text)
    return StatedFacts(
        tuple(activities),
        float(sleep.group(1)) if sleep else None,
        int(awakenings.group(1)) if awakenings else None,
        bool(sentence) or NO_ACTIVITIES.lower().rstrip(".") in text,
    )


def _start_gap(stated: StatedActivity, true: StatedActivity) -> float:
    """Minutes between two start times; a stated activity without a clock time is matched last."""
    if true.start_minute is None:
        return 0.0
    if stated.start_minute is None:
        return float(24 * 60)
    return float(abs(stated.start_minute - true.start_minute))


def _matches(stated: Sequence[StatedActivity], true: Sequence[StatedActivity]) -> list[tuple[int, int]]:
    """Pairs (stated index, true index) of the same kind, each used once, closest start times first."""
    pairs = []
    for kind in {activity.kind for activity in stated} & {activity.kind for activity in true}:
        rows = [i for i, activity in enumerate(stated) if activity.kind == kind]
        columns = [j for j, activity in enumerate(true) if activity.kind == kind]
        cost = np.array([[_start_gap(stated[i], true[j]) for j in columns] for i in rows])
        for r, c in zip(*linear_sum_assignment(cost), strict=True):
            pairs.append((rows[r], columns[c]))
    return pairs


def fact_scores(captions: Sequence[str], truths: Sequence[str]) -> dict[str, Any]:
    """Scores of ``captions`` against the facts of ``truths`` (each day's reference caption), pooled over days."""
    stated_total = true_total = matched_total = clean_days = true_nights = 0
    start_errors: list[float] = []
    duration_errors: list[float] = []
    sleep_errors: list[float] = []
    awakening_errors: list[float] = []
    for caption, truth in zip(captions, truths, strict=True):
        said, real = stated_facts(caption), stated_facts(truth)
        pairs = _matches(said.activities, real.activities)
        stated_total += len(said.activities)
        true_total += len(real.activities)
        matched_total += len(pairs)
        real_kinds = {activity.kind for activity in real.activities}
        clean_days += all(activity.kind in real_kinds for activity in said.activities)
        for i, j in pairs:
            stated, true = said.activities[i], real.activities[j]
            duration_errors.append(abs(stated.duration_min - true.duration_min))
            if stated.start_minute is not None and true.start_minute is not None:
                start_errors.append(abs(stated.start_minute - true.start_minute))
        true_nights += real.sleep_hours is not None
        if said.sleep_hours is not None and real.sleep_hours is not None:
            sleep_errors.append(abs(said.sleep_hours - real.sleep_hours))
        if said.awakenings is not None and real.awakenings is not None:
            awakening_errors.append(abs(said.awakenings - real.awakenings))

    def median(values: list[float]) -> float | None:
        return float(np.median(values)) if values else None

    return {
        "days": len(captions),
        "activities_stated": stated_total,
        "activities_true": true_total,
        "activities_matched": matched_total,
        "activity_precision": matched_total / stated_total if stated_total else None,
        "activity_recall": matched_total / true_total if true_total else None,
        "days_without_false_activity": clean_days / len(captions) if captions else None,
        "start_error_min_median": median(start_errors),
        "duration_error_min_median": median(duration_errors),
        "sleep_hours_error_median": median(sleep_errors),
        "awakenings_error_median": median(awakening_errors),
        "nights_stated": len(sleep_errors) / true_nights if true_nights else None,  # of the true nights
    }
