"""The probe study (issue 24): does the pre-trained encoder's frozen embedding beat hand-crafted features, and
which embedding and probe make it so? Built to be able to tell:

* a fresh simulated cohort (a seed the model never saw), split by participant into training participants and at
  least 1,000 test participants, the same split for every method;
* every method's test predictions are kept, so each method's difference to hand-crafted features gets a **paired**
  bootstrap interval (the same resampled test participants for both, stratified by class);
* the probe's regularization is chosen by cross-validation inside the training participants (or fixed, to
  compare with the old tables), with and without standardizing the features;
* few-shot results are means over ``draws`` random draws of k labelled participants per class, with their spread
  and a paired interval of the mean difference over tasks and draws;
* CPU seconds of every stage are reported.

Representations: ``handcrafted`` (40 daily-summary features), and per embedding variant of
:meth:`LSMForMaskedPretraining.embed_window_variants` its across-day mean (``<variant>``) and, for some, its mean and
across-day SD (``<variant>+sd``, as the hand-crafted features have).
"""

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from modeling.ml.common.bootstrap import percentile_interval
from modeling.ml.common.metrics import auroc
from modeling.ml.common.settings import setting
from modeling.ml.data.cohort import make_cohort, participant_split
from modeling.ml.data.labels import TASKS, Task
from modeling.ml.data.summaries import summary_features
from modeling.ml.lsm.evaluate import few_shot_rows, fit_probe, probe_predictions
from modeling.ml.lsm.model import LSMForMaskedPretraining, standardize
from modeling.ml.lsm.pretrain import check_new_participants, load_pretrained


@dataclass
class ProbeStudySettings:
    participants: int = setting(2000, "New simulated participants (training + test).", minimum=40, maximum=100_000)
    test_share: float = setting(0.5, "Share of them held out for test.", minimum=0.1, maximum=0.9)
    days: int = setting(4, minimum=1, maximum=60)
    seed: int = setting(7000, "Another seed than pre-training: participants the model never saw.", minimum=0)
    few_shot: list[int] = setting([5, 10], "Labelled participants per class.", minimum=1)
    draws: int = setting(20, "Random draws of the labelled participants per few-shot size.", minimum=1)
    resamples: int = setting(1000, "Paired bootstrap resamples of the full-data differences.", minimum=10)
    few_shot_resamples: int = setting(200, "Paired bootstrap resamples of the few-shot mean difference.", minimum=10)
    folds: int = setting(5, "Cross-validation folds choosing the probe's regularization.", minimum=2, maximum=20)


@dataclass
class CohortFeatures:
    """Per participant: each representation's features and every task's label."""

    features: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    cpu_seconds: dict[str, float] = field(default_factory=dict)


def cpu_seconds() -> float:
    """CPU time of this process, all threads (torch and BLAS use both cores)."""
    return time.process_time()


@torch.no_grad()
def cohort_features(
    model_dir: str | Path,
    settings: ProbeStudySettings,
    *,
    device: str = "cpu",
    batch: int = 32,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> CohortFeatures:
    """Simulate the evaluation cohort and represent every participant: hand-crafted features and each embedding
    variant, pooled across their worn days by the mean (and the mean with the across-day SD)."""
    model, mean, std = load_pretrained(model_dir, device)
    check_new_participants(model_dir, settings.seed)
    started = cpu_seconds()
    cohort = make_cohort(
        participants=settings.participants, days=settings.days, seed=settings.seed, history_days=settings.days
    )
    simulated = cpu_seconds()
    columns: dict[str, list[np.ndarray]] = {"handcrafted": []}
    for index in range(settings.participants):
        minutes = cohort.participant(index).minutes
        columns["handcrafted"].append(summary_features(minutes.values, minutes.mask))
        worn = np.flatnonzero(minutes.mask.any(axis=(1, 2)))
        per_day: dict[str, list[torch.Tensor]] = {}
        if worn.size:
            observed = torch.tensor(np.ascontiguousarray(minutes.mask[worn]))
            values = standardize(torch.tensor(np.nan_to_num(minutes.values[worn])), observed, mean, std)
            weekday = torch.tensor((minutes.start_weekday + worn) % 7)
            for start in range(0, len(worn), batch):
                window = slice(start, start + batch)
                variants = model.embed_window_variants(
                    values[window].to(device), observed[window].to(device), weekday[window].to(device)
                )
                for name, embedding in variants.items():
                    per_day.setdefault(name, []).append(embedding.cpu())
        for name, width in _variant_widths(model).items():
            days = torch.cat(per_day[name]).numpy() if name in per_day else np.zeros((0, width), np.float32)
            with warnings.catch_warnings():  # a channel never observed on any day stays NaN: the probe imputes it
                warnings.simplefilter("ignore", RuntimeWarning)
                day_mean = np.nanmean(days, axis=0) if len(days) else np.full(width, np.nan, np.float32)
                day_sd = np.nanstd(days, axis=0) if len(days) > 1 else np.zeros(width, np.float32)
            columns.setdefault(name, []).append(day_mean)
            columns.setdefault(f"{name}+sd", []).append(np.concatenate([day_mean, day_sd]))
        progress(index + 1, settings.participants)
    embedded = cpu_seconds()
    return CohortFeatures(
        features={name: np.asarray(rows, dtype=np.float64) for name, rows in columns.items()},
        labels={name: np.asarray(values) for name, values in cohort.labels.items()},
        cpu_seconds={"simulate": simulated - started, "represent": embedded - simulated},
    )


def _variant_widths(model: LSMForMaskedPretraining) -> dict[str, int]:
    c = model.config
    widths = {"input": c.dim, **{f"layer{i}": c.dim for i in range(1, c.depth + 1)}, "last": c.dim}
    return widths | {"last_by_channel": c.channel_groups * c.dim}


def fit_predict(
    features: np.ndarray,
    labels: np.ndarray,
    task: Task,
    train: np.ndarray,
    test: np.ndarray,
    *,
    cv: bool,
    standardized: bool,
    folds: int,
) -> np.ndarray | None:
    """Test predictions (values, or class probabilities) of a probe fitted on ``train``; None when the training
    participants hold one class only."""
    model = fit_probe(features, labels, task.kind, train, cv=cv, folds=folds, standardized=standardized)
    if model is None:
        return None
    return probe_predictions(model, features[test], labels, task.kind)


def metric(task: Task) -> Callable[[np.ndarray, np.ndarray], float | None]:
    """Higher is better for every task: AUROC (one-vs-rest macro for several classes), Pearson r for regression."""
    if task.kind == "regression":
        return lambda truth, predicted: float(np.corrcoef(truth, predicted)[0, 1]) if np.std(predicted) > 0 else None
    return auroc


def resample_indices(truth: np.ndarray, *, resamples: int, seed: int, stratify: bool) -> np.ndarray:
    """(resamples, n) bootstrap draws of the test participants, stratified by class when ``stratify``."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(truth == value) for value in np.unique(truth)] if stratify else [np.arange(len(truth))]
    return np.stack([np.concatenate([rng.choice(group, len(group)) for group in groups]) for _ in range(resamples)])


def resampled_metric(task: Task, truth: np.ndarray, predicted: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(draws,) the task's metric on each resample of the test participants (rows of ``draws``), NaN where it is
    undefined; vectorized over the resamples, the same values as :func:`metric` per resample (tested).

    AUROC is the Mann-Whitney statistic from average ranks (ties count a half, as in scikit-learn), one-vs-rest
    macro for several classes (undefined when a resample lacks a class); Pearson r for regression."""
    truth_draws = truth[draws]
    if task.kind == "regression":
        x, y = predicted[draws], truth_draws.astype(float)
        x, y = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
        denominator = np.sqrt((x**2).sum(axis=1) * (y**2).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, (x * y).sum(axis=1) / denominator, np.nan)
    scores = predicted[:, 1] if predicted.ndim == 2 and predicted.shape[1] == 2 else predicted
    if scores.ndim == 1:
        return _binary_auroc(truth_draws == truth.max(), scores[draws])
    per_class = [_binary_auroc(truth_draws == c, scores[:, c][draws]) for c in range(scores.shape[1])]
    return np.asarray(np.mean(per_class, axis=0))  # NaN wherever one class's AUROC is undefined


def _binary_auroc(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    ranks = rankdata(scores, axis=1)
    positives = positive.sum(axis=1)
    negatives = positive.shape[1] - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * positive).sum(axis=1) - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), auc, np.nan)


def paired_difference(
    task: Task, truth: np.ndarray, first: np.ndarray, second: np.ndarray, draws: np.ndarray
) -> dict[str, Any]:
    """``first``'s metric, ``second``'s and their difference, each with its 95 % interval over the same ``draws``
    of test participants (paired)."""
    score = metric(task)
    estimate = [score(truth, first), score(truth, second)]
    if estimate[0] is None or estimate[1] is None:
        return {"note": "the metric is undefined on the test participants"}
    a, b = resampled_metric(task, truth, first, draws), resampled_metric(task, truth, second, draws)
    kept = np.isfinite(a) & np.isfinite(b)
    a, b = a[kept], b[kept]
    return {
        "method": [estimate[0], *percentile_interval(a)],
        "baseline": [estimate[1], *percentile_interval(b)],
        "difference": [estimate[0] - estimate[1], *percentile_interval(a - b)],
    }


def full_data(
    data: CohortFeatures,
    methods: dict[str, dict[str, Any]],
    settings: ProbeStudySettings,
    train: np.ndarray,
    test: np.ndarray,
    *,
    tasks: Sequence[Task] = TASKS,
    baseline: str = "handcrafted",
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Every method on every task with all training participants: its metric and its paired difference to
    ``baseline`` (a method name of ``methods``). A method is {"features": name, "cv": bool, "standardized": bool}."""
    results: dict[str, Any] = {}
    for task in tasks:
        progress(task.name)
        truth = data.labels[task.name][test]
        draws = resample_indices(
            truth, resamples=settings.resamples, seed=settings.seed, stratify=task.kind != "regression"
        )
        predictions = {
            name: fit_predict(
                data.features[method["features"]],
                data.labels[task.name],
                task,
                train,
                test,
                cv=method["cv"],
                standardized=method["standardized"],
                folds=settings.folds,
            )
            for name, method in methods.items()
        }
        reference = predictions[baseline]
        results[task.name] = {
            "kind": task.kind,
            "family": task.family,
            "methods": {
                name: (
                    {"note": "one class among the training participants"}
                    if predicted is None or reference is None
                    else paired_difference(task, truth, predicted, reference, draws)
                )
                for name, predicted in predictions.items()
            },
        }
    return results


def few_shot(
    data: CohortFeatures,
    methods: dict[str, dict[str, Any]],
    settings: ProbeStudySettings,
    train: np.ndarray,
    test: np.ndarray,
    *,
    tasks: Sequence[Task] = TASKS,
    baseline: str = "handcrafted",
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Classification tasks with k labelled training participants per class, ``draws`` times per k: per method the
    mean AUROC over tasks and draws with the draws' spread, and the paired interval of its mean difference to
    ``baseline`` (each bootstrap draw resamples the test participants once for every task and draw)."""
    classification = [task for task in tasks if task.kind != "regression"]
    results: dict[str, Any] = {}
    for k in settings.few_shot:
        scores: dict[str, list[list[float]]] = {name: [] for name in methods}  # [draw][task]
        predictions: dict[str, list[list[np.ndarray | None]]] = {name: [] for name in methods}
        for draw in range(settings.draws):
            progress(f"{k}-shot draw {draw + 1}/{settings.draws}")
            for name in methods:
                scores[name].append([])
                predictions[name].append([])
            for position, task in enumerate(classification):
                labels = data.labels[task.name]
                rows = few_shot_rows(labels, train, k, seed=settings.seed + 1000 * k + 97 * draw + position)
                for name, method in methods.items():
                    predicted = fit_predict(
                        data.features[method["features"]],
                        labels,
                        task,
                        rows,
                        test,
                        cv=False,  # k per class is too few to cross-validate: sklearn's default C
                        standardized=method["standardized"],
                        folds=settings.folds,
                    )
                    predictions[name][-1].append(predicted)
                    value = None if predicted is None else auroc(labels[test], predicted)
                    scores[name][-1].append(np.nan if value is None else value)
        results[str(k)] = _few_shot_summary(data, classification, test, scores, predictions, settings, baseline)
    return results


def _few_shot_summary(
    data: CohortFeatures,
    tasks: list[Task],
    test: np.ndarray,
    scores: dict[str, list[list[float]]],
    predictions: dict[str, list[list[np.ndarray | None]]],
    settings: ProbeStudySettings,
    baseline: str,
) -> dict[str, Any]:
    """Per method: mean AUROC over tasks and draws, the SD of the per-draw means, per-task means, and the paired
    bootstrap interval of the mean difference to the baseline."""
    summary: dict[str, Any] = {}
    draws = resample_indices(
        np.zeros(len(test), int), resamples=settings.few_shot_resamples, seed=settings.seed, stratify=False
    )
    resampled: dict[str, list[np.ndarray]] = {name: [] for name in scores}  # per (draw, task): (resamples,)
    for name in scores:
        for row in predictions[name]:
            for task, predicted in zip(tasks, row, strict=True):
                truth = data.labels[task.name][test]
                resampled[name].append(
                    np.full(len(draws), np.nan)
                    if predicted is None
                    else resampled_metric(task, truth, predicted, draws)
                )
    for name, table in scores.items():
        matrix = np.asarray(table)  # (draws, tasks)
        entry: dict[str, Any] = {
            "mean_auroc": float(np.nanmean(matrix)),
            "draw_sd": float(np.nanstd(np.nanmean(matrix, axis=1))),
            "per_task": {task.name: float(np.nanmean(matrix[:, i])) for i, task in enumerate(tasks)},
        }
        if name != baseline:
            differences = matrix - np.asarray(scores[baseline])
            # Per resample: the mean over every (draw, task) of the difference, where both are defined.
            paired = np.stack(resampled[name]) - np.stack(resampled[baseline])  # (draws x tasks, resamples)
            samples = np.nanmean(paired, axis=0)
            entry["difference"] = [float(np.nanmean(differences)), *percentile_interval(samples[np.isfinite(samples)])]
        summary[name] = entry
    return summary


def run(
    model_dir: str | Path,
    output: str | Path,
    settings: ProbeStudySettings,
    methods: dict[str, dict[str, Any]],
    *,
    tasks: Sequence[Task] = TASKS,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The whole study: represent the cohort, full-data and few-shot results, written to ``output/probe_study.json``
    (and each stage's CPU seconds)."""
    data = cohort_features(model_dir, settings, device=device)
    log(f"represented {settings.participants} participants: {data.cpu_seconds}")
    train, test = participant_split(settings.participants, settings.test_share, settings.seed)
    started = cpu_seconds()
    full = full_data(data, methods, settings, train, test, tasks=tasks, progress=lambda task: log(f"full: {task}"))
    fitted = cpu_seconds()
    shots = few_shot(data, methods, settings, train, test, tasks=tasks, progress=log)
    data.cpu_seconds |= {"full_data": fitted - started, "few_shot": cpu_seconds() - fitted}
    result = {
        "settings": asdict(settings),
        "model": str(model_dir),
        "train_participants": len(train),
        "test_participants": len(test),
        "methods": methods,
        "cpu_seconds": data.cpu_seconds,
        "full_data": full,
        "few_shot": shots,
        "summary": summarize(full, shots, methods),
    }
    Path(output).mkdir(parents=True, exist_ok=True)
    (Path(output) / "probe_study.json").write_text(json.dumps(result, indent=1))
    (Path(output) / "probe_study.md").write_text(markdown(result))
    return result


def summarize(full: dict[str, Any], shots: dict[str, Any], methods: dict[str, Any]) -> dict[str, Any]:
    """Per method: on how many tasks its point estimate is at least the baseline's, and its paired interval lies
    above it; its few-shot mean differences."""
    summary: dict[str, Any] = {}
    for name in methods:
        rows = [task["methods"][name] for task in full.values() if "difference" in task["methods"][name]]
        summary[name] = {
            "tasks_total": len(full),
            "tasks_scored": len(rows),
            "tasks_at_least_baseline": sum(1 for row in rows if row["difference"][0] >= 0),
            "tasks_ci_above": sum(1 for row in rows if row["difference"][1] is not None and row["difference"][1] > 0),
            "tasks_ci_below": sum(1 for row in rows if row["difference"][2] is not None and row["difference"][2] < 0),
            "few_shot_difference": {k: shots[k][name].get("difference") for k in shots},
        }
    return summary


def method(features: str, *, cv: bool = True, standardized: bool = True) -> dict[str, Any]:
    return {"features": features, "cv": cv, "standardized": standardized}


# The comparison of the results table: hand-crafted features and the embedding, each with the cross-validated probe.
# PROBE, the table's probe, pools the last layer per channel: the grand mean over every channel lost on the tasks a
# single channel's level or the sleep hours decide (ablations.md). The old tables' probe (last layer's grand mean,
# C = 1) and the grand mean with the cross-validated probe stay beside it.
PROBE = "probe (by channel, CV)"
STANDARD_METHODS = {
    "handcrafted": method("handcrafted"),
    PROBE: method("last_by_channel"),
    "probe (last, CV)": method("last"),
    "probe (old: last, C=1)": method("last", cv=False),
}


def diagnostic_methods(depth: int) -> dict[str, dict[str, Any]]:
    """Every layer, pooling and standardization choice of the issue's diagnosis, each with the cross-validated probe."""
    layers = ["input", *(f"layer{i}" for i in range(1, depth + 1)), "last"]
    return {
        "handcrafted": method("handcrafted"),
        **{f"{layer} (CV)": method(layer) for layer in layers},
        "last (C=1)": method("last", cv=False),
        "last (not standardized, CV)": method("last", standardized=False),
        "last+sd (CV)": method("last+sd"),
        "last_by_channel (CV)": method("last_by_channel"),
        "last_by_channel+sd (CV)": method("last_by_channel+sd"),
    }


def markdown(result: dict[str, Any]) -> str:
    """The study as tables: per task each method's metric and its paired difference to hand-crafted features; the
    few-shot means; the summary and the compute."""
    methods = list(result["methods"])
    lines = [
        f"Model `{result['model']}`; {result['train_participants']} training and {result['test_participants']} test "
        f"participants (new, seed {result['settings']['seed']}, {result['settings']['days']} days each), split by "
        "participant, the same for every method. AUROC (classification, one-vs-rest macro for several classes) or "
        "Pearson r (regression); in brackets the paired 95 % bootstrap interval of the difference to hand-crafted "
        f"features ({result['settings']['resamples']} resamples of the test participants, stratified by class).",
        "",
        "| task | " + " | ".join(methods) + " |",
        "|" + " --- |" * (len(methods) + 1),
    ]
    for task, row in result["full_data"].items():
        cells = []
        for name in methods:
            entry = row["methods"][name]
            if "difference" not in entry:
                cells.append("—")
            elif name == "handcrafted":
                cells.append(f"{entry['method'][0]:.3f}")
            else:
                low, high = entry["difference"][1], entry["difference"][2]
                mark = " ▲" if low is not None and low > 0 else (" ▼" if high is not None and high < 0 else "")
                cells.append(f"{entry['method'][0]:.3f} ({low:+.3f}, {high:+.3f}){mark}")
        lines.append(f"| {task} ({row['kind']}) | " + " | ".join(cells) + " |")
    lines += ["", "▲ / ▼: the paired interval lies above / below hand-crafted features.", "", "## Summary", ""]
    lines += ["| method | at least hand-crafted | interval above | interval below |", "| --- | --- | --- | --- |"]
    for name, entry in result["summary"].items():
        if name == "handcrafted":
            continue
        lines.append(
            f"| {name} | {entry['tasks_at_least_baseline']} of {entry['tasks_scored']} | {entry['tasks_ci_above']} | "
            f"{entry['tasks_ci_below']} |"
        )
    lines += ["", f"## Few-shot ({result['settings']['draws']} draws per k)", ""]
    lines += ["| k per class | method | mean AUROC | SD over draws | difference to hand-crafted (95 % CI) |"]
    lines += ["| --- | --- | --- | --- | --- |"]
    for k, table in result["few_shot"].items():
        for name, entry in table.items():
            difference = entry.get("difference")
            cell = f"{difference[0]:+.3f} ({difference[1]:+.3f}, {difference[2]:+.3f})" if difference else "—"
            lines.append(f"| {k} | {name} | {entry['mean_auroc']:.3f} | {entry['draw_sd']:.3f} | {cell} |")
    seconds = result["cpu_seconds"]
    lines += ["", "CPU seconds: " + ", ".join(f"{stage} {value:.0f}" for stage, value in seconds.items()) + "."]
    return "\n".join(lines) + "\n"
