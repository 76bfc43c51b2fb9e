"""Prediction-powered estimates (evaluation.ppi) on data whose truth is known."""

import numpy as np
import pytest

from evaluation import ppi


def draws(seed, *, rated=200, unrated=2000, bias=0.0, judge_sd=0.3):
    rng = np.random.default_rng(seed)
    truth = rng.normal(3.0, 0.8, rated + unrated)
    judge = truth + bias + rng.normal(0, judge_sd, rated + unrated)
    clinician = truth[:rated] + rng.normal(0, 0.7, rated)
    return clinician, judge[:rated], judge[rated:]


def test_a_good_judge_narrows_the_interval_and_a_biased_one_misleads_alone_but_not_powered():
    clinician, rated, unrated = draws(1, bias=0.8)
    result = ppi.estimates(clinician, rated, unrated)
    alone, powered, judge = result["clinician"], result["ppi"], result["judge"]
    assert powered["width"] < alone["width"]  # the judge's grades of 2,000 items help despite its bias
    assert powered["low"] <= 3.0 <= powered["high"] and alone["low"] <= 3.0 <= alone["high"]
    assert not judge["low"] <= 3.0 <= judge["high"]  # judge-only: narrow and off by its bias
    assert result["effective_n"] > 200  # the judge is worth more clinician ratings than were made


def test_coverage_of_the_powered_interval_over_repetitions():
    """The interval covers the truth about 95 % of the time whatever the bias (a small Monte Carlo: 200 draws)."""
    covered = 0
    for seed in range(200):
        estimate = ppi.prediction_powered(*draws(seed, rated=80, unrated=400, bias=-0.6, judge_sd=0.6))
        covered += estimate.low <= 3.0 <= estimate.high
    assert 0.90 <= covered / 200 <= 0.99


def test_a_useless_judge_costs_little():
    """PPI++ tunes how much to trust the judge: one that is noise gives about the clinician-only width."""
    rng = np.random.default_rng(3)
    clinician = rng.normal(3, 1, 150)
    powered = ppi.prediction_powered(clinician, rng.normal(0, 1, 150), rng.normal(0, 1, 1500))
    alone = ppi.clinician_only(clinician)
    assert powered.width <= alone.width * 1.1


def test_too_few_items_give_no_interval_and_mismatched_inputs_are_refused():
    assert ppi.clinician_only([3.0]) is None
    clinician, rated, unrated = draws(4, rated=19, unrated=100)
    assert ppi.prediction_powered(clinician, rated, unrated) is None  # under MIN_RATED_PPI rated items
    clinician, rated, unrated = draws(4, rated=30, unrated=0)
    assert ppi.prediction_powered(clinician, rated, unrated) is None  # nothing for the judge to add
    with pytest.raises(ValueError, match="same items"):
        ppi.prediction_powered([3.0, 4.0], [3.0], [1.0])


def test_a_judge_that_gives_every_item_the_same_grade_gives_the_clinicians_mean_not_nan():
    clinician = np.random.default_rng(5).normal(3, 1, 40)
    powered = ppi.prediction_powered(clinician, np.full(40, 4.0), np.full(400, 4.0))
    assert powered.mean == pytest.approx(clinician.mean())
    assert np.isfinite([powered.low, powered.high]).all()


def test_the_difference_of_two_variants_combines_their_errors():
    first, second = ppi.Estimate(3.5, 3.3, 3.7, 100), ppi.Estimate(3.0, 2.7, 3.3, 100)
    diff = ppi.difference(first, second)
    assert diff.mean == pytest.approx(0.5)
    assert diff.width == pytest.approx(np.hypot(first.width, second.width))
    assert ppi.difference(first, None) is None


def test_the_active_estimator_is_unbiased_with_unequal_probabilities():
    """Items rated with known, unequal probabilities: the weighted estimate covers the truth despite a biased judge."""
    covered = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        truth = rng.normal(3.0, 0.8, 1000)
        judge = truth + 0.7 + rng.normal(0, 0.4, 1000)
        probability = np.where(truth > 3.0, 0.3, 0.1)  # oversample some items
        rated = rng.random(1000) < probability
        estimate = ppi.active_mean(judge, truth + rng.normal(0, 0.5, 1000), rated, probability)
        covered += estimate.low <= 3.0 <= estimate.high
    assert 0.90 <= covered / 200 <= 0.99
    with pytest.raises(ValueError, match="same items"):
        ppi.active_mean([1.0], [1.0, 2.0], [True], [0.5])
