"""Rater-quality statistics: Krippendorff's α (whole and leaving each rater out) equal to the krippendorff
package's, gold matching, Wilson intervals, exclusions and self-consistency."""

import krippendorff
import numpy as np
import pandas as pd
import pytest

from evaluation.quality import (
    alpha_without_each_rater,
    exclusions,
    reference_match,
    self_consistency,
    wilson_interval,
)


def ratings_with_gaps(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for item in range(80):
        truth = rng.integers(1, 6)
        for rater in rng.choice(9, size=rng.integers(1, 5), replace=False):
            rows.append((item, f"r{rater}", int(np.clip(truth + rng.integers(-1, 2), 1, 5))))
    return pd.DataFrame(rows, columns=["item", "rater", "score"])


def package_alpha(frame: pd.DataFrame, level: str) -> float:
    matrix = frame.pivot_table(index="rater", columns="item", values="score").to_numpy()
    return krippendorff.alpha(reliability_data=matrix, level_of_measurement=level, value_domain=[1, 2, 3, 4, 5])


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
@pytest.mark.parametrize("seed", [0, 1])
def test_alpha_and_alpha_without_each_rater_equal_the_package(level, seed):
    frame = ratings_with_gaps(seed)
    overall, without = alpha_without_each_rater(frame, level=level, values=[1, 2, 3, 4, 5])
    assert overall == pytest.approx(package_alpha(frame, level), abs=1e-12)
    assert set(without) == set(frame["rater"])
    for rater, value in without.items():
        assert value == pytest.approx(package_alpha(frame[frame["rater"] != rater], level), abs=1e-12)


def test_a_random_rater_lowers_alpha_and_leaving_them_out_raises_it():
    rng = np.random.default_rng(3)
    rows = []
    for item in range(200):
        truth = rng.integers(1, 6)
        for rater in range(4):
            score = rng.integers(1, 6) if rater == 0 else int(np.clip(truth + rng.integers(-1, 2), 1, 5))
            rows.append((item, f"r{rater}", score))
    overall, without = alpha_without_each_rater(pd.DataFrame(rows, columns=["item", "rater", "score"]))
    assert without["r0"] - overall > 0.05
    assert all(without[f"r{rater}"] < overall for rater in (1, 2, 3))


def test_reference_match_uses_tolerances_and_exact_choices():
    reference = {"relevance": 4, "safety": 1}
    assert reference_match(
        reference=reference, tolerance={}, scores={"relevance": 5, "safety": 1}, binary=frozenset({"safety"})
    )
    assert not reference_match(
        reference=reference, tolerance={}, scores={"relevance": 5, "safety": 0}, binary=frozenset({"safety"})
    )
    assert not reference_match(reference=reference, tolerance={"relevance": 0}, scores={"relevance": 5, "safety": 1})
    assert not reference_match(reference=reference, tolerance={}, scores={"safety": 1})  # a missing score never matches
    assert reference_match(
        reference={"overall": "a", "preference": "b"}, tolerance={}, scores={"overall": "a"}, preference="b"
    )
    assert not reference_match(
        reference={"overall": "a", "preference": "b"}, tolerance={}, scores={"overall": "a"}, preference="tie"
    )


def test_wilson_interval():
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(0, 10)
    assert low == 0 and 0.2 < high < 0.35
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.490, abs=0.001) and high == pytest.approx(0.943, abs=0.001)


def test_exclusions_flag_rules_without_dropping_rows():
    ratings = pd.DataFrame({"rater": ["a", "b", "c", "a"], "time_spent_s": [3.0, 30.0, 30.0, 40.0]})
    flagged = exclusions(ratings, below_gold={"b"}, paused={"a"}, min_seconds=5)
    assert list(flagged) == ["fast,paused", "gold", "", "paused"]
    assert list(exclusions(ratings, below_gold={"b"}, paused=set(), min_seconds=0, rules={"gold"})) == [
        "",
        "gold",
        "",
        "",
    ]


def test_self_consistency():
    repeats = pd.DataFrame({"rater": ["a", "a", "b"], "first": [3, 4, 2], "second": [3, 2, 2]})
    assert self_consistency(repeats) == {
        "a": {"repeats": 2, "same": 0.5, "mean_abs_difference": 1.0},
        "b": {"repeats": 1, "same": 1.0, "mean_abs_difference": 0.0},
    }
