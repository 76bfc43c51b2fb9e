"""Head search per task, compared at equal budgets: the linear probe against each proposer's best head.

Participants of a new simulated cohort are split by participant into train (60 %), validation
(20 %) and test (20 %). Each method (one proposer alone, or a classroom of several sharing one
leaderboard) searches with the same budget of trainings, scored on validation; its best spec is
retrained on train + validation and scored once on test, with bootstrap CIs. The linear probe (logistic / ridge on mean-pooled frozen embeddings) is fitted on
train + validation and scored on the same test participants.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modeling.ml.common.bootstrap import paired_draws, percentile_interval
from modeling.ml.common.metrics import interval_cell
from modeling.ml.data.cohort import make_cohort, participant_split
from modeling.ml.data.labels import TASK_BY_NAME
from modeling.ml.heads.search import Proposer, proposer_summary, run_search
from modeling.ml.heads.spec import describe_spec
from modeling.ml.heads.train import TokenWindows, fit_and_score, validation_score
from modeling.ml.lsm.evaluate import embed_days, fit_probe, probe_predictions, score
from modeling.ml.lsm.model import LSMForMaskedPretraining, standardize
from modeling.ml.lsm.pretrain import check_new_participants, load_pretrained


@dataclass
class Split:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split_three(participants: int, seed: int) -> Split:
    rest, test = participant_split(participants, 0.2, seed)
    train_index, validation_index = participant_split(len(rest), 0.25, seed + 1)  # 25 % of 80 % = 20 %
    return Split(rest[train_index], rest[validation_index], test)


def participant_tokens(
    model: LSMForMaskedPretraining,
    mean: torch.Tensor,
    std: torch.Tensor,
    values: np.ndarray,
    observed: np.ndarray,
    weekdays: np.ndarray,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One participant's frozen token grids of the given days (values (days, minutes, channels), weekdays (days,)):
    tokens (days, patches, dim) and present (days, patches)."""
    observed_tensor = torch.tensor(np.ascontiguousarray(observed))
    standardized = standardize(torch.tensor(np.nan_to_num(values)), observed_tensor, mean, std)
    weekday = torch.tensor(np.asarray(weekdays) % 7)
    device = model.device
    with torch.no_grad():
        grid, present = model.token_grid(standardized.to(device), observed_tensor.to(device), weekday.to(device))
    return grid.cpu(), present.cpu()


def token_windows(
    model_dir: str | Path, *, participants: int, days: int, seed: int, device: str = "cpu"
) -> tuple[TokenWindows, np.ndarray, dict[str, np.ndarray]]:
    """Frozen token grids of every day of new simulated participants, their mean-pooled embeddings and their labels."""
    model, mean, std = load_pretrained(model_dir, device)
    check_new_participants(model_dir, seed)
    cohort = make_cohort(participants=participants, days=days, seed=seed, history_days=days)
    tokens, present, owner, embeddings = [], [], [], []
    for index in range(participants):
        minutes = cohort.participant(index).minutes
        grid, here = participant_tokens(
            model, mean, std, minutes.values, minutes.mask, minutes.start_weekday + np.arange(minutes.days)
        )
        tokens.append(grid)
        present.append(here)
        owner += [index] * minutes.days
        # The linear probe reads the embedding every other probe reads (worn days only), not a second pooling of its own.
        embedding = embed_days(model, mean, std, minutes.values, minutes.mask, minutes.start_weekday)
        embeddings.append(embedding if embedding is not None else np.full(model.embedding_width, np.nan, np.float32))
    config = model.config
    data = TokenWindows(
        torch.cat(tokens), torch.cat(present), np.array(owner), (config.channel_groups, config.time_patches)
    )
    return data, np.array(embeddings), cohort.labels


def paired_difference(
    kind: str, truth: np.ndarray, head: np.ndarray, probe_predicted: np.ndarray, *, resamples: int, seed: int
) -> dict[str, Any]:
    """The head's score minus the probe's on the same people, with a percentile 95 % CI from resampling people
    (within each class for classification, so every resample can be scored)."""

    def metric(labels: np.ndarray, predicted: np.ndarray) -> float:
        return validation_score(kind, labels, predicted)

    draws = paired_draws(
        metric, truth, head, probe_predicted, resamples=resamples, seed=seed, stratify=kind != "regression"
    )
    low, high = percentile_interval(draws[:, 2])
    return {"difference": finite(metric(truth, head) - metric(truth, probe_predicted)), "difference_ci": [low, high]}


def finite(value: float | None) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def compare_task(
    task_name: str,
    data: TokenWindows,
    embeddings: np.ndarray,
    labels: np.ndarray,
    methods: dict[str, Callable[[], Proposer | list[Proposer]]],
    *,
    budget: int,
    seed: int,
    bootstrap: int = 200,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """One row: the linear probe and, per method, its best head's test metric (the test split scored once per method)."""
    task = TASK_BY_NAME[task_name]
    split = split_three(len(embeddings), seed)
    fit_on = np.concatenate([split.train, split.validation])
    metric = "mae" if task.kind == "regression" else "auroc"
    row: dict[str, Any] = {"task": task.name, "kind": task.kind, "metric": metric}
    probe_model = fit_probe(embeddings, labels, task.kind, fit_on)
    probe_test = (
        None if probe_model is None else probe_predictions(probe_model, embeddings[split.test], labels, task.kind)
    )
    row["linear_probe"] = (
        {"note": "only one class among the training participants"}
        if probe_test is None
        else score(task.kind, labels[split.test], probe_test, bootstrap=bootstrap)
    )
    for name, make in methods.items():
        made = make()
        proposers = made if isinstance(made, list) else [made]
        result = run_search(
            proposers,
            data,
            labels,
            task.kind,
            split.train,
            split.validation,
            budget=budget,
            seed=seed,
            progress=lambda used, total, entry: progress(
                f"{task.name} / {name}: {entry.proposer} {entry.status} ({used} of {total} trainings)"  # noqa: B023 - called within this iteration
            ),
        )
        search_summary = {
            "trainings": result.trainings,
            "invalid": result.invalid,
            "stopped": result.stopped,
            "search_s": result.seconds,
            "proposers": proposer_summary(result.leaderboard),
            "entries": [
                {
                    "proposer": entry.proposer,
                    "status": entry.status,
                    "score": entry.score,
                    "reason": entry.reason,
                    "spec": entry.spec,
                }
                for entry in result.leaderboard.entries
            ],
        }
        if result.best is None:
            row[name] = {"note": "no valid spec was trained", **search_summary}
            continue
        fitted = fit_and_score(
            result.best, data, labels, task.kind, fit_on, split.test, seed=seed
        )  # the test split, touched once
        best_entry = result.leaderboard.best()
        assert best_entry is not None  # result.best is its spec
        row[name] = {
            **score(task.kind, labels[split.test], fitted.predictions, bootstrap=bootstrap),
            # On the same test participants as the probe: its advantage, paired (AUROC, or Pearson r for regression).
            "vs_probe": None
            if probe_test is None
            else paired_difference(
                task.kind, labels[split.test], fitted.predictions, probe_test, resamples=bootstrap, seed=seed
            ),
            "validation_score": best_entry.score,
            "spec": result.best.model_dump(mode="json"),
            **search_summary,
        }
    return row


def compare_tables(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report's tables: the test metric per method, each search's validation score and cost, and who contributed."""
    methods = [key for key in rows[0] if key not in {"task", "kind", "metric"}] if rows else []
    searches = [method for method in methods if method != "linear_probe"]
    tables = [
        {
            "title": "Test participants (metric with bootstrap 95 % CI)",
            "summary": "AUROC: higher is better; MAE: lower is better.",
            "columns": ["task", "metric"] + [method.replace("_", " ") for method in methods],
            "rows": [
                [row["task"], row["metric"], *(interval_cell(row[method].get(row["metric"])) for method in methods)]
                for row in rows
            ],
        }
    ]

    def difference_cell(result: dict[str, Any]) -> str:
        paired = result.get("vs_probe")
        if not paired or paired["difference"] is None:
            return "—"
        low, high = paired["difference_ci"]
        shown = f"{paired['difference']:+.3f}"
        return shown if low is None else f"{shown} ({low:+.3f}, {high:+.3f})"

    if any(row[method].get("vs_probe") for row in rows for method in searches):
        tables.append(
            {
                "title": "Each method's best head minus the linear probe, on the same test participants",
                "summary": "AUROC, or Pearson r for regression (higher is better for the head); paired bootstrap 95 % CI "
                "over test participants (within each class for classification).",
                "columns": ["task", *searches],
                "rows": [[row["task"]] + [difference_cell(row[method]) for method in searches] for row in rows],
            }
        )

    def search_cell(result: dict[str, Any]) -> str:
        shown = "—" if result.get("validation_score") is None else f"{result['validation_score']:.3f}"
        return f"{shown} ({result['trainings']} trained, {result['invalid']} invalid, {result['search_s']:.0f} s)"

    tables.append(
        {
            "title": "Validation participants: best score found (AUROC, or Pearson r for regression)",
            "summary": "",
            "columns": ["task", *searches],
            "rows": [[row["task"]] + [search_cell(row[method]) for method in searches] for row in rows],
        }
    )
    tables.append(
        {
            "title": "Best spec per method",
            "summary": "",
            "columns": ["task", *searches],
            "rows": [[row["task"]] + [describe_spec(row[method].get("spec")) for method in searches] for row in rows],
        }
    )
    contributions = []
    for row in rows:
        for method in searches:
            for proposer in row[method]["proposers"]:
                if len(row[method]["proposers"]) > 1:
                    best = "—" if proposer["best_score"] is None else f"{proposer['best_score']:.3f}"
                    contributions.append(
                        [
                            row["task"],
                            method,
                            proposer["proposer"],
                            str(proposer["proposals"]),
                            str(proposer["trainings"]),
                            str(proposer["repeats"]),
                            str(proposer["invalid"]),
                            best,
                            str(proposer["raised_best"]),
                        ]
                    )
    if contributions:
        tables.append(
            {
                "title": "Classroom: each proposer's contribution",
                "summary": "",
                "columns": [
                    "task",
                    "method",
                    "proposer",
                    "proposals",
                    "trainings",
                    "repeats",
                    "invalid",
                    "best validation score",
                    "raised the best",
                ],
                "rows": contributions,
            }
        )
    return tables


def compare_markdown(rows: list[dict[str, Any]], *, header: str) -> str:
    from modeling.ml.lsm.evaluate import markdown

    return markdown(compare_tables(rows), header=header)
