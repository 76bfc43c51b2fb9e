"""The classroom search: survives garbled proposers, reproducible for a seed, spends its budget."""

import itertools
import json

import numpy as np

from modeling.ml.heads.search import (
    Entry,
    EvolutionProposer,
    LanguageModelProposer,
    Leaderboard,
    RandomProposer,
    random_spec,
    run_search,
)
from modeling.ml.heads.spec import parse_spec
from tests.modeling.ml.heads.test_train import _data

FAST = {"learning_rate": 0.01, "weight_decay": 0.0, "epochs": 5, "class_weighting": "balanced"}


class Fast:
    """Wraps a proposer so every spec trains for 5 epochs (the tests' budget)."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name

    def propose(self, leaderboard, rng):
        proposal = self.inner.propose(leaderboard, rng)
        return {**proposal, "training": FAST} if isinstance(proposal, dict) else proposal


def test_every_random_spec_is_valid():
    rng = np.random.default_rng(0)
    for _ in range(200):
        parse_spec(random_spec(rng))


def test_garbled_and_failing_proposers_are_survived_and_counted():
    data, labels = _data(40)
    replies = itertools.cycle(["no idea", '{"head": {"type": "mlp", "depth": 99}}', '```json\n{"type": "linear"}\n```'])

    def broken(messages, seed):
        raise ConnectionError("backend down")

    proposers = [
        LanguageModelProposer(lambda messages, seed: next(replies), name="garbled"),
        LanguageModelProposer(broken, name="down"),
        Fast(RandomProposer()),
    ]
    result = run_search(proposers, data, labels, "binary", np.arange(25), np.arange(25, 40), budget=3)
    statuses = [(entry.proposer, entry.status) for entry in result.leaderboard.entries]
    assert ("garbled", "invalid") in statuses and ("down", "invalid") in statuses and ("garbled", "trained") in statuses
    assert result.trainings == 3 and result.invalid >= 3 and result.best is not None
    reasons = [entry.reason for entry in result.leaderboard.entries if entry.status == "invalid"]
    assert any("no JSON object" in reason for reason in reasons) and any("depth" in reason for reason in reasons)
    assert any("backend down" in reason for reason in reasons)


def test_a_seeded_search_is_reproducible_and_never_trains_a_spec_twice():
    data, labels = _data(40)

    def search():
        return run_search(
            [Fast(RandomProposer()), Fast(EvolutionProposer())],
            data,
            labels,
            "binary",
            np.arange(25),
            np.arange(25, 40),
            budget=6,
            seed=11,
        ).as_dict()

    def without_timings(result):
        return {
            **result,
            "entries": [
                {key: value for key, value in entry.items() if key != "seconds"} for entry in result["entries"]
            ],
        }

    first, second = search(), search()
    assert without_timings(first) == without_timings(second)
    trained = [json.dumps(entry["spec"], sort_keys=True) for entry in first["entries"] if entry["status"] == "trained"]
    assert len(trained) == len(set(trained)) == 6


def test_the_language_model_sees_the_schema_and_the_best_specs():
    board = Leaderboard()
    board.entries.append(Entry(0, "random", "trained", {"head": {"type": "linear"}}, 0.71))
    messages = LanguageModelProposer(lambda m: "").messages(board, task="hypertension")
    assert (
        '"temporal_conv"' in messages[0]["content"]
        and "score 0.710" in messages[1]["content"]
        and "hypertension" in messages[1]["content"]
    )


def test_the_search_stops_at_its_time_limit_and_says_why():
    import time

    from modeling.ml.heads.search import search

    def slow_training(spec):
        time.sleep(0.2)
        return 0.5

    result = search([RandomProposer()], slow_training, budget=100, time_limit_s=0.5)
    assert result.stopped == "time limit" and 2 <= result.trainings <= 4  # no training starts after the limit
    assert search([RandomProposer()], lambda spec: 0.5, budget=3).stopped == "budget"
    assert (
        search([LanguageModelProposer(lambda messages, seed: "nothing")], lambda spec: 0.5, budget=3).stopped
        == "rounds"
    )


def test_each_proposers_contribution_is_counted():
    from modeling.ml.heads.search import proposer_summary

    spec = {"head": {"type": "linear"}}
    board = Leaderboard(
        [
            Entry(0, "a", "trained", spec, 0.6),
            Entry(0, "b", "trained", spec, 0.7),
            Entry(1, "a", "repeat", spec, 0.6),
            Entry(1, "b", "invalid", reason="no JSON object found"),
            Entry(2, "a", "trained", spec, 0.8),
        ]
    )
    rows = {row["proposer"]: row for row in proposer_summary(board)}
    assert rows["a"] == {
        "proposer": "a",
        "proposals": 3,
        "trainings": 2,
        "repeats": 1,
        "invalid": 0,
        "best_score": 0.8,
        "raised_best": 2,
    }
    assert rows["b"] == {
        "proposer": "b",
        "proposals": 2,
        "trainings": 1,
        "repeats": 0,
        "invalid": 1,
        "best_score": 0.7,
        "raised_best": 1,
    }
