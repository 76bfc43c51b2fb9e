"""Prediction-head search by a classroom of proposers sharing one leaderboard.

Each round, every proposer reads the leaderboard (spec, validation score, cost) and proposes a
spec as text or a dict. A proposal is parsed and validated; an invalid one is recorded with its
reason and costs nothing but its round; a spec already trained is not trained again (its entry
is repeated with the earlier score). Valid new specs are trained on the training participants
and scored on the validation participants. The search stops when the budget of trainings is spent.
Proposers: random sampling, evolution of the best specs (both offline) and a language model.
"""

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from modeling.ml.heads.spec import ARCHITECTURE_CHOICES, TRAINING_CHOICES, HeadSpec, SpecError, parse_spec, spec_schema
from modeling.ml.heads.train import TokenWindows, fit_and_score


@dataclass
class Entry:
    round: int
    proposer: str
    status: str  # "trained", "repeat" (already trained: same score), "invalid"
    spec: dict | None = None
    score: float | None = None
    seconds: float = 0.0
    reason: str = ""


@dataclass
class Leaderboard:
    entries: list[Entry] = field(default_factory=list)

    def scored(self) -> list[Entry]:
        """Trained entries, best first (ties: the earlier one)."""
        trained = [entry for entry in self.entries if entry.status == "trained" and entry.score is not None and np.isfinite(entry.score)]
        return sorted(trained, key=lambda entry: -entry.score)

    def best(self) -> Entry | None:
        scored = self.scored()
        return scored[0] if scored else None


class Proposer(Protocol):
    name: str

    def propose(self, leaderboard: Leaderboard, rng: np.random.Generator) -> str | dict: ...


def _choice(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


def random_spec(rng: np.random.Generator) -> dict:
    kind = _choice(rng, list(ARCHITECTURE_CHOICES))
    head = {"type": kind, **{name: _choice(rng, options) for name, options in ARCHITECTURE_CHOICES[kind].items()}}
    return {"head": head, "training": {name: _choice(rng, options) for name, options in TRAINING_CHOICES.items()}}


class RandomProposer:
    """The baseline: a uniform draw from the search space, blind to the leaderboard."""

    name = "random"

    def propose(self, leaderboard: Leaderboard, rng: np.random.Generator) -> dict:
        return random_spec(rng)


class EvolutionProposer:
    """Mutates one of the best specs so far (one or two settings), or draws at random while the board is empty."""

    name = "evolution"

    def __init__(self, parents: int = 3, fresh_probability: float = 0.1):
        self.parents, self.fresh_probability = parents, fresh_probability

    def propose(self, leaderboard: Leaderboard, rng: np.random.Generator) -> dict:
        best = leaderboard.scored()[: self.parents]
        if not best or rng.random() < self.fresh_probability:
            return random_spec(rng)
        spec = json.loads(json.dumps(_choice(rng, best).spec))
        for _ in range(int(rng.integers(1, 3))):
            architecture_settings = ARCHITECTURE_CHOICES[spec["head"]["type"]]
            if architecture_settings and rng.random() < 0.5:
                name = _choice(rng, list(architecture_settings))
                spec["head"][name] = _choice(rng, architecture_settings[name])
            else:
                name = _choice(rng, list(TRAINING_CHOICES))
                spec["training"][name] = _choice(rng, TRAINING_CHOICES[name])
        return spec


class LanguageModelProposer:
    """Asks a language model for the next spec, showing it the schema and the leaderboard.

    ``complete`` takes chat messages and returns the model's text (an agent backend); whatever it
    returns is parsed by the search, so prose, code fences and invalid specs are survived.
    """

    def __init__(self, complete: Callable[[list[dict]], str], name: str = "language model", shown: int = 8):
        self.complete, self.name, self.shown = complete, name, shown

    def messages(self, leaderboard: Leaderboard, task: str = "") -> list[dict]:
        lines = [f"- score {entry.score:.3f}: {json.dumps(entry.spec, separators=(',', ':'))}" for entry in leaderboard.scored()[: self.shown]]
        invalid = [entry.reason for entry in leaderboard.entries if entry.status == "invalid"][-3:]
        return [
            {"role": "system", "content": "You design prediction heads for a frozen wearable foundation model. Reply with exactly one "
                                          "JSON object that matches this JSON schema, and nothing else:\n"
                                          + json.dumps(spec_schema(), separators=(",", ":"))},
            {"role": "user", "content": (f"Task: {task}.\n" if task else "") + "Best heads so far (validation score, higher is better):\n"
                                        + ("\n".join(lines) or "- none yet")
                                        + ("\nRecently rejected proposals: " + " | ".join(invalid) if invalid else "")
                                        + "\nPropose one new head that could score higher."},
        ]

    def propose(self, leaderboard: Leaderboard, rng: np.random.Generator) -> str:
        return self.complete(self.messages(leaderboard))


@dataclass
class SearchResult:
    leaderboard: Leaderboard
    best: HeadSpec | None
    trainings: int
    invalid: int

    def as_dict(self) -> dict:
        return {"entries": [asdict(entry) for entry in self.leaderboard.entries], "best": self.best.model_dump(mode="json") if self.best else None,
                "trainings": self.trainings, "invalid": self.invalid}


def run_search(proposers: list[Proposer], data: TokenWindows, labels: np.ndarray, kind: str, train_people: np.ndarray,
               validation_people: np.ndarray, *, budget: int, seed: int = 0, max_rounds: int | None = None,
               progress: Callable[[int, int, Entry], None] = lambda used, budget, entry: None) -> SearchResult:
    """Rounds of proposals until ``budget`` trainings are spent (or ``max_rounds``, default 4 x budget, pass)."""
    rng = np.random.default_rng(seed)
    leaderboard, trained, used, invalid = Leaderboard(), {}, 0, 0
    max_rounds = max_rounds or 4 * budget
    for round_number in range(max_rounds):
        for proposer in proposers:
            if used >= budget:
                break
            try:
                spec = parse_spec(proposer.propose(leaderboard, rng))
            except SpecError as error:
                entry = Entry(round_number, proposer.name, "invalid", reason=str(error)[:300])
                invalid += 1
            except Exception as error:  # a proposer that fails (a backend down) loses its turn, not the search
                entry = Entry(round_number, proposer.name, "invalid", reason=f"proposer failed: {error}"[:300])
                invalid += 1
            else:
                key = spec.key()
                if key in trained:
                    entry = Entry(round_number, proposer.name, "repeat", spec.model_dump(mode="json"), trained[key])
                else:
                    started = time.perf_counter()
                    fitted = fit_and_score(spec, data, labels, kind, train_people, validation_people, seed=seed)
                    trained[key] = fitted.score
                    used += 1
                    entry = Entry(round_number, proposer.name, "trained", spec.model_dump(mode="json"), fitted.score,
                                  round(time.perf_counter() - started, 3))
            leaderboard.entries.append(entry)
            progress(used, budget, entry)
        if used >= budget:
            break
    best = leaderboard.best()
    return SearchResult(leaderboard, parse_spec(best.spec) if best else None, used, invalid)
