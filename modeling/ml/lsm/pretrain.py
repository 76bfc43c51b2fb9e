"""Pre-training the wearable foundation model on simulated participants, held-out evaluation included."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from modeling.ml.common.settings import setting
from modeling.ml.data.cohort import make_cohort, participant_split
from modeling.ml.data.minutes import Event
from modeling.ml.lsm.model import SIZES, LSMConfig, LSMForMaskedPretraining, parameter_count, standardize
from modeling.ml.train import TrainConfig, WindowDataset, train


class SimulatedWindows(NamedTuple):
    values: np.ndarray  # (windows, channels, minutes), NaN-free
    observed: np.ndarray
    owner: np.ndarray  # (windows,) the participant of each window, in participant then day order
    weekday: np.ndarray  # (windows,) 0 = Monday


class SimulatedDays(NamedTuple):
    values: np.ndarray  # (windows, channels, minutes), NaN-free
    observed: np.ndarray
    owner: np.ndarray  # (windows,) the participant of each window, in participant then day order
    day: np.ndarray  # (windows,) the day within the participant's stay
    weekday: np.ndarray  # (windows,) 0 = Monday
    # (windows,) each window's participant's whole event list (minutes from their first minute)
    participant_events: list[list[Event]]


def simulated_days(*, participants: int, days: int, seed: int, worn_only: bool = False) -> SimulatedDays:
    """Day windows of a simulated cohort, with their day and their participant's events; ``worn_only`` leaves out
    days without any observed minute."""
    cohort = make_cohort(participants=participants, days=days, seed=seed, history_days=days)
    values, observed, owner, day_index, weekday, events = [], [], [], [], [], []
    for index in range(participants):
        minutes = cohort.participant(index).minutes
        kept = np.flatnonzero(minutes.mask.any(axis=(1, 2))) if worn_only else np.arange(minutes.days)
        values.append(np.nan_to_num(minutes.values[kept]))
        observed.append(minutes.mask[kept])
        owner += [index] * len(kept)
        day_index += kept.tolist()
        weekday += [(minutes.start_weekday + int(day)) % 7 for day in kept]
        events += [minutes.events] * len(kept)
    return SimulatedDays(
        np.concatenate(values),
        np.concatenate(observed),
        np.array(owner),
        np.array(day_index),
        np.array(weekday),
        events,
    )


def simulated_windows(*, participants: int, days: int, seed: int) -> SimulatedWindows:
    """Day windows of a simulated cohort."""
    simulated = simulated_days(participants=participants, days=days, seed=seed)
    return SimulatedWindows(simulated.values, simulated.observed, simulated.owner, simulated.weekday)


def channel_statistics(values: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = observed.sum(axis=(0, 2)).clip(min=1)
    mean = (values * observed).sum(axis=(0, 2)) / counts
    variance = (((values - mean[None, :, None]) ** 2) * observed).sum(axis=(0, 2)) / counts
    return mean.astype(np.float32), np.sqrt(variance).clip(min=1e-3).astype(np.float32)


SIZE_CHOICES = [
    ("tiny", "tiny (CPU, minutes)"),
    ("small", "small (GPU)"),
    ("base", "base (GPU)"),
    ("large", "large (GPU)"),
]
MASK_STRATEGIES = [(strategy, strategy) for strategy in ("aim", "random", "temporal", "channel", "aim_group")]


@dataclass
class PretrainSettings:
    """A pre-training run of the foundation model, as the command line (``lsm pretrain``) and the site's job form take it."""

    size: str = setting("tiny", choices=SIZE_CHOICES)
    participants: int = setting(64, "Simulated participants (80 % train, 20 % held out).", minimum=10, maximum=100_000)
    days: int = setting(4, minimum=1, maximum=60)
    steps: int = setting(200, minimum=1, maximum=1_000_000)
    batch_size: int = setting(8, minimum=1, maximum=4096)
    learning_rate: float = setting(1e-3, minimum=1e-6, maximum=1.0)
    mask_strategy: str = setting("aim", choices=MASK_STRATEGIES)
    checkpoint_every: int = setting(50, minimum=1)
    calendar_features: bool = setting(False, "Add time-of-day and day-of-week features to every patch.")
    seed: int = setting(0, minimum=0)
    patch_minutes: int = setting(0, "Minutes per patch (0: the size's; tiny 60). Must divide 1440.", minimum=0)
    patch_channels: int = setting(
        0,
        "Channels per patch (0: the size's, 1). Must divide 27; 27 makes each patch every channel's minutes.",
        minimum=0,
    )
    mask_ratio: float = setting(0.0, "Share of patches hidden in pre-training (0: the size's, 0.8).", minimum=0.0)
    width: int = setting(0, "Encoder width (0: the size's).", minimum=0)
    depth: int = setting(0, "Encoder blocks (0: the size's).", minimum=0)
    validate_every: int = setting(0, "Steps between held-out loss evaluations (0: at the end only).", minimum=0)

    def train_config(self, *, compile: bool = False) -> TrainConfig:
        return TrainConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            checkpoint_every=self.checkpoint_every,
            seed=self.seed,
            log_every=10,
            validate_every=self.validate_every,
            compile=compile,
        )

    def check(self) -> None:
        """The architecture these settings make must exist: patches tile the day and the channels, heads the width."""
        try:
            LSMConfig.named(self.size, **self.config_overrides())
        except ValueError as error:
            field = "patch_minutes" if self.patch_minutes else "patch_channels"
            minutes, channels = SIZES[self.size][5:7]
            raise ValueError(
                f"{field}: a patch of {self.patch_minutes or minutes} minutes x {self.patch_channels or channels} "
                "channel(s) must divide the day's 1,440 minutes and the 27 channels"
                if "patch" in str(error)
                else f"size: {error}"
            ) from error

    def config_overrides(self) -> dict[str, Any]:
        """The architecture settings that differ from the named size's (0 keeps the size's)."""
        overrides: dict[str, Any] = {"patch_minutes": self.patch_minutes, "patch_channels": self.patch_channels}
        overrides |= {"mask_ratio": self.mask_ratio, "dim": self.width, "depth": self.depth}
        return {name: value for name, value in overrides.items() if value}


def pretrain_with(
    settings: PretrainSettings,
    *,
    output_dir: Path,
    device: str = "auto",
    compile: bool = False,
    progress: Callable[[int, int, dict[str, float]], None] = lambda *args: None,
) -> dict[str, Any]:
    """:func:`pretrain` with the settings of a command line or a job."""
    return pretrain(
        size=settings.size,
        participants=settings.participants,
        days=settings.days,
        seed=settings.seed,
        train_config=settings.train_config(compile=compile),
        output_dir=output_dir,
        device=device,
        progress=progress,
        mask_strategy=settings.mask_strategy,
        calendar_features=settings.calendar_features,
        **settings.config_overrides(),
    )


def pretrain(
    *,
    size: str,
    participants: int,
    days: int,
    seed: int,
    train_config: TrainConfig,
    output_dir: Path,
    device: str = "auto",
    progress: Callable[[int, int, dict[str, float]], None] = lambda *args: None,
    **config_overrides: Any,
) -> dict[str, Any]:
    """Train on 80 % of the participants, report the reconstruction loss on the other 20 %, save the model."""
    values, observed, owner, weekday = simulated_windows(participants=participants, days=days, seed=seed)
    _, held_out = participant_split(participants, 0.2, seed)
    is_train = ~np.isin(owner, held_out)  # split by participant, never by window
    mean, std = channel_statistics(values[is_train], observed[is_train])

    def tensor(array: np.ndarray) -> torch.Tensor:  # a local shorthand
        return torch.tensor(array)

    standardized = standardize(tensor(values), tensor(observed), tensor(mean), tensor(std))
    config = LSMConfig.named(size, **config_overrides)
    model = LSMForMaskedPretraining(config)
    weekdays = tensor(weekday) if config.calendar_features else None
    dataset = WindowDataset(
        standardized[is_train], tensor(observed)[is_train], None if weekdays is None else weekdays[is_train]
    )
    held_values, held_observed = standardized[~is_train], tensor(observed)[~is_train]
    held_weekday = None if weekdays is None else weekdays[~is_train]

    def held_out_loss() -> float:
        """The reconstruction loss of the held-out participants' windows under the same masks every time."""
        generator = torch.Generator().manual_seed(seed)
        device_of = model.device
        weekday = None if held_weekday is None else held_weekday.to(device_of)
        losses = []
        for start in range(0, len(held_values), 256):
            window = slice(start, start + 256)
            output = model(
                held_values[window].to(device_of),
                held_observed[window].to(device_of),
                generator=generator,
                weekday=None if weekday is None else weekday[window],
            )
            losses.append(float(output.loss) * len(held_values[window]))
        return sum(losses) / max(len(held_values), 1)

    result = train(
        model, dataset, train_config, output_dir=output_dir, device=device, progress=progress, validate=held_out_loss
    )
    model.train(False)  # evaluation mode: what PreTrainedModel.eval() does, which is unannotated
    with torch.no_grad():
        validation_loss = held_out_loss()
    model_dir = output_dir / "model"
    model.save_pretrained(model_dir)
    (model_dir / "normalization.json").write_text(
        json.dumps(
            {
                "mean": mean.tolist(),
                "std": std.tolist(),
                "clip": 5.0,
                "pretraining": {"seed": seed, "participants": participants, "days": days},
            }
        )
    )
    return {
        **result,
        "validation_loss": validation_loss,
        "parameters": parameter_count(model),
        "model_dir": str(model_dir),
        "train_windows": int(is_train.sum()),
        "held_out_windows": int((~is_train).sum()),
        "held_out_participants": len(held_out),
    }


def load_pretrained(
    model_dir: str | Path, device: str = "cpu"
) -> tuple[LSMForMaskedPretraining, torch.Tensor, torch.Tensor]:
    """A saved model in eval mode, with the per-channel mean and SD it was trained with."""
    model = LSMForMaskedPretraining.from_pretrained(model_dir)
    model = model.to(device).eval()  # type: ignore[arg-type]  # @wraps on PreTrainedModel.to hides self from mypy
    normalization = json.loads((Path(model_dir) / "normalization.json").read_text())
    return model, torch.tensor(normalization["mean"]), torch.tensor(normalization["std"])


def check_new_participants(model_dir: str | Path, seed: int) -> None:
    """Refuse to evaluate on the simulated participants a model was pre-trained on: participant i of a
    seed is the same person whatever the cohort size, so the same seed would score training participants."""
    pretraining = json.loads((Path(model_dir) / "normalization.json").read_text()).get("pretraining", {})
    if pretraining.get("seed") == seed:
        raise ValueError(f"seed {seed} is the model's pre-training seed: use another seed so the participants are new")
