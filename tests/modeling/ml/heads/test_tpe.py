"""The TPE proposer: seeded, learns from its own scores and from the classroom, and finds a known optimum faster than random."""

import numpy as np

from modeling.ml.heads.search import Entry, EvolutionProposer, Leaderboard, RandomProposer, search
from modeling.ml.heads.spec import HeadSpec
from modeling.ml.heads.tpe import TPEProposer


def known_optimum(spec: HeadSpec) -> float:
    """A made-up landscape with one best spec: a 3-layer, 256-wide MLP trained at 3e-3 for 80 epochs."""
    head, training = spec.head, spec.training
    score = 0.5 if head.type == "mlp" else 0.0
    if head.type == "mlp":
        score += 0.1 * head.depth + head.width / 512 + (0.2 if head.activation == "tanh" else 0.0)
    score += {3e-4: 0.0, 1e-3: 0.1, 3e-3: 0.3, 1e-2: 0.05}[training.learning_rate] + training.epochs / 400
    return score


def test_tpe_beats_random_on_a_known_optimum():
    def best(make, seed):
        return search([make(seed)], known_optimum, budget=24, seed=seed).leaderboard.best().score

    seeds = range(6)
    tpe = [best(lambda seed: TPEProposer(seed=seed), seed) for seed in seeds]
    random = [best(lambda seed: RandomProposer(), seed) for seed in seeds]
    assert np.mean(tpe) > np.mean(random)


def test_tpe_is_reproducible_and_learns_every_trained_spec_once():
    def run(seed):
        proposers = [RandomProposer(), EvolutionProposer(), TPEProposer(seed=seed)]
        return proposers[2], search(proposers, known_optimum, budget=15, seed=seed).as_dict()

    (tpe, first), (_, second) = run(4), run(4)
    strip = [{key: value for key, value in entry.items() if key != "seconds"} for entry in first["entries"]]
    assert strip == [{key: value for key, value in entry.items() if key != "seconds"} for entry in second["entries"]]
    tpe.propose(Leaderboard(first_entries := [Entry(**entry) for entry in first["entries"]]), np.random.default_rng(0))
    trained = {str(entry.spec) for entry in first_entries if entry.status == "trained"}
    finished = [trial for trial in tpe.study.trials if trial.value is not None]
    assert len(finished) == len(trained)  # every trained spec once, whoever proposed it; repeats not added again


def test_a_repeated_spec_is_not_added_twice():
    spec = {
        "head": {"type": "linear"},
        "training": {"learning_rate": 0.001, "weight_decay": 0.0, "epochs": 20, "class_weighting": "none"},
    }
    board = Leaderboard([Entry(0, "random", "trained", spec, 0.7), Entry(1, "evolution", "repeat", spec, 0.7)])
    proposer = TPEProposer(seed=0)
    proposer.propose(board, np.random.default_rng(0))
    assert [trial.value for trial in proposer.study.trials if trial.value is not None] == [0.7]
