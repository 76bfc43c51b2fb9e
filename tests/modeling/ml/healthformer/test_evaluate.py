"""The report's statistics: paired bootstrap AUROCs and the history cut."""

import numpy as np

from modeling.ml.healthformer.evaluate import TRIALS, paired_bootstrap, record_until
from modeling.ml.healthformer.tokens import ParticipantRecord


def test_the_paired_bootstrap_separates_a_perfect_score_from_noise():
    rng = np.random.default_rng(0)
    labels = (rng.random(300) < 0.2).astype(int)
    result = paired_bootstrap(labels, labels + rng.normal(0, 0.1, 300), rng.random(300), resamples=200, seed=1)
    assert result["model"] > 0.99 and result["model_ci"][0] > 0.95
    assert 0.35 < result["score"] < 0.65 and result["difference_ci"][0] > 0.2


def test_a_history_keeps_nothing_after_the_prediction_day():
    record = ParticipantRecord(50.0, "female", False, [{"day": d, "name": "ldl", "value": 100.0} for d in (10, 400)],
                               [{"day": 500, "kind": "endpoint", "name": "stroke"}], last_day=729)
    history = record_until(record, 364)
    assert history.last_day == 364 and [m["day"] for m in history.measurements] == [10] and history.events == []


def test_there_are_at_least_twenty_trials_over_every_intervention():
    assert len(TRIALS) >= 20 and len({intervention for intervention, _, _ in TRIALS}) == 5
    assert len({population for _, _, population in TRIALS}) >= 5
