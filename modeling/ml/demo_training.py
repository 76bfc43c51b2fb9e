"""A short, real training run: an MLP predicting a downstream task from daily-summary features.

It exists so the job system has something small to run end to end (progress, live loss curves,
checkpoints, exact resume after a worker dies) before the foundation models arrive. Data come
from the physiology simulator, split by participant; the validation metric is on held-out
participants. It trains with the library's one trainer; no Django import.
"""

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from modeling.ml.common.metrics import auroc
from modeling.ml.common.settings import setting, settings_check
from modeling.ml.data.cohort import make_cohort
from modeling.ml.data.labels import TASKS
from modeling.ml.data.summaries import SUMMARY_FIELDS, summary_features
from modeling.ml.train import TrainConfig
from modeling.ml.train import train as train_model

BINARY_TASKS = [(task.name, task.name) for task in TASKS if task.kind == "binary"]


@dataclass
class DemoTrainingConfig:
    """The demo run's settings, as its job form (made from them) and ``train`` take them."""

    task: str = setting("hypertension", choices=BINARY_TASKS)
    participants: int = setting(120, minimum=20, maximum=5000)
    days: int = setting(7, minimum=1, maximum=30)
    steps: int = setting(300, minimum=1, maximum=100_000)
    checkpoint_every: int = setting(50, minimum=1)
    learning_rate: float = setting(3e-3, minimum=1e-6, maximum=1.0)
    step_delay_s: float = setting(0.05, "Slows each step so progress can be watched.", minimum=0.0, maximum=5.0)
    seed: int = setting(0, minimum=0)
    batch_size: ClassVar[int] = 32  # fixed: the demo shows a run, not a tuning
    hidden: ClassVar[int] = 64  # width of the MLP's hidden layer

    def __post_init__(self) -> None:
        if self.task not in {name for name, _ in BINARY_TASKS}:
            raise ValueError(f"task must be a binary task, e.g. hypertension, not {self.task!r}")
        settings_check(self)  # every number in its range


@dataclass
class MLPOutput:
    loss: torch.Tensor
    logits: torch.Tensor  # (rows,)


class SummaryMLP(nn.Module):
    """Daily-summary features of a participant -> the logit of the task's label."""

    def __init__(self, features: int, hidden: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(features, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(
        self, features: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> MLPOutput:
        logits = self.layers(features).squeeze(-1)
        return MLPOutput(nn.functional.binary_cross_entropy_with_logits(logits, labels), logits)


class ParticipantRows:
    """The training participants' standardized features and labels, as the shared trainer draws batches."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, rows: np.ndarray):
        self.features, self.labels, self.rows = features, labels, torch.tensor(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = self.rows[indices]
        return {"features": self.features[rows], "labels": self.labels[rows]}


def participant_features(*, participants: int, days: int, seed: int, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Per participant, the mean and SD of each daily summary over their days, and the label."""
    cohort = make_cohort(participants=participants, days=days, seed=seed, history_days=days)
    rows = [
        summary_features(
            cohort.participant(index).minutes.values, cohort.participant(index).minutes.mask, percentiles=False
        )
        for index in range(participants)
    ]
    features = np.array(rows)
    return features.astype(np.float32), cohort.labels[task].astype(np.float32)


def train(
    config: DemoTrainingConfig,
    *,
    checkpoint_dir: Path,
    device: str = "cpu",
    progress: Callable[[int, int, dict[str, float | None]], None] = lambda step, total, metrics: None,
) -> dict[str, Any]:
    """Train with the library's one trainer (``modeling/ml/train.py``: checkpoints every ``checkpoint_every`` steps,
    exact resume), scoring the held-out participants' AUROC at each checkpoint.

    ``progress`` is called after every step with ``train_loss`` (and ``val_auroc`` at checkpoints); it may raise to
    stop the run (a cancelled job). Returns the final metrics, ``resumed_from_step`` and the saved model's path.
    """
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    features, labels = participant_features(
        participants=config.participants, days=config.days, seed=config.seed, task=config.task
    )
    order = np.random.default_rng(config.seed).permutation(len(labels))
    held_out = order[: len(order) // 4]  # participants, never windows: each person is in one split only
    train_rows = order[len(order) // 4 :]
    mean, std = features[train_rows].mean(axis=0), features[train_rows].std(axis=0) + 1e-6
    x = torch.tensor((features - mean) / std)
    y = torch.tensor(labels)
    torch.manual_seed(config.seed)
    model = SummaryMLP(x.shape[1], config.hidden)
    train_config = TrainConfig(
        steps=config.steps,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=1e-2,
        warmup_steps=1,
        checkpoint_every=config.checkpoint_every,
        log_every=config.checkpoint_every,
        seed=config.seed,
    )
    held_out_features = x[torch.tensor(held_out)]
    metrics: dict[str, float | None] = {}

    def report(step: int, total: int, trained: dict[str, float]) -> None:
        nonlocal metrics
        metrics = {"train_loss": trained["loss"]}
        if step % config.checkpoint_every == 0 or step == total:
            with torch.no_grad():
                device_now = next(model.parameters()).device
                scores = model.layers(held_out_features.to(device_now)).squeeze(-1).cpu().numpy()
            metrics["val_auroc"] = auroc(labels[held_out], scores)
        if config.step_delay_s:
            time.sleep(config.step_delay_s)
        progress(step, total, metrics)

    result = train_model(
        model,
        ParticipantRows(x, y, train_rows),
        train_config,
        output_dir=checkpoint_dir,
        device=device,
        progress=report,
    )
    model = model.cpu()
    model_dir = checkpoint_dir / "model"
    model_dir.mkdir(exist_ok=True)
    torch.save(model.layers.state_dict(), model_dir / "weights.pt")
    (model_dir / "config.json").write_text(
        json.dumps(
            {
                **asdict(config),
                "batch_size": config.batch_size,
                "hidden": config.hidden,
                "features": list(SUMMARY_FIELDS),
                "input_mean": mean.tolist(),
                "input_std": std.tolist(),
            },
            indent=2,
        )
    )
    return {
        "metrics": metrics,
        "resumed_from_step": result["resumed_from_step"],
        "model_dir": str(model_dir),
        "held_out_participants": len(held_out),
    }
