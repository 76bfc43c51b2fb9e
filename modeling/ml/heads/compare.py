"""Head search per task, compared at equal budgets: the linear probe against each proposer's best head.

Participants of a new simulated cohort are split by participant into train (60 %), validation
(20 %) and test (20 %). Each proposer searches alone with the same budget of trainings, scored on
validation; its best spec is retrained on train + validation and scored once on test, with
bootstrap CIs. The linear probe (logistic / ridge on mean-pooled frozen embeddings) is fitted on
train + validation and scored on the same test participants.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from modeling.ml.data.cohort import make_cohort, participant_split
from modeling.ml.data.labels import TASK_BY_NAME
from modeling.ml.heads.search import Proposer, run_search
from modeling.ml.heads.train import TokenWindows, fit_and_score
from modeling.ml.lsm.evaluate import probe, score
from modeling.ml.lsm.model import standardize
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


def token_windows(model_dir, *, participants: int, days: int, seed: int, device: str = "cpu") -> tuple[TokenWindows, np.ndarray, dict]:
    """Frozen token grids of every day of new simulated participants, their mean-pooled embeddings and their labels."""
    model, mean, std = load_pretrained(model_dir, device)
    check_new_participants(model_dir, seed)
    cohort = make_cohort(participants=participants, days=days, seed=seed, history_days=days)
    tokens, present, owner, embeddings = [], [], [], []
    with torch.no_grad():
        for index in range(participants):
            minutes = cohort.participant(index).minutes
            observed = torch.tensor(np.ascontiguousarray(minutes.mask))
            values = standardize(torch.tensor(np.nan_to_num(minutes.values)), observed, mean, std)
            weekday = torch.tensor((minutes.start_weekday + np.arange(minutes.days)) % 7)
            grid, here = model.token_grid(values.to(device), observed.to(device), weekday.to(device))
            tokens.append(grid.cpu())
            present.append(here.cpu())
            owner += [index] * minutes.days
            weights = here.float()[..., None]
            embeddings.append(((grid * weights).sum(1) / weights.sum(1).clamp(min=1)).mean(0).cpu().numpy())
    config = model.config
    data = TokenWindows(torch.cat(tokens), torch.cat(present), np.array(owner), (config.channel_groups, config.time_patches))
    return data, np.array(embeddings), cohort.labels


def compare_task(task_name: str, data: TokenWindows, embeddings: np.ndarray, labels: np.ndarray, proposers: dict[str, Callable[[], Proposer]],
                 *, budget: int, seed: int, bootstrap: int = 200) -> dict:
    task = TASK_BY_NAME[task_name]
    split = split_three(len(embeddings), seed)
    fit_on = np.concatenate([split.train, split.validation])
    metric = "mae" if task.kind == "regression" else "auroc"
    row = {"task": task.name, "kind": task.kind, "metric": metric,
           "linear_probe": probe(embeddings, labels, task.kind, fit_on, split.test, bootstrap=bootstrap)}
    for name, make in proposers.items():
        result = run_search([make()], data, labels, task.kind, split.train, split.validation, budget=budget, seed=seed)
        if result.best is None:
            row[name] = {"note": "no valid spec was trained"}
            continue
        fitted = fit_and_score(result.best, data, labels, task.kind, fit_on, split.test, seed=seed)  # the test split, touched once
        row[name] = {**score(task.kind, labels[split.test], fitted.predictions, bootstrap=bootstrap),
                     "validation_score": result.leaderboard.best().score, "spec": result.best.model_dump(mode="json"),
                     "trainings": result.trainings, "invalid": result.invalid}
    return row


def compare_markdown(rows: list[dict], *, header: str) -> str:
    from modeling.ml.lsm.evaluate import _cell, markdown

    methods = [key for key in rows[0] if key not in {"task", "kind", "metric"}] if rows else []
    table = {"title": "Test participants", "summary": "", "columns": ["task", "metric"] + [m.replace("_", " ") for m in methods],
             "rows": [[row["task"], row["metric"]] + [_cell(row[m], row["metric"]) for m in methods] for row in rows]}
    return markdown([table], header=header)
