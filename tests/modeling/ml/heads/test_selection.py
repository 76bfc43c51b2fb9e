"""Whether a searched head replaces the probe is decided on people the search never saw, with a CI."""

import numpy as np
import torch

from modeling.ml.heads.compare import paired_difference
from modeling.ml.heads.search import RandomProposer
from modeling.ml.heads.selection import search_task, split_validation
from modeling.ml.heads.train import TokenWindows


def test_the_decision_fold_is_the_other_half_of_validation():
    validation = np.arange(100, 140)
    search, decision = split_validation(validation, seed=3)
    assert (
        len(search) == len(decision) == 20
        and set(search).isdisjoint(decision)
        and set(search) | set(decision) == set(validation)
    )


def test_the_paired_difference_is_zero_for_equal_predictions_and_above_zero_for_a_clearly_better_head():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 80)
    noise = rng.random(80)
    same = paired_difference(
        "binary", truth, np.stack([1 - noise, noise], 1), np.stack([1 - noise, noise], 1), resamples=100, seed=1
    )
    assert same["difference"] == 0 and same["difference_ci"] == [0.0, 0.0]
    perfect = np.stack([1.0 - truth, truth + 0.0], 1)
    better = paired_difference("binary", truth, perfect, np.stack([1 - noise, noise], 1), resamples=200, seed=1)
    assert better["difference_ci"][0] > 0.2


def test_without_any_signal_the_best_of_several_heads_does_not_replace_the_probe():
    """Best of 5 random heads on the search fold usually beats one probe there by chance alone; the decision fold
    and its CI must keep the probe."""
    rng = np.random.default_rng(10)
    participants = 150
    owner = np.repeat(np.arange(participants), 2)
    tokens = torch.tensor(rng.normal(size=(len(owner), 12, 16)).astype(np.float32))
    data = TokenWindows(tokens, torch.ones(len(owner), 12, dtype=torch.bool), owner, (2, 6))
    embeddings = tokens.reshape(participants, 2, 12, 16).mean((1, 2)).numpy()
    labels = rng.integers(0, 2, participants)  # no relation to anything
    outcome = search_task(
        "hypertension", data, embeddings, labels, [RandomProposer()], budget=5, seed=2, replicates=1, bootstrap=100
    )
    result = outcome.result
    assert result["participants"]["validation"] + result["participants"]["decision"] == 30
    assert (
        result["head"]["validation"] > result["probe"]["validation"] + 0.2
    )  # the search fold alone would have picked the head
    assert result["uses_head"] is False and outcome.ensemble.metadata["beats_probe"] is False
