"""Downstream evaluation of the wearable foundation model on the cohort's 30+ tasks.

Participants of a fresh simulated cohort (another seed than pre-training) are split into train
and test by participant. Each participant is represented by the mean of their days' embeddings
(frozen encoder, mean over observed tokens); a linear/logistic probe (optionally after PCA-50)
is fitted on train participants and scored once on test participants, beside the same probe on
hand-crafted daily features. Few-shot rows train on k labelled participants per class. Metrics
have bootstrap 95 % CIs over test participants.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score, f1_score, mean_absolute_error, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modeling.ml.data.cohort import make_cohort
from modeling.ml.data.labels import TASKS
from modeling.ml.data.summaries import summary_features
from modeling.ml.lsm.model import LSMForMaskedPretraining, standardize

BOOTSTRAP = 200


@dataclass
class Representations:
    embeddings: np.ndarray  # (participants, dim)
    handcrafted: np.ndarray  # (participants, features)
    labels: dict[str, np.ndarray]


def represent(model_dir: Path, *, participants: int, days: int, seed: int, device: str = "cpu") -> Representations:
    import json

    model = LSMForMaskedPretraining.from_pretrained(model_dir).to(device).eval()
    normalization = json.loads((model_dir / "normalization.json").read_text())
    mean, std = torch.tensor(normalization["mean"]), torch.tensor(normalization["std"])
    cohort = make_cohort(participants=participants, days=days, seed=seed, history_days=days)
    embeddings, handcrafted = [], []
    for index in range(participants):
        minutes = cohort.participant(index).minutes
        observed = torch.tensor(np.ascontiguousarray(minutes.mask))
        values = standardize(torch.tensor(np.nan_to_num(minutes.values)), observed, mean, std)
        embeddings.append(model.embed_windows(values.to(device), observed.to(device)).mean(dim=0).cpu().numpy())
        handcrafted.append(summary_features(minutes.values, minutes.mask))
    return Representations(np.array(embeddings), np.array(handcrafted), cohort.labels)


def _bootstrap(metric, truth: np.ndarray, predicted: np.ndarray, seed: int = 0, samples_count: int = BOOTSTRAP) -> tuple[float, float, float]:
    value = metric(truth, predicted)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(samples_count):
        rows = rng.integers(0, len(truth), len(truth))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                samples.append(metric(truth[rows], predicted[rows]))
        except ValueError:  # a resample with one class has no AUROC
            continue
    samples = [sample for sample in samples if np.isfinite(sample)]
    low, high = np.percentile(samples, [2.5, 97.5]) if samples else (np.nan, np.nan)
    return float(value), float(low), float(high)


def _auroc(truth, probabilities):
    if probabilities.ndim == 1:
        return roc_auc_score(truth, probabilities)
    return roc_auc_score(truth, probabilities, multi_class="ovr", average="macro", labels=list(range(probabilities.shape[1])))


def probe(features: np.ndarray, labels: np.ndarray, kind: str, train: np.ndarray, test: np.ndarray, *, pca: bool = False,
          bootstrap: int = BOOTSTRAP) -> dict:
    steps = [StandardScaler()] + ([PCA(n_components=min(50, features.shape[1], len(train) - 1))] if pca else [])
    if kind == "regression":
        model = make_pipeline(*steps, Ridge(alpha=1.0)).fit(features[train], labels[train])
        predicted = model.predict(features[test])
        mae = _bootstrap(mean_absolute_error, labels[test], predicted, samples_count=bootstrap)
        pearson = _bootstrap(lambda t, p: float(np.corrcoef(t, p)[0, 1]), labels[test], predicted, samples_count=bootstrap)
        return {"mae": mae, "pearson_r": pearson}
    classes = np.unique(labels[train])
    if len(classes) < 2:
        return {"note": "only one class among the training participants"}
    model = make_pipeline(*steps, LogisticRegression(max_iter=2000, class_weight="balanced")).fit(features[train], labels[train])
    probabilities = model.predict_proba(features[test])
    if len(classes) == 2:
        probabilities = probabilities[:, 1]
    elif probabilities.shape[1] < len(np.unique(labels)):
        return {"note": "a class is missing among the training participants"}
    predicted = model.predict(features[test])
    result = {"balanced_accuracy": _bootstrap(balanced_accuracy_score, labels[test], predicted, samples_count=bootstrap),
              "f1_macro": _bootstrap(lambda t, p: f1_score(t, p, average="macro"), labels[test], predicted, samples_count=bootstrap)}
    try:
        result["auroc"] = _bootstrap(_auroc, labels[test], probabilities, samples_count=bootstrap)
    except ValueError:
        result["auroc"] = None
    return result


def few_shot_rows(labels: np.ndarray, train: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(train[labels[train] == value], size=min(per_class, int((labels[train] == value).sum())), replace=False)
              for value in np.unique(labels[train])]
    return np.concatenate(chosen)


def evaluate(representations: Representations, *, seed: int = 0, few_shot: tuple[int, ...] = (5, 25), pca: bool = False,
             bootstrap: int = BOOTSTRAP) -> list[dict]:
    participants = len(representations.embeddings)
    order = np.random.default_rng(seed).permutation(participants)
    test, train = order[: participants * 3 // 10], order[participants * 3 // 10:]  # by participant; the test split is touched once
    rows = []
    for task in TASKS:
        labels = representations.labels[task.name]
        row = {"task": task.name, "family": task.family, "kind": task.kind,
               "pretrained": probe(representations.embeddings, labels, task.kind, train, test, pca=pca, bootstrap=bootstrap),
               "handcrafted": probe(representations.handcrafted, labels, task.kind, train, test, bootstrap=bootstrap)}
        if task.kind != "regression":
            for k in few_shot:
                rows_k = few_shot_rows(labels, train, k, seed)
                row[f"pretrained_{k}_shot"] = probe(representations.embeddings, labels, task.kind, rows_k, test, bootstrap=bootstrap)
                row[f"handcrafted_{k}_shot"] = probe(representations.handcrafted, labels, task.kind, rows_k, test, bootstrap=bootstrap)
        rows.append(row)
    return rows


def _cell(result: dict, metric: str) -> str:
    value = result.get(metric) if result else None
    if not value or value[0] is None or np.isnan(value[0]):
        return "—"
    return f"{value[0]:.2f} ({value[1]:.2f}–{value[2]:.2f})"


def markdown_table(rows: list[dict], *, header: str) -> str:
    columns = [key for key in rows[0] if key not in {"task", "family", "kind"}] if rows else []
    lines = [header, "", "| task | family | metric | " + " | ".join(columns) + " |", "|" + "---|" * (3 + len(columns))]
    for row in rows:
        metric = "mae" if row["kind"] == "regression" else "auroc"
        lines.append(f"| {row['task']} | {row['family']} | {metric} | " + " | ".join(_cell(row.get(column, {}), metric) for column in columns) + " |")
    return "\n".join(lines) + "\n"
