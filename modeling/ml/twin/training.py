"""Training the twin on simulated participants, with a held-out loss on participants it never saw."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modeling.ml.common.settings import setting
from modeling.ml.data.cohort import participant_split
from modeling.ml.train import TrainConfig, choose_device, train
from modeling.ml.twin.data import TimelineWindows, simulated_records
from modeling.ml.twin.model import HealthFormerConfig, HealthFormerModel, parameter_count
from modeling.ml.twin.tokens import Tokenizer

SIZE_CHOICES = [
    ("tiny", "tiny (CPU, minutes)"),
    ("small", "small (GPU)"),
    ("base", "base (GPU)"),
    ("large", "large (GPU)"),
]


@dataclass
class TwinTrainSettings:
    """A training run of the twin, as the command line (``twin train``) and the site's job form both take it."""

    size: str = setting("tiny", choices=SIZE_CHOICES)
    participants: int = setting(
        1000, "Simulated participants (80 % train, 20 % held out).", minimum=10, maximum=1_000_000
    )
    days: int = setting(730, "Days of timeline per participant.", minimum=90, maximum=3650)
    steps: int = setting(300, minimum=1, maximum=1_000_000)
    batch_size: int = setting(16, minimum=1, maximum=4096)
    learning_rate: float = setting(2e-3, minimum=1e-6, maximum=1.0)
    block_size: int = setting(256, "Tokens per training window.", minimum=32, maximum=8192)
    bins: int = setting(32, "Value bins per biomarker, denser in the tails (quantile_levels).", minimum=2, maximum=64)
    post_start_days: int = setting(
        90, "Days after a treatment start whose tokens' losses are weighted up (0: none).", minimum=0, maximum=3650
    )
    post_start_loss_weight: float = setting(
        4.0, "How many times those tokens' losses count.", minimum=1.0, maximum=100.0
    )
    treatment_by_level: bool = setting(True, "Input each treatment's ramp times each biomarker's latest value.")
    level_at_start: bool = setting(
        False, "With treatment_by_level: the biomarker's value when the treatment started, not its latest."
    )
    checkpoint_every: int = setting(50, minimum=1)
    seed: int = setting(0, minimum=0)

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            warmup_steps=min(100, max(1, self.steps // 10)),
            checkpoint_every=self.checkpoint_every,
            seed=self.seed,
            log_every=10,
        )


def train_twin_with(
    settings: TwinTrainSettings,
    *,
    output_dir: Path,
    device: str = "auto",
    continue_from: Path | None = None,
    progress: Callable[[int, int, dict[str, float]], None] = lambda *args: None,
    preparing: Callable[[float, str], None] = lambda *args: None,
) -> dict[str, Any]:
    """:func:`train_twin` with the settings of a command line or a job."""
    return train_twin(
        size=settings.size,
        participants=settings.participants,
        days=settings.days,
        seed=settings.seed,
        train_config=settings.train_config(),
        output_dir=output_dir,
        device=device,
        block_size=settings.block_size,
        bins=settings.bins,
        model_overrides={
            "post_start_days": settings.post_start_days,
            "post_start_loss_weight": settings.post_start_loss_weight,
            "treatment_by_level": settings.treatment_by_level,
            "level_at_start": settings.level_at_start,
        },
        continue_from=continue_from,
        progress=progress,
        preparing=preparing,
    )


@torch.no_grad()
def windows_loss(model: HealthFormerModel, windows: TimelineWindows, *, batch_size: int = 32) -> dict[str, float]:
    """Mean total, next-token and waiting-time losses over ``windows`` (weighted by windows)."""
    model.train(False)  # evaluation mode: what PreTrainedModel.eval() does, which is unannotated
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
    bins: int = 32,
    unknown_smoking_probability: float = 0.25,
    model_overrides: dict[str, Any] | None = None,
    continue_from: Path | None = None,
    progress: Callable[[int, int, dict[str, float]], None] = lambda *args: None,
    preparing: Callable[[float, str], None] = lambda *args: None,
) -> dict[str, Any]:
    """Simulate, fit the tokenizer on the training participants, train, score held-out participants, save.
    ``progress`` hears of the training steps, ``preparing`` of the participants simulated before them.

    The model directory (``output_dir/model``) holds config.json, the weights and tokenizer.json.
    ``model_overrides``: HealthFormerConfig fields (the loss weighting after treatment starts, the level input).
    ``continue_from``: a saved twin to train further on the participants of ``seed``, which must be new to it: its
    weights, tokenizer and configuration are kept (``size``, ``bins``, ``block_size`` and ``model_overrides`` are
    then not used), its risk calibration and hazard head are dropped (each belongs to the weights it was fitted on:
    run ``twin hazard`` and ``twin calibrate`` again), and training.json records the run it continues.
    """
    device = choose_device(device)
    previous: dict[str, Any] | None = None
    if continue_from is not None:
        previous = json.loads((Path(continue_from) / "training.json").read_text())
        if any(run.get("seed") == seed for run in training_chain(previous)):
            raise ValueError(f"seed {seed} is a seed the model already trained on: continue on new participants")
    simulated = simulated_records(
        participants=participants,
        days=days,
        seed=seed,
        unknown_smoking_probability=unknown_smoking_probability,
        progress=preparing,
    )
    train_indices, held_out_indices = participant_split(participants, 0.2, seed)
    if continue_from is None:
        tokenizer = Tokenizer.fit([simulated.records[i] for i in train_indices], bins=bins)
        model = HealthFormerModel(
            HealthFormerConfig.named(size, tokenizer, block_size=block_size, **(model_overrides or {}))
        )
    else:
        model, tokenizer = load_twin(Path(continue_from), "cpu")
        model.config.risk_calibration, model.config.risk_calibration_fit = {}, {}
        model.config.risk_calibration_without_height = {}
        model.config.hazard_endpoints, model.config.hazard_fit, model.hazard_head = (
            [],
            {},
            None,
        )  # it read the old trunk
        block_size = model.config.block_size
    train_windows = TimelineWindows([tokenizer.encode(simulated.records[i]) for i in train_indices], block_size)
    held_out_windows = TimelineWindows([tokenizer.encode(simulated.records[i]) for i in held_out_indices], block_size)
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
        "size": size if previous is None else previous["size"],
        **({} if previous is None else {"continued_from": previous}),
    }
    (model_dir / "training.json").write_text(json.dumps(training, indent=1))
    return {**result, **training, "model_dir": str(model_dir)}


def load_twin(model_dir: Path, device: str = "cpu") -> tuple[HealthFormerModel, Tokenizer]:
    """A saved twin in eval mode and its tokenizer."""
    model = HealthFormerModel.from_pretrained(model_dir)
    model = model.to(device).eval()  # type: ignore[arg-type]  # @wraps on PreTrainedModel.to hides self from mypy
    return model, Tokenizer.load(Path(model_dir) / "tokenizer.json")


def training_chain(training: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The runs behind a training.json, earliest first: a continued run's ``continued_from`` chain, then itself."""
    runs = []
    while training is not None:
        runs.append(training)
        training = training.get("continued_from")
    return runs[::-1]


def training_seeds(model_dir: Path, *, head: bool = True) -> set[int]:
    """The seeds of every cohort the model in ``model_dir`` trained on (a continued run's and the runs before it), and
    unless ``head`` is False its hazard head's (``twin hazard``; a head fitted again replaces it)."""
    path, config = Path(model_dir) / "training.json", Path(model_dir) / "config.json"
    runs = training_chain(json.loads(path.read_text()) if path.exists() else None)
    if head and config.exists():
        runs.append(json.loads(config.read_text()).get("hazard_fit") or {})
    return {int(run["seed"]) for run in runs if run.get("seed") is not None}


def training_runs(training: dict[str, Any]) -> str:
    """How the model trained, earliest run first: "14400 steps on 16000 simulated participants, seed 0, then ..."."""
    return ", then ".join(
        f"{run['steps']} steps on {run['participants']} simulated participants, seed {run['seed']}"
        for run in training_chain(training)
    )
