"""One task's head search from start to a usable head: search, decide on validation, refit, test once.

Participants are split 60/20/20 by participant (``compare.split_three``). The classroom searches on
train → validation. The linear probe (fitted on train) is scored on the same validation
participants with the same score (AUROC, or Pearson r for regression); the searched head is
*used* only if its validation score beats the probe's. Then the best spec is refitted on train +
validation as a bootstrap ensemble and the test participants are scored once, next to the probe
refitted on train + validation: the test split only reports, it never decides.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from modeling.ml.data.labels import TASK_BY_NAME
from modeling.ml.heads.compare import split_three
from modeling.ml.heads.ensemble import HeadEnsemble, fit_ensemble
from modeling.ml.heads.search import Entry, Proposer, proposer_summary, run_search
from modeling.ml.heads.train import TokenWindows, validation_score
from modeling.ml.lsm.evaluate import class_probabilities, probe, probe_pipeline, score


@dataclass
class TaskOutcome:
    result: dict  # JSON: decision, validation and test metrics, leaderboard, proposers' contributions
    ensemble: HeadEnsemble | None


def probe_validation_score(embeddings: np.ndarray, labels: np.ndarray, kind: str, train: np.ndarray, validation: np.ndarray) -> float:
    model = probe_pipeline(kind).fit(embeddings[train], labels[train])
    predicted = model.predict(embeddings[validation]) if kind == "regression" else class_probabilities(
        model, embeddings[validation], int(labels.max()) + 1)
    return validation_score(kind, labels[validation], predicted)


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def search_task(task_name: str, data: TokenWindows, embeddings: np.ndarray, labels: np.ndarray, proposers: list[Proposer], *,
                budget: int, seed: int, time_limit_s: float | None = None, replicates: int = 5, bootstrap: int = 200,
                progress: Callable[[int, int, Entry], None] = lambda used, budget, entry: None) -> TaskOutcome:
    task = TASK_BY_NAME[task_name]
    split = split_three(len(embeddings), seed)
    fit_on = np.concatenate([split.train, split.validation])
    searched = run_search(proposers, data, labels, task.kind, split.train, split.validation, budget=budget, seed=seed,
                          time_limit_s=time_limit_s, progress=progress)
    probe_validation = probe_validation_score(embeddings, labels, task.kind, split.train, split.validation)
    best = searched.leaderboard.best()
    result = {"task": task.name, "kind": task.kind, "metric": "mae" if task.kind == "regression" else "auroc",
              "validation_metric": "pearson_r" if task.kind == "regression" else "auroc",
              "participants": {"train": len(split.train), "validation": len(split.validation), "test": len(split.test)},
              "probe": {"validation": _finite(probe_validation),
                        "test": probe(embeddings, labels, task.kind, fit_on, split.test, bootstrap=bootstrap)},
              "head": None, "uses_head": False, "trainings": searched.trainings, "invalid": searched.invalid, "stopped": searched.stopped,
              "search_s": searched.seconds, "proposers": proposer_summary(searched.leaderboard),
              "entries": [{"proposer": entry.proposer, "status": entry.status, "score": _finite(entry.score), "seconds": entry.seconds,
                           "reason": entry.reason, "spec": entry.spec} for entry in searched.leaderboard.entries]}
    if searched.best is None:
        return TaskOutcome(result, None)
    ensemble = fit_ensemble(searched.best, data, labels, task.kind, fit_on, replicates=replicates, seed=seed)
    test = score(task.kind, labels[split.test], ensemble.predict_people(data, split.test), bootstrap=bootstrap)  # the test split, once
    result["head"] = {"spec": searched.best.model_dump(mode="json"), "validation": _finite(best.score), "test": test, "replicates": replicates}
    result["uses_head"] = bool(result["probe"]["validation"] is None or best.score > result["probe"]["validation"])
    quality = ({"mae": test["mae"][0], "pearson_r": test["pearson_r"][0]} if task.kind == "regression" else {"auroc": (test.get("auroc") or [None])[0]})
    ensemble.metadata = {"task": task.name, "validation_score": _finite(best.score), "probe_validation_score": result["probe"]["validation"],
                         "beats_probe": result["uses_head"],
                         "quality": {key: _finite(value) for key, value in quality.items()} | {"held_out_participants": len(split.test)}}
    return TaskOutcome(result, ensemble)
