"""A short, real training run: an MLP predicting a downstream task from daily-summary features.

It exists so the job system has something small to run end to end (progress, live loss curves,
checkpoints, exact resume after a worker dies) before the foundation models arrive. Data come
from the physiology simulator, split by participant; the validation metric is on held-out
participants. No Django import: a job or ``python -m modeling.ml demo-train`` runs it.
"""

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modeling.ml.common.metrics import auroc
from modeling.ml.data.cohort import make_cohort
from modeling.ml.data.labels import TASK_BY_NAME
from modeling.ml.data.summaries import SUMMARY_FIELDS, summary_features


@dataclass
class DemoTrainingConfig:
    task: str = "hypertension"
    participants: int = 120
    days: int = 7
    seed: int = 0
    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 3e-3
    hidden: int = 64
    checkpoint_every: int = 50
    step_delay_s: float = 0.0  # slows each step down, so a demo's progress can be watched

    def __post_init__(self) -> None:
        task = TASK_BY_NAME.get(self.task)
        if task is None or task.kind != "binary":
            raise ValueError(f"task must be a binary task, e.g. hypertension, not {self.task!r}")
        if not (20 <= self.participants <= 5000 and 1 <= self.days <= 30 and 1 <= self.steps <= 100_000):
            raise ValueError("participants 20-5000, days 1-30, steps 1-100000")


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
    progress: Callable[[int, int, dict], None] = lambda step, total, metrics: None,
) -> dict:
    """Train, checkpointing every ``checkpoint_every`` steps; resume exactly from the last checkpoint.

    ``progress`` is called after every step; it may raise to stop the run (a cancelled job).
    Returns the final metrics, ``resumed_from_step`` and the path of the saved model.
    """
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    features, labels = participant_features(
        participants=config.participants, days=config.days, seed=config.seed, task=config.task
    )
    order = np.random.default_rng(config.seed).permutation(len(labels))
    held_out = order[: len(order) // 4]  # participants, never windows: each person is in one split only
    train_rows = order[len(order) // 4 :]
    mean, std = features[train_rows].mean(axis=0), features[train_rows].std(axis=0) + 1e-6
    x = torch.tensor((features - mean) / std, device=device)
    y = torch.tensor(labels, device=device)

    torch.manual_seed(config.seed)
    model = nn.Sequential(nn.Linear(x.shape[1], config.hidden), nn.GELU(), nn.Linear(config.hidden, 1)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-2)
    generator = torch.Generator().manual_seed(config.seed)
    state_path = checkpoint_dir / "training_state.pt"
    start_step = 0
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        start_step = state["step"]
    resumed_from = start_step

    train_index = torch.tensor(train_rows)
    loss_function = nn.BCEWithLogitsLoss()
    metrics: dict = {}
    for step in range(start_step, config.steps):
        batch = train_index[torch.randint(len(train_index), (config.batch_size,), generator=generator)]
        loss = loss_function(model(x[batch]).squeeze(-1), y[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        metrics = {"train_loss": loss.item()}
        done = step + 1
        if done % config.checkpoint_every == 0 or done == config.steps:
            with torch.no_grad():
                scores = model(x[torch.tensor(held_out)]).squeeze(-1).cpu().numpy()
            metrics["val_auroc"] = auroc(labels[held_out], scores)
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "step": done,
                },
                checkpoint_dir / "training_state.partial",
            )
            (checkpoint_dir / "training_state.partial").replace(state_path)  # a kill never leaves half a checkpoint
        if config.step_delay_s:
            time.sleep(config.step_delay_s)
        progress(done, config.steps, metrics)

    model_dir = checkpoint_dir / "model"
    model_dir.mkdir(exist_ok=True)
    torch.save(model.state_dict(), model_dir / "weights.pt")
    (model_dir / "config.json").write_text(
        json.dumps(
            {
                **asdict(config),
                "features": list(SUMMARY_FIELDS),
                "input_mean": mean.tolist(),
                "input_std": std.tolist(),
            },
            indent=2,
        )
    )
    return {
        "metrics": metrics,
        "resumed_from_step": resumed_from,
        "model_dir": str(model_dir),
        "held_out_participants": len(held_out),
    }
