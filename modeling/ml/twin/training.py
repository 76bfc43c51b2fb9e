"""Training the twin on simulated participants, with a held-out loss on participants it never saw."""

import json
from collections.abc import Callable
from pathlib import Path

import torch

from modeling.ml.data.cohort import participant_split
from modeling.ml.train import TrainConfig, choose_device, train
from modeling.ml.twin.data import TimelineWindows, simulated_records
from modeling.ml.twin.model import HealthFormerConfig, HealthFormerModel, parameter_count
from modeling.ml.twin.tokens import Tokenizer


@torch.no_grad()
def windows_loss(model: HealthFormerModel, windows: TimelineWindows, *, batch_size: int = 32) -> dict:
    """Mean total, next-token and waiting-time losses over ``windows`` (weighted by windows)."""
    model.eval()
    totals = {"loss": 0.0, "token_loss": 0.0, "time_loss": 0.0}
    for start in range(0, len(windows), batch_size):
        indices = torch.arange(start, min(start + batch_size, len(windows)))
        batch = {key: value.to(model.device) for key, value in windows.batch(indices).items()}
        output = model(**batch)
        for key in totals:
            totals[key] += float(getattr(output, key)) * len(indices)
    return {key: value / max(len(windows), 1) for key, value in totals.items()}


def train_twin(
    *,
    size: str,
    participants: int,
    days: int,
    seed: int,
    train_config: TrainConfig,
    output_dir: Path,
    device: str = "auto",
    block_size: int = 512,
    bins: int = 24,
    unknown_smoking_probability: float = 0.25,
    progress: Callable[[int, int, dict], None] = lambda *args: None,
) -> dict:
    """Simulate, fit the tokenizer on the training participants, train, score held-out participants, save.

    The model directory (``output_dir/model``) holds config.json, the weights and tokenizer.json.
    """
    device = choose_device(device)
    simulated = simulated_records(
        participants=participants, days=days, seed=seed, unknown_smoking_probability=unknown_smoking_probability
    )
    train_indices, held_out_indices = participant_split(participants, 0.2, seed)
    tokenizer = Tokenizer.fit([simulated.records[i] for i in train_indices], bins=bins)
    train_windows = TimelineWindows([tokenizer.encode(simulated.records[i]) for i in train_indices], block_size)
    held_out_windows = TimelineWindows([tokenizer.encode(simulated.records[i]) for i in held_out_indices], block_size)
    model = HealthFormerModel(HealthFormerConfig.named(size, tokenizer, block_size=block_size))
    model = model.to(device)  # type: ignore[arg-type]  # @wraps on PreTrainedModel.to hides self from mypy
    before = windows_loss(model, held_out_windows)
    result = train(model, train_windows, train_config, output_dir=output_dir, device=device, progress=progress)
    after = windows_loss(model, held_out_windows)
    model_dir = output_dir / "model"
    model.save_pretrained(model_dir)
    tokenizer.save(model_dir / "tokenizer.json")
    training = {
        "seed": seed,
        "participants": participants,
        "days": days,
        "held_out_participants": len(held_out_indices),
        "train_windows": len(train_windows),
        "held_out_windows": len(held_out_windows),
        "steps": train_config.steps,
        "unknown_smoking_probability": unknown_smoking_probability,
        "held_out_loss_before": before,
        "held_out_loss": after,
        "parameters": parameter_count(model),
        "size": size,
    }
    (model_dir / "training.json").write_text(json.dumps(training, indent=1))
    return {**result, **training, "model_dir": str(model_dir)}


def load_twin(model_dir: Path, device: str = "cpu") -> tuple[HealthFormerModel, Tokenizer]:
    """A saved twin in eval mode and its tokenizer."""
    model = HealthFormerModel.from_pretrained(model_dir)
    model = model.to(device).eval()  # type: ignore[arg-type]  # @wraps on PreTrainedModel.to hides self from mypy
    return model, Tokenizer.load(Path(model_dir) / "tokenizer.json")


def training_seed(model_dir: Path) -> int | None:
    path = Path(model_dir) / "training.json"
    return json.loads(path.read_text()).get("seed") if path.exists() else None
