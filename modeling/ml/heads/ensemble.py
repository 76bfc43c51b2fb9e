"""A searched head made ready for use: a bootstrap ensemble, saved atomically, loaded, and asked for predictions.

The best spec of a task is refitted on bootstrap resamples of the train + validation participants;
the ensemble's mean is the prediction and its spread the uncertainty, like the linear probes of
``modeling.ml.lsm.predict``: for classification the 5th-95th percentile of the chosen class's
probability across members; for regression mean ± 1.645 SD, where the variance adds the
members' spread to the out-of-bag residual variance (each member predicts the people its
resample left out), so the interval covers the person's value, not only the mean.

On disk a head is a directory with ``head.json`` (spec, shapes, per-member target scaling,
metadata) and ``model.safetensors`` (the members' weights, keys ``<member>.<parameter>``),
written into a temporary sibling and renamed into place, so a reader never sees half a head.
"""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from modeling.ml.data.labels import Task
from modeling.ml.heads.model import build_head
from modeling.ml.heads.spec import HeadSpec, parse_spec
from modeling.ml.heads.train import TokenWindows, TrainedHead, fit_head, predict_people, predict_windows

Z_90 = 1.645


@dataclass
class HeadEnsemble:
    spec: HeadSpec
    kind: str
    outputs: int
    dim: int
    grid: tuple[int, int]
    members: list[TrainedHead]
    residual_sd: float = 0.0  # regression: SD of out-of-bag residuals
    metadata: dict[str, Any] = field(default_factory=dict)

    def predict_people(self, data: TokenWindows, people: np.ndarray) -> np.ndarray:
        """The ensemble's mean per person: values (people,) or class probabilities (people, classes)."""
        mean: np.ndarray = np.mean([predict_people(member, data, people) for member in self.members], axis=0)
        return mean


def fit_ensemble(
    spec: HeadSpec, data: TokenWindows, labels: np.ndarray, kind: str, people: np.ndarray, *, replicates: int, seed: int
) -> HeadEnsemble:
    """``replicates`` heads of ``spec``, each trained on a bootstrap resample of ``people`` (classification: two classes at least)."""
    rng = np.random.default_rng(seed)
    people = np.asarray(people)
    outputs = 1 if kind == "regression" else int(labels.max()) + 1
    members: list[TrainedHead] = []
    residuals: list[np.ndarray] = []
    while len(members) < replicates:
        resample = rng.choice(people, size=len(people), replace=True)
        if kind != "regression" and len(np.unique(labels[resample])) < 2:
            continue
        member = fit_head(spec, data, labels, kind, resample, seed=seed + len(members), classes=outputs)
        members.append(member)
        left_out = np.setdiff1d(people, resample)
        if kind == "regression" and len(left_out):
            residuals.append(labels[left_out] - predict_people(member, data, left_out))
    residual_sd = float(np.concatenate(residuals).std()) if residuals else 0.0
    return HeadEnsemble(spec, kind, outputs, int(data.tokens.shape[-1]), data.grid, members, residual_sd)


def save_ensemble(ensemble: HeadEnsemble, directory: Path) -> Path:
    """Write ``directory`` (head.json + model.safetensors) atomically: a complete head replaces any earlier one, or nothing changes."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        tensors = {
            f"{index}.{name}": value.detach().cpu().contiguous()
            for index, member in enumerate(ensemble.members)
            for name, value in member.module.state_dict().items()
        }
        save_file(tensors, staging / "model.safetensors")
        description = {
            "spec": ensemble.spec.model_dump(mode="json"),
            "kind": ensemble.kind,
            "outputs": ensemble.outputs,
            "dim": ensemble.dim,
            "grid": list(ensemble.grid),
            "residual_sd": ensemble.residual_sd,
            "members": [{"centre": member.centre, "scale": member.scale} for member in ensemble.members],
            "metadata": ensemble.metadata,
        }
        (staging / "head.json").write_text(json.dumps(description, indent=1, default=float))
        if directory.exists():
            retired = directory.with_name(f".{directory.name}-retired-{os.getpid()}")
            os.replace(directory, retired)
            os.replace(staging, directory)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def load_ensemble(directory: Path, device: str = "cpu") -> HeadEnsemble:
    directory = Path(directory)
    description = json.loads((directory / "head.json").read_text())
    spec = parse_spec(description["spec"])
    tensors = load_file(directory / "model.safetensors", device=device)
    members = []
    for index, scaling in enumerate(description["members"]):
        module = build_head(
            spec, dim=description["dim"], outputs=description["outputs"], grid=tuple(description["grid"])
        )
        prefix = f"{index}."
        module.load_state_dict(
            {name[len(prefix) :]: value for name, value in tensors.items() if name.startswith(prefix)}
        )
        members.append(TrainedHead(module.to(device).eval(), description["kind"], scaling["centre"], scaling["scale"]))
    return HeadEnsemble(
        spec,
        description["kind"],
        description["outputs"],
        description["dim"],
        tuple(description["grid"]),
        members,
        description["residual_sd"],
        description["metadata"],
    )


def head_prediction(ensemble: HeadEnsemble, task: Task, tokens: torch.Tensor, present: torch.Tensor) -> dict[str, Any]:
    """One person's prediction from their windows' token grids (windows, patches, dim), in the probes' format
    (``estimate``, ``low``, ``high``; ``label`` and ``probabilities`` for classification)."""
    values = np.array([predict_windows(member, tokens, present) for member in ensemble.members])
    if task.kind == "regression":
        mean, sd = float(values.mean()), float(np.sqrt(values.var() + ensemble.residual_sd**2))
        return {"estimate": mean, "low": mean - Z_90 * sd, "high": mean + Z_90 * sd}
    mean = values.mean(axis=0)
    chosen = int(mean.argmax())
    low, high = np.percentile(values[:, chosen], [5, 95])
    return {
        "label": task.classes[chosen],
        "estimate": float(mean[chosen]),
        "low": float(low),
        "high": float(high),
        "probabilities": {name: float(p) for name, p in zip(task.classes, mean, strict=True)},
    }
