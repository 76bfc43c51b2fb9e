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
from typing import Any, Protocol, TypeVar, cast

import numpy as np

from modeling.ml.heads.spec import ARCHITECTURE_CHOICES, TRAINING_CHOICES, HeadSpec, SpecError, parse_spec, spec_schema
from modeling.ml.heads.train import TokenWindows, fit_and_score


@dataclass
class Entry:
    round: int
    proposer: str
    status: str  # "trained", "repeat" (already trained: same score), "invalid"
    spec: dict[str, Any] | None = None
    score: float | None = None
    seconds: float = 0.0
    reason: str = ""


@dataclass
class Leaderboard:
    entries: list[Entry] = field(default_factory=list)

    def scored(self) -> list[Entry]:
        """Trained entries, best first (ties: the earlier one)."""
        trained = [
            entry
            for entry in self.entries
            if entry.status == "trained" and entry.score is not None and np.isfinite(entry.score)
        ]
        return sorted(trained, key=lambda entry: -cast(float, entry.score))  # not None: filtered above

    def best(self) -> Entry | None:
        scored = self.scored()
        return scored[0] if scored else None


class Proposer(Protocol):
    name: str

    def propose(self, leaderboard: Leaderboard, rng: np.random.Generator) -> str | dict[str, Any]: ...


T = TypeVar("T")


def _choice(rng: np.random.Generator, options: list[T]) -> T:
    return options[int(rng.integers(len(options)))]


def random_spec(rng: np.random.Generator) -> dict[str, Any]:
    kind = _choice(rng, list(ARCHITECTURE_CHOICES))
    head = {"type": kind, **{name: _choice(rng, options) for name, options in ARCHITECTURE_CHOICES[kind].items()}}
    return {"head": head, "training": {name: _choice(rng, options) for name, options in TRAINING_CHOICES.items()}}


class RandomProposer:
    """The baseline: a uniform draw from the search space, blind to the leaderboard."""

    name = "random"

    def propose(self, leaderboard: Leaderboard, rng: np.random.Generator) -> dict[str, Any]:
        return random_spec(rng)


class EvolutionProposer:
    """Mutates one of the best specs so far (one or two settings), or draws at random while the board is empty."""

    name = "evolution"

    def __init__(self, parents: int = 3, fresh_probability: float = 0.1):
        self.parents, self.fresh_probability = parents, fresh_probability

    def propose(self, leaderboard: Leaderboard, rng: np.random.Generator) -> dict[str, Any]:
        best = leaderboard.scored()[: self.parents]
        if not best or rng.random() < self.fresh_probability:
            return random_spec(rng)
        spec: dict[str, Any] = json.loads(json.dumps(_choice(rng, best).spec))
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
    """Asks a language model for the next spec, showing it the schema, the task and the leaderboard.

    ``complete(messages, seed)`` returns the model's text (an agent backend's ``complete``,
    constrained to the schema where the backend can be); whatever it returns is parsed by the
    search, so prose, code fences and invalid specs are survived. A proposal that repeated a trained
    spec is pointed out in the next prompt, and each proposal samples with its own seed drawn from the
    search's generator, so a repeated prompt need not give the same answer (and a seeded search repeats).
    """

    def __init__(
        self,
        complete: Callable[[list[dict[str, str]], int], str],
        name: str = "language model",
        shown: int = 8,
        task: str = "",
    ):
        self.complete, self.name, self.shown, self.task = complete, name, shown, task

    def messages(self, leaderboard: Leaderboard, task: str = "") -> list[dict[str, str]]:
        task = task or self.task
        lines = [
            f"- score {entry.score:.3f}: {json.dumps(entry.spec, separators=(',', ':'))}"
            for entry in leaderboard.scored()[: self.shown]
        ]
        invalid = [entry.reason for entry in leaderboard.entries if entry.status == "invalid"][-3:]
        own = [entry for entry in leaderboard.entries if entry.proposer == self.name]
        repeated = own[-1].spec if own and own[-1].status == "repeat" else None
        return [
            {
                "role": "system",
                "content": "You design prediction heads for a frozen wearable foundation model. Reply with exactly one "
                "JSON object that matches this JSON schema, and nothing else:\n"
                + json.dumps(spec_schema(), separators=(",", ":")),
            },
            {
                "role": "user",
                "content": (f"Task: {task}.\n" if task else "")
                + "Best heads so far (validation score, higher is better):\n"
                + ("\n".join(lines) or "- none yet")
                + ("\nRecently rejected proposals: " + " | ".join(invalid) if invalid else "")
                + (
                    f"\nYour last proposal {json.dumps(repeated, separators=(',', ':'))} was already trained; "
                    "propose a different head."
                    if repeated
                    else ""
                )
                + "\nPropose one new head that could score higher.",
            },
        ]

    def propose(self, leaderboard: Leaderboard, rng: np.random.Generator) -> str:
        return self.complete(self.messages(leaderboard), int(rng.integers(2**31)))


@dataclass
class SearchResult:
    leaderboard: Leaderboard
    best: HeadSpec | None
    trainings: int
    invalid: int
    stopped: str = ""  # "budget" (trainings spent), "time limit", or "rounds" (proposers kept repeating or failing)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "entries": [asdict(entry) for entry in self.leaderboard.entries],
            "best": self.best.model_dump(mode="json") if self.best else None,
            "trainings": self.trainings,
            "invalid": self.invalid,
            "stopped": self.stopped,
            "proposers": proposer_summary(self.leaderboard),
        }


def proposer_summary(leaderboard: Leaderboard) -> list[dict[str, Any]]:
    """Each proposer's contribution: proposals, trainings, repeats, invalid, its best score and how often it raised the board's best."""
    rows: dict[str, dict[str, Any]] = {}
    best_so_far = -np.inf
    for entry in leaderboard.entries:
        row = rows.setdefault(
            entry.proposer,
            {
                "proposer": entry.proposer,
                "proposals": 0,
                "trainings": 0,
                "repeats": 0,
                "invalid": 0,
                "best_score": None,
                "raised_best": 0,
            },
        )
        row["proposals"] += 1
        row[{"trained": "trainings", "repeat": "repeats", "invalid": "invalid"}[entry.status]] += 1
        if entry.status == "trained" and entry.score is not None and np.isfinite(entry.score):
            row["best_score"] = entry.score if row["best_score"] is None else max(row["best_score"], entry.score)
            if entry.score > best_so_far:
                best_so_far = entry.score
                row["raised_best"] += 1
    return list(rows.values())


def search(
    proposers: list[Proposer],
    evaluate: Callable[[HeadSpec], float],
    *,
    budget: int,
    seed: int = 0,
    time_limit_s: float | None = None,
    max_rounds: int | None = None,
    progress: Callable[[int, int, Entry], None] = lambda used, budget, entry: None,
) -> SearchResult:
    """Rounds of proposals, each valid new spec scored by ``evaluate`` (higher is better), until ``budget`` trainings
    are spent, ``time_limit_s`` has passed (no training starts after it), or ``max_rounds`` (default 4 x budget) pass.

    Reproducible for a seed when the proposers and ``evaluate`` are; a proposer that raises or returns
    something that is not a valid spec loses its turn, recorded with the reason.
    """
    rng = np.random.default_rng(seed)
    started = time.monotonic()
    trained: dict[str, float] = {}  # spec key -> score
    leaderboard, used, invalid, stopped = Leaderboard(), 0, 0, "rounds"
    max_rounds = max_rounds or 4 * budget

    def out_of_time() -> bool:
        return time_limit_s is not None and time.monotonic() - started >= time_limit_s

    for round_number in range(max_rounds):
        for proposer in proposers:
            if used >= budget:
                stopped = "budget"
                break
            if out_of_time():
                stopped = "time limit"
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
                elif out_of_time():  # the proposal itself (a language model) may have used up the time
                    stopped = "time limit"
                    break
                else:
                    began = time.perf_counter()
                    trained[key] = evaluate(spec)
                    used += 1
                    entry = Entry(
                        round_number,
                        proposer.name,
                        "trained",
                        spec.model_dump(mode="json"),
                        trained[key],
                        round(time.perf_counter() - began, 3),
                    )
            leaderboard.entries.append(entry)
            progress(used, budget, entry)
        else:
            continue
        break
    if used >= budget:
        stopped = "budget"
    best = leaderboard.best()
    best_spec = None
    if best is not None:
        assert best.spec is not None  # a trained entry always carries its spec
        best_spec = parse_spec(best.spec)
    return SearchResult(
        leaderboard,
        best_spec,
        used,
        invalid,
        stopped,
        round(time.monotonic() - started, 3),
    )


def run_search(
    proposers: list[Proposer],
    data: TokenWindows,
    labels: np.ndarray,
    kind: str,
    train_people: np.ndarray,
    validation_people: np.ndarray,
    *,
    budget: int,
    seed: int = 0,
    time_limit_s: float | None = None,
    max_rounds: int | None = None,
    progress: Callable[[int, int, Entry], None] = lambda used, budget, entry: None,
) -> SearchResult:
    """``search`` where a spec is trained on ``train_people`` and scored on ``validation_people``."""

    def evaluate(spec: HeadSpec) -> float:
        return fit_and_score(spec, data, labels, kind, train_people, validation_people, seed=seed).score

    return search(
        proposers,
        evaluate,
        budget=budget,
        seed=seed,
        time_limit_s=time_limit_s,
        max_rounds=max_rounds,
        progress=progress,
    )
