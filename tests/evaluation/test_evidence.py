"""Evidence windows: their checks, and the agreement of raters' evidence (intersection over union) on hand-made
windows."""

import pandas as pd
import pytest

from evaluation.evidence import (
    EvidenceError,
    covered,
    evidence_agreement,
    evidence_clean,
    intersection,
    iou,
    merged,
    minute_text,
    window_text,
)

DIMENSIONS = {"relevance": "Relevance", "safety": "Safety"}
CHANNELS = ("heart_rate", "steps")


def test_no_overlap_is_zero_and_identical_windows_are_one():
    assert iou([(0, 60)], [(60, 120)]) == 0.0  # half-open: touching is not overlapping
    assert iou([(0, 60)], [(200, 300)]) == 0.0
    assert iou([(10, 70)], [(10, 70)]) == 1.0


def test_a_nested_window_overlaps_by_its_share_of_the_outer_one():
    assert iou([(0, 100)], [(25, 75)]) == pytest.approx(50 / 100)
    assert iou([(25, 75)], [(0, 100)]) == pytest.approx(0.5)  # symmetric


def test_partial_overlap():
    # [0, 60) and [30, 90): 30 minutes in common of 90 covered.
    assert iou([(0, 60)], [(30, 90)]) == pytest.approx(30 / 90)


def test_several_windows_per_rater_count_as_the_time_they_cover_together():
    first = [(0, 60), (120, 180)]  # 120 minutes
    second = [(30, 150)]  # 120 minutes; in common: [30, 60) and [120, 150) = 60
    assert intersection(first, second) == 60
    assert iou(first, second) == pytest.approx(60 / (120 + 120 - 60))
    # A rater's overlapping windows are not counted twice.
    assert covered([(0, 60), (30, 90), (90, 100)]) == 100
    assert merged([(30, 90), (0, 60), (90, 100), (200, 210)]) == [(0, 100), (200, 210)]
    assert iou([(0, 60), (30, 90)], [(0, 90)]) == 1.0


def test_two_empty_sets_have_no_agreement_to_measure():
    assert iou([], []) is None
    assert iou([(0, 10)], []) == 0.0


def test_clean_accepts_windows_inside_the_chart_and_names_what_is_wrong():
    window = (1440, 2880)
    good = [{"dimension": "safety", "start": "1500", "end": 1600, "note": "  night SpO2 dips  "}]
    assert evidence_clean(good, dimensions=DIMENSIONS, window=window, channels=CHANNELS) == [
        {"dimension": "safety", "start": 1500, "end": 1600, "channels": list(CHANNELS), "note": "night SpO2 dips"}
    ]
    assert evidence_clean(None, dimensions=DIMENSIONS, window=window, channels=CHANNELS) == []
    cases = [
        ({"dimension": "harm", "start": 1500, "end": 1600}, "window 1: choose one of Relevance, Safety"),
        ({"dimension": "safety", "start": 1600, "end": 1500}, "start before it ends"),
        ({"dimension": "safety", "start": 100, "end": 1600}, "within the days the chart shows"),
        ({"dimension": "safety", "start": 1500, "end": 3000}, "within the days the chart shows"),
        ({"dimension": "safety", "start": "noon", "end": 1600}, "minutes of the chart"),
        ({"dimension": "safety", "start": 1500, "end": 1600, "channels": ["ssn"]}, "unknown channels"),
        ({"dimension": "safety", "start": 1500, "end": 1600, "note": "x" * 501}, "longer than 500"),
    ]
    for entry, message in cases:
        with pytest.raises(EvidenceError, match=message):
            evidence_clean([entry], dimensions=DIMENSIONS, window=window, channels=CHANNELS)
    with pytest.raises(EvidenceError, match="at most 20"):
        evidence_clean(good * 21, dimensions=DIMENSIONS, window=window, channels=CHANNELS)
    with pytest.raises(EvidenceError, match="window 2"):
        evidence_clean([good[0], "x"], dimensions=DIMENSIONS, window=window, channels=CHANNELS)


def test_times_read_as_the_chart_axis_names_them():
    assert minute_text(0) == "day 1 00:00"
    assert minute_text(1440 * 2 + 22 * 60 + 5) == "day 3 22:05"
    text = window_text({"dimension": "safety", "start": 1440, "end": 1500, "note": "dip"}, DIMENSIONS)
    assert text == "Safety: day 2 00:00 – day 2 01:00 · dip"


def _rating(item, rater, score, windows, dimension="safety"):
    return {
        "item": item,
        "rater": rater,
        "scores": {"safety": score, "relevance": 3},
        "harm": {},
        "evidence": [{"dimension": dimension, "start": s, "end": e} for s, e in windows],
    }


def test_agreement_per_dimension_with_the_right_score_different_evidence_list():
    per_rating = pd.DataFrame(
        [
            _rating(1, "a", 2, [(0, 100)]),  # item 1: same score, same window -> IoU 1
            _rating(1, "b", 2, [(0, 100)]),
            _rating(2, "a", 4, [(0, 100)]),  # item 2: same score, disjoint windows -> listed
            _rating(2, "b", 4, [(500, 600)]),
            _rating(3, "a", 1, [(0, 100)]),  # item 3: different scores, half overlap -> not listed
            _rating(3, "b", 5, [(50, 100)]),
            _rating(4, "a", 3, []),  # item 4: no evidence
            _rating(4, "b", 3, [(0, 10)], dimension="relevance"),
        ]
    )
    rows = {row["dimension"]: row for row in evidence_agreement(per_rating, DIMENSIONS)}
    safety = rows["safety"]
    assert safety["ratings"] == 8 and safety["with_evidence"] == 6 and safety["share"] == pytest.approx(6 / 8)
    assert safety["pairs"] == 3 and safety["items"] == 3
    assert safety["iou"] == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert safety["iou_low"] <= safety["iou"] <= safety["iou_high"]
    assert [entry["item"] for entry in safety["different_evidence"]] == [2]
    relevance = rows["relevance"]
    assert relevance["with_evidence"] == 1 and relevance["pairs"] == 0 and relevance["iou"] is None
    assert relevance["iou_low"] is None and relevance["different_evidence"] == []
