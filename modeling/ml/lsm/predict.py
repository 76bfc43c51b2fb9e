"""Per-participant task predictions with uncertainty, from the foundation model's frozen embeddings.

Probes are fitted on a labelled reference cohort (simulated participants with known labels). Each
task gets a quality measured once on reference participants held out from its fit (AUROC, or MAE
and Pearson r), then an ensemble of probes refitted on bootstrap resamples of every reference
participant. A new participant's prediction is the ensemble's mean, with a 90 % interval:

- classification: the probability of the predicted class and the 5th-95th percentile of that
  probability across the ensemble (the uncertainty of the probe, beside the probability itself);
- regression: the ensemble mean ± 1.645 SD, where the variance adds the ensemble's spread to the
  held-out residual variance, so the interval covers the person's value, not only the mean.
"""

import hashlib
import os
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import mean_absolute_error
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from modeling.ml.common.metrics import auroc
from modeling.ml.data.cohort import make_cohort, participant_split
from modeling.ml.data.labels import TASKS, Task
from modeling.ml.lsm.evaluate import (
    chosen_regularization,
    class_probabilities,
    fit_probe,
    probe_pipeline,
    represent,
)

Z_90 = 1.645


@dataclass
class TaskProbe:
    task: Task
    # held-out: {"auroc": ..} or {"mae": .., "pearson_r": ..}, and the number of held-out participants
    quality: dict[str, float | None]
    ensemble: list[Pipeline] = field(default_factory=list)
    residual_sd: float = 0.0  # regression only: SD of held-out residuals


def fit_probes(
    embeddings: np.ndarray,
    labels: dict[str, np.ndarray],
    *,
    tasks: Sequence[Task] = TASKS,
    replicates: int = 20,
    seed: int = 0,
) -> list[TaskProbe]:
    rng = np.random.default_rng(seed)
    participants = len(embeddings)
    train, test = participant_split(participants, 0.3, seed)
    probes = []
    for task in tasks:
        y = labels[task.name]
        held_out = fit_probe(embeddings, y, task.kind, train)  # regularization cross-validated on train
        if held_out is None:
            continue  # nothing to learn from one class
        if task.kind == "regression":
            predicted = held_out.predict(embeddings[test])
            residuals = y[test] - predicted
            quality: dict[str, float | None] = {
                "mae": float(mean_absolute_error(y[test], predicted)),
                "pearson_r": float(np.corrcoef(y[test], predicted)[0, 1]),
            }
            residual_sd = float(residuals.std())
        else:
            classes = len(task.classes)
            probabilities = class_probabilities(held_out, embeddings[test], classes)
            quality, residual_sd = {"auroc": auroc(y[test], probabilities)}, 0.0  # None: one class among them
        quality = {  # JSON has no NaN
            key: value if value is not None and np.isfinite(value) else None for key, value in quality.items()
        }
        quality["held_out_participants"] = len(test)
        ensemble: list[Pipeline] = []
        while len(ensemble) < replicates:
            rows = rng.integers(0, participants, participants)
            if task.kind != "regression" and len(np.unique(y[rows])) < 2:
                continue
            chosen = probe_pipeline(task.kind, regularization=chosen_regularization(held_out))
            ensemble.append(chosen.fit(embeddings[rows], y[rows]))
        probes.append(TaskProbe(task, quality, ensemble, residual_sd))
    return probes


def predict(probes: list[TaskProbe], embedding: np.ndarray) -> list[dict[str, Any]]:
    """The predictions for one participant's embedding (embedding width,)."""
    features = embedding[None, :]
    predictions = []
    for probe in probes:
        task = probe.task
        entry: dict[str, Any] = {
            "task": task.name,
            "family": task.family,
            "kind": task.kind,
            "description": task.description,
            "unit": task.unit,
            "quality": probe.quality,
        }
        if task.kind == "regression":
            values = np.array([model.predict(features)[0] for model in probe.ensemble])
            sd = float(np.sqrt(values.var() + probe.residual_sd**2))
            mean = float(values.mean())
            entry.update(estimate=mean, low=mean - Z_90 * sd, high=mean + Z_90 * sd)
        else:
            probabilities = np.array(
                [class_probabilities(model, features, len(task.classes))[0] for model in probe.ensemble]
            )
            mean = probabilities.mean(axis=0)
            chosen = int(mean.argmax())
            low, high = np.percentile(probabilities[:, chosen], [5, 95])
            entry.update(
                label=task.classes[chosen],
                estimate=float(mean[chosen]),
                low=float(low),
                high=float(high),
                probabilities={name: float(p) for name, p in zip(task.classes, mean, strict=True)},
            )
        predictions.append(entry)
    return predictions


# How a participant's days become the embedding the probes read; a new pooling makes every kept reference stale.
EMBEDDING = "last layer, mean per channel group (NaN where never observed), mean over the days it was observed"


def reference_fingerprint(model_dir: str | Path, *, participants: int, days: int, seed: int) -> str:
    """What the reference embeddings depend on: the model's weights, how days are embedded (:data:`EMBEDDING`), the
    simulator's behaviour (a digest of what it simulates for two participants of the same seed: a change to its
    output changes it, a comment or a type hint does not) and the cohort asked for."""
    digest = hashlib.sha256(f"{participants}/{days}/{seed}/{EMBEDDING}".encode())
    with (Path(model_dir) / "model.safetensors").open("rb") as weights:
        for chunk in iter(lambda: weights.read(1 << 20), b""):
            digest.update(chunk)
    sample = make_cohort(participants=2, days=1, seed=seed, history_days=1)
    for index in range(2):
        minutes = sample.participant(index).minutes
        digest.update(np.ascontiguousarray(minutes.values).tobytes() + np.ascontiguousarray(minutes.mask).tobytes())
    for name in sorted(sample.labels):
        digest.update(name.encode() + np.asarray(sample.labels[name]).tobytes())
    return digest.hexdigest()


def reference_cache_path(model_dir: str | Path, *, participants: int, days: int, seed: int) -> Path:
    return Path(model_dir) / f"reference-{participants}x{days}d-seed{seed}.npz"


def reference_representation(
    model_dir: str | Path, *, participants: int, days: int, seed: int, device: str = "cpu"
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(embeddings, labels) of the simulated reference cohort, kept beside the model: simulating and embedding it is
    most of a prediction job's time, and it depends only on the weights, the simulator and the cohort asked for (a
    kept file whose fingerprint no longer matches is computed again and replaced)."""
    fingerprint = reference_fingerprint(model_dir, participants=participants, days=days, seed=seed)
    path = reference_cache_path(model_dir, participants=participants, days=days, seed=seed)
    try:
        with np.load(path) as kept:
            if str(kept["fingerprint"]) == fingerprint:
                return kept["embeddings"], {
                    name[len("label/") :]: kept[name] for name in kept.files if name.startswith("label/")
                }
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # none kept, or a damaged file: computed again
        pass
    representations = represent(model_dir, participants=participants, days=days, seed=seed, device=device)
    # Written whole under a name of its own, then renamed: a reader never sees half a file, and two jobs of the
    # same model writing at once each rename a whole file.
    partial = path.with_name(f"{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial.npz")
    try:
        labels = {f"label/{name}": values for name, values in representations.labels.items()}
        np.savez_compressed(
            partial,
            fingerprint=np.array(fingerprint),
            embeddings=representations.embeddings.astype(np.float32),
            **labels,  # type: ignore[arg-type]  # numpy's stub types **kwds against allow_pickle: bool
        )
        os.replace(partial, path)
    except OSError:  # a read-only model folder: the probes are fitted all the same, only not kept
        partial.unlink(missing_ok=True)
    return representations.embeddings, representations.labels


def reference_probes(
    model_dir: str | Path, *, participants: int, days: int, seed: int, replicates: int, device: str = "cpu"
) -> list[TaskProbe]:
    """Probes fitted on a simulated labelled reference cohort embedded by the model in ``model_dir``."""
    embeddings, labels = reference_representation(
        model_dir, participants=participants, days=days, seed=seed, device=device
    )
    # Hundreds of small fits: one BLAS thread each is as fast on an idle machine (5.2 s against 5.1 s for the demo's
    # 300 participants, measured with the grand-mean embedding and C = 1; 36 CPU-s with the per-channel embedding and
    # cross-validated regularization) and ten times faster beside another job (5.2 s against 51 s at load 4.3), where
    # BLAS threads spin against the other worker's.
    with threadpool_limits(limits=1, user_api="blas"):
        return fit_probes(embeddings, labels, replicates=replicates, seed=seed)


def probe_quality_table(probes: list[TaskProbe]) -> dict[str, Any]:
    """The probes' held-out quality as a result table (title, summary, columns, rows)."""

    def shown(value: float | None, decimals: int) -> str:
        return "—" if value is None else f"{value:.{decimals}f}"

    rows = [
        [
            probe.task.name,
            probe.task.family,
            *(
                ("AUROC", shown(probe.quality["auroc"], 3))
                if "auroc" in probe.quality
                else ("MAE / Pearson r", f"{shown(probe.quality['mae'], 2)} / {shown(probe.quality['pearson_r'], 2)}")
            ),
        ]
        for probe in probes
    ]
    held_out = probes[0].quality["held_out_participants"] if probes else 0
    return {
        "title": "Probe quality on held-out reference participants",
        "summary": f"{held_out} simulated participants the probes were not fitted on.",
        "columns": ["task", "family", "metric", "held-out value"],
        "rows": rows,
    }
