"""The supervised baseline: the foundation model's encoder, randomly initialized and trained end to
end on one task's labels, with a linear head on the mean-pooled encoding.

Each day window carries its participant's label; a participant's prediction is the mean of their
windows' predictions (class probabilities, or values for regression), as the probes average the
windows' embeddings; never-worn days are skipped on both sides, as the probes skip them. Training
uses the shared trainer (a GPU when there is one). Calendar features, when the config has them,
get the time of day but not the weekday here.
"""

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modeling.ml.lsm.model import LSMConfig, LSMForMaskedPretraining
from modeling.ml.train import TrainConfig, choose_device, train


@dataclass
class PredictionOutput:
    loss: torch.Tensor
    output: torch.Tensor


class LSMForWindowPrediction(nn.Module):
    """Encoder + linear head. ``outputs`` is the number of classes, or 1 for regression (targets standardized)."""

    class_weight: torch.Tensor  # buffer

    def __init__(self, config: LSMConfig, outputs: int, class_weight: torch.Tensor | None = None):
        super().__init__()
        encoder_only = LSMConfig(**{**config.to_dict(), "decoder_depth": 0})
        self.backbone = LSMForMaskedPretraining(encoder_only)
        # Mean-pooled encodings share a large common part (the positions) and vary little between windows;
        # a BatchNorm without affine parameters before the head rescales them, as in MAE's linear probing.
        self.head = nn.Sequential(
            nn.BatchNorm1d(config.dim, affine=False, momentum=None), nn.Linear(config.dim, outputs)
        )
        self.outputs = outputs
        self.register_buffer("class_weight", class_weight if class_weight is not None else torch.ones(max(outputs, 1)))

    def forward(
        self,
        values: torch.Tensor,
        observed: torch.Tensor,
        targets: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> PredictionOutput:
        output = self.head(self.backbone.pool(values, observed))
        if targets is None:
            loss = output.new_zeros(())
        elif self.outputs == 1:
            loss = F.mse_loss(output[:, 0], targets)
        else:
            loss = F.cross_entropy(output, targets, weight=self.class_weight)
        return PredictionOutput(loss=loss, output=output)


class LabelledWindows:
    def __init__(self, values: torch.Tensor, observed: torch.Tensor, targets: torch.Tensor):
        self.values, self.observed, self.targets = values, observed, targets

    def __len__(self) -> int:
        return self.values.shape[0]

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"values": self.values[indices], "observed": self.observed[indices], "targets": self.targets[indices]}


@dataclass
class SupervisedSettings:
    steps: int = 200
    epochs: int = 10  # few-shot subsets are tiny: cap the steps at this many passes over their windows
    batch_size: int = 16
    learning_rate: float = 1e-3
    seed: int = 0
    device: str = "cpu"
    progress: Callable[[int, int, dict[str, float]], None] = lambda step, total, metrics: None


@torch.no_grad()
def recalibrate(model: LSMForWindowPrediction, dataset: LabelledWindows, batch_size: int, device: str) -> None:
    """Recompute the head's batch-normalization statistics with the trained encoder. During training they
    average over batches from every stage of the encoder, early random ones included, which shifts and
    scales predictions at evaluation (regression MAEs several times too large)."""
    if len(dataset) < 2:
        return  # one window has no spread to normalize by: training's statistics stay
    starts = list(range(0, len(dataset), batch_size))
    if len(starts) > 1 and len(dataset) - starts[-1] == 1:
        starts.pop()  # a last batch of one window (batch normalization refuses it) joins the batch before
    norm = cast(nn.BatchNorm1d, model.head[0])
    norm.reset_running_stats()  # momentum None: the statistics become the plain average over these batches
    model.eval()
    norm.train()  # only the normalization collects statistics; the encoder runs as at evaluation
    for start, end in zip(starts, [*starts[1:], len(dataset)], strict=True):
        batch = dataset.batch(torch.arange(start, end))
        norm(model.backbone.pool(batch["values"].to(device), batch["observed"].to(device)))


def fit_predict(
    config: LSMConfig,
    values: torch.Tensor,
    observed: torch.Tensor,
    owner: np.ndarray,
    labels: np.ndarray,
    kind: str,
    train_people: np.ndarray,
    test_people: np.ndarray,
    settings: SupervisedSettings,
) -> np.ndarray:
    """Train on the windows of ``train_people``; return one prediction per test participant.

    Classification returns (test participants, classes) probabilities; regression returns values.
    ``owner`` gives the participant of each window; ``labels`` is indexed by participant.
    """
    device = choose_device(settings.device)
    torch.manual_seed(settings.seed)  # the same random initialization for every task
    worn = (
        observed.flatten(1).any(dim=1).numpy()
    )  # a never-worn day carries a label but no signal, as the probes skip it
    rows = np.flatnonzero(np.isin(owner, train_people) & worn)
    window_labels = labels[owner[rows]]
    if kind == "regression":
        centre, scale = float(window_labels.mean()), float(window_labels.std()) or 1.0
        targets = torch.tensor((window_labels - centre) / scale, dtype=torch.float32)
        model = LSMForWindowPrediction(config, 1)
    else:
        classes = int(labels.max()) + 1
        counts = np.bincount(window_labels, minlength=classes).astype(np.float32)
        weight = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / classes, 0.0)  # "balanced", as the probes
        targets = torch.tensor(window_labels, dtype=torch.long)
        model = LSMForWindowPrediction(config, classes, torch.tensor(weight, dtype=torch.float32))
    steps = min(settings.steps, max(1, math.ceil(settings.epochs * len(rows) / settings.batch_size)))
    train_config = TrainConfig(
        steps=steps,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        warmup_steps=max(1, steps // 10),
        checkpoint_every=steps + 1,
        log_every=1,
        seed=settings.seed,
    )
    dataset = LabelledWindows(values[rows], observed[rows], targets)
    with tempfile.TemporaryDirectory() as scratch:
        train(model, dataset, train_config, output_dir=Path(scratch), device=device, progress=settings.progress)
    recalibrate(model, dataset, settings.batch_size, device)
    model.eval()
    predictions = []
    with torch.no_grad():
        for person in test_people:
            windows = np.flatnonzero((owner == person) & worn)
            if not len(windows):  # never worn at all: the training windows' average answer
                windows = np.flatnonzero(owner == person)
            output = model(values[windows].to(device), observed[windows].to(device)).output
            if kind == "regression":
                predictions.append(float(output[:, 0].mean()) * scale + centre)
            else:
                predictions.append(output.softmax(dim=-1).mean(dim=0).cpu().numpy())
    return np.array(predictions)
