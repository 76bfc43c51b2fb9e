"""One task's head search from start to a usable head: search, decide on a fold of its own, refit, test once.

Participants are split 60/20/20 by participant (``compare.split_three``), and the validation fifth in
two halves. The classroom searches on train → the first half (the search fold). The decision is
made on the second half (the decision fold), which the search never saw: the best spec and the
linear probe are both fitted on train and scored there with the same score (AUROC, or Pearson r for
regression), and the head is *used* only if the paired bootstrap 95 % CI of its advantage lies
above 0. Deciding on the search's own fold would compare the best of N trainings with one probe and
favour the head by selection alone. Then the best spec is refitted on train + validation as a
bootstrap ensemble and the test participants are scored once, next to the probe refitted on train +
validation: the test split only reports, it never decides.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from modeling.ml.data.labels import TASK_BY_NAME
from modeling.ml.heads.compare import finite, paired_difference, split_three
from modeling.ml.heads.ensemble import HeadEnsemble, fit_ensemble
from modeling.ml.heads.search import Entry, Proposer, proposer_summary, run_search
from modeling.ml.heads.train import TokenWindows, fit_and_score, validation_score
from modeling.ml.lsm.evaluate import PROBE, class_probabilities, fit_probe, probe, score


@dataclass
class TaskOutcome:
    result: dict[str, Any]  # JSON: decision, validation and test metrics, leaderboard, proposers' contributions
    ensemble: HeadEnsemble | None


def probe_predictions(
    embeddings: np.ndarray, labels: np.ndarray, kind: str, train: np.ndarray, scored: np.ndarray
) -> np.ndarray:
    model = fit_probe(embeddings, labels, kind, train)
    if model is None:
        raise ValueError("the probe needs two classes among the training rows")
    return (
        model.predict(embeddings[scored])
        if kind == "regression"
        else class_probabilities(model, embeddings[scored], int(labels.max()) + 1)
    )


def split_validation(validation: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(search fold, decision fold): the validation participants in two seeded halves."""
    shuffled = np.random.default_rng(seed + 7).permutation(validation)
    half = len(shuffled) // 2
    return np.sort(shuffled[:half]), np.sort(shuffled[half:])


def search_task(
    task_name: str,
    data: TokenWindows,
    embeddings: np.ndarray,
    labels: np.ndarray,
    proposers: list[Proposer],
    *,
    budget: int,
    seed: int,
    time_limit_s: float | None = None,
    replicates: int = 5,
    bootstrap: int = 200,
    progress: Callable[[int, int, Entry], None] = lambda used, budget, entry: None,
) -> TaskOutcome:
    task = TASK_BY_NAME[task_name]
    split = split_three(len(embeddings), seed)
    fit_on = np.concatenate([split.train, split.validation])
    search_fold, decision_fold = split_validation(split.validation, seed)
    searched = run_search(
        proposers,
        data,
        labels,
        task.kind,
        split.train,
        search_fold,
        budget=budget,
        seed=seed,
        time_limit_s=time_limit_s,
        progress=progress,
    )
    probe_validation = validation_score(
        task.kind, labels[search_fold], probe_predictions(embeddings, labels, task.kind, split.train, search_fold)
    )
    best = searched.leaderboard.best()
    result: dict[str, Any] = {
        "task": task.name,
        "kind": task.kind,
        "metric": "mae" if task.kind == "regression" else "auroc",
        "validation_metric": "pearson_r" if task.kind == "regression" else "auroc",
        "participants": {
            "train": len(split.train),
            "validation": len(search_fold),
            "decision": len(decision_fold),
            "test": len(split.test),
        },
        "probe": {
            "validation": finite(probe_validation),
            "test": probe(embeddings, labels, task.kind, fit_on, split.test, bootstrap=bootstrap),
        },
        "head": None,
        "uses_head": False,
        "decision": None,
        "trainings": searched.trainings,
        "invalid": searched.invalid,
        "stopped": searched.stopped,
        "search_s": searched.seconds,
        "proposers": proposer_summary(searched.leaderboard),
        "entries": [
            {
                "proposer": entry.proposer,
                "status": entry.status,
                "score": finite(entry.score),
                "seconds": entry.seconds,
                "reason": entry.reason,
                "spec": entry.spec,
            }
            for entry in searched.leaderboard.entries
        ],
    }
    if searched.best is None:
        return TaskOutcome(result, None)
    assert best is not None  # searched.best is its spec
    # The decision fold, never seen by the search: the best spec and the probe, both fitted on train.
    head_decision = fit_and_score(searched.best, data, labels, task.kind, split.train, decision_fold, seed=seed)
    probe_decision = probe_predictions(embeddings, labels, task.kind, split.train, decision_fold)
    decision = {
        "head": finite(head_decision.score),
        "probe": finite(validation_score(task.kind, labels[decision_fold], probe_decision)),
        **paired_difference(
            task.kind, labels[decision_fold], head_decision.predictions, probe_decision, resamples=bootstrap, seed=seed
        ),
    }
    result["decision"] = decision
    ensemble = fit_ensemble(searched.best, data, labels, task.kind, fit_on, replicates=replicates, seed=seed)
    test = score(
        task.kind, labels[split.test], ensemble.predict_people(data, split.test), bootstrap=bootstrap
    )  # the test split, once
    result["head"] = {
        "spec": searched.best.model_dump(mode="json"),
        "validation": finite(best.score),
        "test": test,
        "replicates": replicates,
    }
    result["uses_head"] = bool(decision["difference_ci"][0] is not None and decision["difference_ci"][0] > 0)
    quality = (
        {"mae": test["mae"][0], "pearson_r": test["pearson_r"][0]}
        if task.kind == "regression"
        else {"auroc": (test.get("auroc") or [None])[0]}
    )
    ensemble.metadata = {
        "task": task.name,
        "validation_score": finite(best.score),
        "probe_validation_score": result["probe"]["validation"],
        "decision": decision,
        "beats_probe": result["uses_head"],
        "probe": PROBE,  # the probe it beat: a head beats a later, different probe only once searched again
        "quality": {key: finite(value) for key, value in quality.items()} | {"held_out_participants": len(split.test)},
    }
    return TaskOutcome(result, ensemble)
