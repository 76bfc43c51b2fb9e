"""An offline proposer: Optuna's TPE over the conditional search space, learning from the whole classroom.

The space is defined by run: the architecture is chosen first, then only that architecture's
settings (named ``<architecture>.<setting>``) and the training settings; multivariate, grouped TPE
models them jointly per architecture. The proposer is told its own proposals' scores through
``study.tell`` and learns every spec the others trained through ``study.add_trial``; a spec is
added once however often it appears. Specs off the search grid (a language model may propose
any value within bounds) cannot be expressed in the grid's distributions and are not added.
"""

import json
import warnings
from typing import Any, cast

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState, create_trial

from modeling.ml.heads.search import Leaderboard
from modeling.ml.heads.spec import ARCHITECTURE_CHOICES, TRAINING_CHOICES, parse_spec


def _distributions(architecture: str) -> dict[str, CategoricalDistribution]:
    """The distributions of one architecture's trial: its type, its settings and the training settings."""
    distributions = {"type": CategoricalDistribution(list(ARCHITECTURE_CHOICES))}
    distributions |= {
        f"{architecture}.{name}": CategoricalDistribution(options)
        for name, options in ARCHITECTURE_CHOICES[architecture].items()
    }
    distributions |= {
        f"training.{name}": CategoricalDistribution(options) for name, options in TRAINING_CHOICES.items()
    }
    return distributions


def _spec_key(spec: dict[str, Any]) -> str:
    return parse_spec(spec).key()


def spec_params(spec: dict[str, Any]) -> dict[str, Any] | None:
    """A trained spec as trial parameters, or None when one of its values is off the grid."""
    architecture = spec["head"]["type"]
    params = {"type": architecture}
    params |= {f"{architecture}.{name}": spec["head"][name] for name in ARCHITECTURE_CHOICES[architecture]}
    params |= {f"training.{name}": spec["training"][name] for name in TRAINING_CHOICES}
    distributions = _distributions(architecture)
    return params if all(params[name] in distributions[name].choices for name in params) else None


class TPEProposer:
    """Proposes with Optuna's TPE sampler (multivariate, grouped, seeded), asking a new trial per proposal."""

    name = "tpe"

    def __init__(self, seed: int = 0, startup_trials: int = 4):
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=startup_trials)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self.known: set[str] = set()  # keys of specs the study holds
        self.pending: dict[str, optuna.Trial] = {}  # key -> own trial waiting for its score
        self.seen = 0  # leaderboard entries already read

    def _learn(self, leaderboard: Leaderboard) -> None:
        for entry in leaderboard.entries[self.seen :]:
            if entry.spec is None:
                continue
            key = _spec_key(entry.spec)
            finite = entry.score is not None and np.isfinite(entry.score)
            trial = self.pending.pop(key, None)
            if trial is not None:
                if key in self.known or not finite:  # a repeat of a known spec, or no score: not counted twice
                    self.study.tell(trial, state=TrialState.FAIL)
                else:
                    self.study.tell(trial, entry.score)
                    self.known.add(key)
            elif key not in self.known and finite and (params := spec_params(entry.spec)) is not None:
                self.study.add_trial(
                    create_trial(
                        params=params,
                        # create_trial only reads it: the dict's invariance does not matter
                        distributions=cast(dict[str, BaseDistribution], _distributions(params["type"])),
                        value=entry.score,
                    )
                )
                self.known.add(key)
        self.seen = len(leaderboard.entries)

    def propose(self, leaderboard: Leaderboard, rng: np.random.Generator) -> dict[str, Any]:
        self._learn(leaderboard)
        for trial in self.pending.values():  # proposals the search never scored (it stopped): let them go
            self.study.tell(trial, state=TrialState.FAIL)
        self.pending.clear()
        trial = self.study.ask()
        architecture = trial.suggest_categorical("type", list(ARCHITECTURE_CHOICES))
        head = {"type": architecture} | {
            name: trial.suggest_categorical(f"{architecture}.{name}", options)
            for name, options in ARCHITECTURE_CHOICES[architecture].items()
        }
        training = {
            name: trial.suggest_categorical(f"training.{name}", options) for name, options in TRAINING_CHOICES.items()
        }
        spec = {"head": head, "training": training}
        self.pending[_spec_key(spec)] = trial
        proposed: dict[str, Any] = json.loads(json.dumps(spec))
        return proposed
