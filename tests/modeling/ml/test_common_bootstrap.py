"""The shared paired bootstrap: stratified draws keep every class's count; undefined draws are left out."""

import numpy as np

from modeling.ml.common.bootstrap import paired_draws, percentile_interval


def test_stratified_draws_keep_each_class_count_and_plain_draws_do_not():
    truth = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    positives = []

    def count_positives(labels, predicted):
        positives.append(int(labels.sum()))
        return float(labels.sum())

    paired_draws(count_positives, truth, truth, truth, resamples=50, seed=0, stratify=True)
    assert set(positives) == {1}
    positives.clear()
    paired_draws(count_positives, truth, truth, truth, resamples=50, seed=0, stratify=False)
    assert len(set(positives)) > 1


def test_undefined_draws_are_left_out_and_an_empty_interval_is_none():
    truth = np.arange(6) % 2

    def undefined_on_odd_sums(labels, predicted):
        return float("nan") if predicted.sum() % 2 else 1.0

    draws = paired_draws(undefined_on_odd_sums, truth, np.arange(6), np.arange(6), resamples=40, seed=1, stratify=False)
    assert 0 < len(draws) < 40 and np.isfinite(draws).all()
    assert percentile_interval(np.array([])) == (None, None)
