"""Downstream evaluation of the wearable foundation model on the cohort's 30+ tasks.

Participants of a fresh simulated cohort (another seed than pre-training) are split into train
and test by participant. Each participant is represented by the mean of their days' embeddings
(frozen encoder, its last layer mean-pooled per channel); a linear/logistic probe (optionally after PCA-50), its
regularization chosen by cross-validation inside the training participants, is fitted on train participants and scored once on test participants, beside the same probe on
hand-crafted daily features, and beside the same encoder trained supervised from scratch on the
task. Few-shot columns train on k labelled participants per class. Metrics have bootstrap 95 % CIs
over test participants.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, Ridge, RidgeCV
from sklearn.metrics import balanced_accuracy_score, f1_score, mean_absolute_error
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from modeling.ml.common.bootstrap import BOOTSTRAP, bootstrap_interval
from modeling.ml.common.metrics import auroc, interval_cell
from modeling.ml.data.cohort import make_cohort, participant_split
from modeling.ml.data.labels import TASKS, Task
from modeling.ml.data.summaries import summary_features
from modeling.ml.lsm.model import LSMConfig, LSMForMaskedPretraining, standardize
from modeling.ml.lsm.pretrain import check_new_participants, load_pretrained
from modeling.ml.lsm.supervised import SupervisedSettings, fit_predict


@dataclass
class Windows:
    """Every standardized day window of the evaluation cohort, for the supervised baseline."""

    values: torch.Tensor  # (windows, channels, minutes)
    observed: torch.Tensor
    owner: np.ndarray  # (windows,) the participant of each window
    config: LSMConfig  # the architecture to train from scratch


@dataclass
class Representations:
    embeddings: np.ndarray  # (participants, dim)
    handcrafted: np.ndarray  # (participants, features)
    labels: dict[str, np.ndarray]
    windows: Windows | None = None


@torch.no_grad()
@torch.no_grad()
def embed_worn_days(
    embed: Callable[..., torch.Tensor],
    device: torch.device | str,
    mean: torch.Tensor,
    std: torch.Tensor,
    values: np.ndarray,
    observed: np.ndarray,
    start_weekday: int = 0,
    batch: int = 32,
) -> tuple[np.ndarray, torch.Tensor]:
    """(worn day positions, (worn days, dim) embeddings) of one participant's days (days, channels, 1440), standardized and
    embedded in batches by ``embed(values, observed, weekday)`` (a model's window-embedding method); days without any
    observed minute are skipped."""
    worn = np.flatnonzero(observed.any(axis=(1, 2)))
    if not worn.size:
        return worn, torch.zeros(0)
    observed_tensor = torch.tensor(np.ascontiguousarray(observed[worn]))
    standardized = standardize(torch.tensor(np.nan_to_num(values[worn])), observed_tensor, mean, std)
    weekday = torch.tensor((start_weekday + worn) % 7)
    embeddings = [
        embed(
            standardized[i : i + batch].to(device),
            observed_tensor[i : i + batch].to(device),
            weekday[i : i + batch].to(device),
        ).cpu()
        for i in range(0, len(worn), batch)
    ]
    return worn, torch.cat(embeddings)


def embed_days(
    model: LSMForMaskedPretraining,
    mean: torch.Tensor,
    std: torch.Tensor,
    values: np.ndarray,
    observed: np.ndarray,
    start_weekday: int = 0,
    batch: int = 32,
) -> np.ndarray | None:
    """A participant's embedding: the mean over their days' embeddings (days without any observed minute skipped;
    a channel counts on the days it was observed, NaN where it never was)."""
    worn, embeddings = embed_worn_days(
        model.embed_windows, model.device, mean, std, values, observed, start_weekday, batch
    )
    return embeddings.nanmean(dim=0).numpy() if worn.size else None


def represent(
    model_dir: str | Path,
    *,
    participants: int,
    days: int,
    seed: int,
    device: str = "cpu",
    keep_windows: bool = False,
) -> Representations:
    """Embeddings, hand-crafted features and labels of new simulated participants; their windows too if ``keep_windows``
    (the supervised baseline trains on them)."""
    model, mean, std = load_pretrained(model_dir, device)
    check_new_participants(model_dir, seed)
    cohort = make_cohort(participants=participants, days=days, seed=seed, history_days=days)
    embeddings, handcrafted, all_values, all_observed, owner = [], [], [], [], []
    for index in range(participants):
        minutes = cohort.participant(index).minutes
        embedding = embed_days(model, mean, std, minutes.values, minutes.mask, minutes.start_weekday)
        embeddings.append(embedding if embedding is not None else np.full(model.embedding_width, np.nan, np.float32))
        handcrafted.append(summary_features(minutes.values, minutes.mask))
        if keep_windows:
            observed = torch.tensor(np.ascontiguousarray(minutes.mask))
            values = standardize(torch.tensor(np.nan_to_num(minutes.values)), observed, mean, std)
            all_values.append(values)
            all_observed.append(observed)
            owner += [index] * len(values)
    windows = (
        Windows(torch.cat(all_values), torch.cat(all_observed), np.array(owner), model.config) if keep_windows else None
    )
    return Representations(np.array(embeddings), np.array(handcrafted), cohort.labels, windows)


def score(kind: str, truth: np.ndarray, predicted: np.ndarray, *, bootstrap: int = BOOTSTRAP) -> dict[str, Any]:
    """Metrics of one method on the test participants. ``predicted`` is values (regression) or class probabilities."""
    if kind == "regression":
        return {
            "mae": bootstrap_interval(mean_absolute_error, truth, predicted, resamples=bootstrap),
            "pearson_r": bootstrap_interval(
                lambda t, p: float(np.corrcoef(t, p)[0, 1]), truth, predicted, resamples=bootstrap
            ),
        }
    decided = predicted.argmax(axis=1)
    result = {
        "balanced_accuracy": bootstrap_interval(balanced_accuracy_score, truth, decided, resamples=bootstrap),
        "f1_macro": bootstrap_interval(
            lambda t, p: f1_score(t, p, average="macro"), truth, decided, resamples=bootstrap
        ),
    }
    result["auroc"] = bootstrap_interval(auroc, truth, predicted, resamples=bootstrap)  # None: one class among them
    return result


C_GRID = np.logspace(-4, 2, 13)  # logistic regression's inverse regularization, chosen by cross-validation
ALPHA_GRID = np.logspace(-2, 4, 13)  # ridge's regularization


# What a probe is (embedding and fit); a searched head's "beats the probe" holds against this probe only.
PROBE = "last layer pooled per channel; mean-imputed, standardized, rotated; cross-validated L2 regularization"


class RowSpan(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # scikit-learn is untyped
    """Rotate onto the span of the centred training rows when there are fewer rows than features (PCA with every
    component); otherwise pass the features through. An L2-penalized linear model's weights lie in that span, so
    the fitted probe predicts the same, fitted in at most as many dimensions as there are rows."""

    def fit(self, features: np.ndarray, labels: Any = None) -> "RowSpan":
        rows, columns = features.shape
        self.pca_ = PCA(svd_solver="full").fit(features) if rows < columns else None
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        return features if self.pca_ is None else np.asarray(self.pca_.transform(features))


def probe_pipeline(
    kind: str,
    *,
    cv: bool = False,
    folds: int = 5,
    seed: int = 0,
    regularization: float | None = None,
    standardized: bool = True,
    pca_components: int | None = None,
) -> Pipeline:
    """The linear probe (:data:`PROBE`): impute missing features by their training mean, (standardize,) rotate, then
    ridge or class-balanced logistic regression. Its
    regularization is chosen by ``folds``-fold cross-validation inside the training rows (``cv``), or given
    (``regularization``: ridge's alpha, logistic regression's C), or scikit-learn's default 1 (the old tables).

    The rotation is :class:`RowSpan` (or PCA to ``pca_components``): the same probe fitted in at most as many
    dimensions as there are rows (600 instead of 27 x 64 for the per-channel embedding). The
    logistic regression stops at a tolerance of 1e-3: with the rotation, 3x faster than the default 1e-4, its test
    AUROC within 0.0002 on the six tasks compared (issue 24)."""
    steps: list[Any] = [SimpleImputer(strategy="mean", keep_empty_features=True)]  # channels a device lacks
    steps += [StandardScaler()] if standardized else []
    steps.append(PCA(n_components=pca_components) if pca_components else RowSpan())
    if kind == "regression":
        steps.append(RidgeCV(alphas=ALPHA_GRID) if cv else Ridge(alpha=regularization or 1.0))
    elif cv:
        steps.append(
            LogisticRegressionCV(
                Cs=C_GRID,
                cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed),
                scoring="neg_log_loss",
                class_weight="balanced",
                max_iter=3000,
                tol=1e-3,
                l1_ratios=(0.0,),  # L2 only, scikit-learn 1.10's default (and no warning per fit)
                use_legacy_attributes=False,  # scikit-learn 1.10's attributes now (and no warning per fit)
            )
        )
    else:
        steps.append(LogisticRegression(C=regularization or 1.0, max_iter=3000, class_weight="balanced"))
    return make_pipeline(*steps)


def fit_probe(
    features: np.ndarray,
    labels: np.ndarray,
    kind: str,
    rows: np.ndarray,
    *,
    cv: bool = True,
    folds: int = 5,
    standardized: bool = True,
    pca_components: int | None = None,
) -> Pipeline | None:
    """The probe fitted on ``rows``, its regularization cross-validated where every class has at least two rows
    (fewer folds than ``folds`` where a class has fewer rows; C = 1 with one row per class); None when the rows hold
    one class only."""
    if kind != "regression":
        counts = np.bincount(labels[rows])
        present = counts[counts > 0]
        if len(present) < 2:
            return None
        folds = min(folds, int(present.min()))
        cv = cv and folds >= 2
    model = probe_pipeline(kind, cv=cv, folds=folds, standardized=standardized, pca_components=pca_components)
    return model.fit(features[rows], labels[rows])


def chosen_regularization(model: Pipeline) -> float | None:
    """The alpha or C a cross-validated probe chose (None for a probe with a fixed one)."""
    estimator = model[-1]
    chosen = getattr(estimator, "alpha_", None) if isinstance(estimator, RidgeCV) else getattr(estimator, "C_", None)
    return None if chosen is None else float(np.ravel(chosen)[0])


def class_probabilities(model: BaseEstimator, features: np.ndarray, classes: int) -> np.ndarray:
    """(rows, classes) probabilities; a class absent from the model's training rows gets 0."""
    probabilities = np.zeros((len(features), classes))
    probabilities[:, model.classes_] = model.predict_proba(features)
    return probabilities


def probe(
    features: np.ndarray,
    labels: np.ndarray,
    kind: str,
    train: np.ndarray,
    test: np.ndarray,
    *,
    pca: bool = False,
    bootstrap: int = BOOTSTRAP,
) -> dict[str, Any]:
    """The cross-validated probe (:func:`fit_probe`) fitted on ``train``, scored on ``test``."""
    pca_components = min(50, features.shape[1], len(train) - 1) if pca else None
    model = fit_probe(features, labels, kind, train, pca_components=pca_components)
    if model is None:
        return {"note": "only one class among the training participants"}
    return score(kind, labels[test], probe_predictions(model, features[test], labels, kind), bootstrap=bootstrap)


def probe_predictions(model: BaseEstimator, features: np.ndarray, labels: np.ndarray, kind: str) -> np.ndarray:
    """A fitted probe's predictions for ``features``: values for regression, else the probabilities of every class
    in ``labels`` (rows, classes)."""
    if kind == "regression":
        return np.asarray(model.predict(features))
    return class_probabilities(model, features, int(labels.max()) + 1)


def supervised(
    windows: Windows,
    labels: np.ndarray,
    kind: str,
    train: np.ndarray,
    test: np.ndarray,
    settings: SupervisedSettings,
    *,
    bootstrap: int = BOOTSTRAP,
) -> dict[str, Any]:
    if kind != "regression" and len(np.unique(labels[train])) < 2:
        return {"note": "only one class among the training participants"}
    predicted = fit_predict(
        windows.config, windows.values, windows.observed, windows.owner, labels, kind, train, test, settings
    )
    return score(kind, labels[test], predicted, bootstrap=bootstrap)


def few_shot_rows(labels: np.ndarray, train: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(
            train[labels[train] == value], size=min(per_class, int((labels[train] == value).sum())), replace=False
        )
        for value in np.unique(labels[train])
    ]
    return np.concatenate(chosen)


def evaluate(
    representations: Representations,
    *,
    seed: int = 0,
    few_shot: tuple[int, ...] = (1, 5, 10, 25),
    pca: bool = False,
    bootstrap: int = BOOTSTRAP,
    supervised_settings: SupervisedSettings | None = None,
    tasks: Sequence[Task] = TASKS,
    progress: Callable[[str, int, int], None] = lambda task, position, total: None,
) -> list[dict[str, Any]]:
    """One row per task: each method trained on the training participants (all, then k per class) and scored on the test ones.

    The supervised baseline runs when ``supervised_settings`` is given and the representations carry their windows.
    """
    train, test = participant_split(len(representations.embeddings), 0.3, seed)  # the test participants are scored once
    run_supervised = supervised_settings is not None and representations.windows is not None
    rows = []
    for position, task in enumerate(tasks):
        progress(task.name, position, len(tasks))
        labels = representations.labels[task.name]
        row: dict[str, Any] = {"task": task.name, "family": task.family, "kind": task.kind}
        subsets = [("", train)] + (
            [(f"_{k}_shot", few_shot_rows(labels, train, k, seed)) for k in few_shot]
            if task.kind != "regression"
            else []
        )
        for suffix, rows_k in subsets:
            row[f"pretrained{suffix}"] = probe(
                representations.embeddings, labels, task.kind, rows_k, test, pca=pca, bootstrap=bootstrap
            )
            row[f"handcrafted{suffix}"] = probe(
                representations.handcrafted, labels, task.kind, rows_k, test, bootstrap=bootstrap
            )
            if run_supervised:
                assert representations.windows is not None and supervised_settings is not None  # run_supervised
                row[f"supervised{suffix}"] = supervised(
                    representations.windows, labels, task.kind, rows_k, test, supervised_settings, bootstrap=bootstrap
                )
        rows.append(row)
    return rows


def _cell(result: dict[str, Any], metric: str) -> str:
    return interval_cell(result.get(metric) if result else None)


METHODS = ("pretrained", "handcrafted", "supervised")
METHOD_TITLES = {
    "pretrained": "pre-trained probe",
    "handcrafted": "hand-crafted",
    "supervised": "supervised from scratch",
}


def _summary(rows: list[dict[str, Any]], suffix: str, methods: list[str]) -> str:
    """Mean AUROC over classification tasks and mean Pearson r over regression tasks per method, and on how many tasks each is best."""
    parts = []
    for label, metric, chosen in (
        ("classification", "auroc", [row for row in rows if row["kind"] != "regression"]),
        ("regression", "pearson_r", [row for row in rows if row["kind"] == "regression"]),
    ):
        point = np.array(
            [[((row.get(method + suffix) or {}).get(metric) or [np.nan])[0] for method in methods] for row in chosen],
            dtype=float,
        )
        point = point[np.isfinite(point).any(axis=1)] if len(point) else point
        if not len(point):
            continue
        means = np.nanmean(point, axis=0)
        wins = np.bincount(np.where(np.isfinite(point), point, -np.inf).argmax(axis=1), minlength=len(methods))
        parts.append(
            f"{label} ({len(point)} tasks), mean {metric}: "
            + ", ".join(f"{METHOD_TITLES[m]} {means[i]:.3f} (best on {wins[i]})" for i, m in enumerate(methods))
        )
    return "; ".join(parts) + "."


def downstream_tables(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table on all training participants (every task), then one per few-shot size (classification tasks).

    A table is ``{"title", "summary", "columns", "rows"}`` of strings: rendered as markdown for the
    committed report and as HTML on the job's page.
    """
    methods = [method for method in METHODS if rows and any(method in row for row in rows)]
    suffixes = [
        "",
        *sorted(
            {key[len("pretrained") :] for row in rows for key in row if key.startswith("pretrained_")},
            key=lambda suffix: int(suffix.split("_")[1]),
        ),
    ]
    tables = []
    for suffix in suffixes:
        chosen = [row for row in rows if f"pretrained{suffix}" in row]
        cells = []
        for row in chosen:
            metric = "mae" if row["kind"] == "regression" else "auroc"
            cells.append(
                [row["task"], row["family"], metric]
                + [_cell(row.get(method + suffix, {}), metric) for method in methods]
            )
        tables.append(
            {
                "title": "All training participants"
                if not suffix
                else f"{suffix.split('_')[1]} labelled participants per class",
                "summary": _summary(chosen, suffix, methods),
                "columns": ["task", "family", "metric"] + [METHOD_TITLES[m] for m in methods],
                "rows": cells,
            }
        )
    return tables


def markdown(tables: list[dict[str, Any]], *, header: str) -> str:
    lines = [header]
    for table in tables:
        lines += ["", f"## {table['title']}", ""] + ([table["summary"], ""] if table.get("summary") else [])
        lines += ["| " + " | ".join(table["columns"]) + " |", "|" + "---|" * len(table["columns"])]
        lines += ["| " + " | ".join(row) + " |" for row in table["rows"]]
    return "\n".join(lines) + "\n"
