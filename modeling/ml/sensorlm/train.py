"""Sensor-language pre-training on simulated participant-days and their captions, with the shared trainer.

Participants are split 80/20 before anything is fitted: the channel normalization, the caption
tokenizer and the model see training participants only; the held-out retrieval is on the others.
"""

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from modeling.ml.common.settings import setting
from modeling.ml.data.cohort import participant_split
from modeling.ml.data.spec import NUM_FEATURES
from modeling.ml.data.summaries import SUMMARY_FIELDS, daily_summaries
from modeling.ml.lsm.model import ENCODER_ARCHITECTURE, LSMConfig, parameter_count, standardize
from modeling.ml.lsm.pretrain import channel_statistics, simulated_days
from modeling.ml.sensorlm.captions import LEVELS, DayEvent, caption_day, events_of_day, main_activity
from modeling.ml.sensorlm.model import SensorLMConfig, SensorLMModel, load_sensorlm, save_sensorlm
from modeling.ml.sensorlm.tokenizer import encode, token_lengths, train_tokenizer
from modeling.ml.train import TrainConfig, train


@dataclass
class CaptionedDays:
    """Worn day windows of simulated participants (never-worn days left out), with what captions need."""

    values: np.ndarray  # (days, channels, 1440), NaN-free
    observed: np.ndarray  # (days, channels, 1440) bool
    owner: np.ndarray  # (days,) participant index
    day: np.ndarray  # (days,) the day within the participant's stay
    weekday: np.ndarray  # (days,) 0 = Monday
    events: list[list[DayEvent]]  # per day, in that day's minutes

    def captions(self, levels: Sequence[str] = LEVELS) -> list[str]:
        return [
            caption_day(np.where(observed, values, np.nan), events, levels)
            for values, observed, events in zip(self.values, self.observed, self.events, strict=True)
        ]

    def activities(self) -> list[str | None]:
        """Each day's longest activity bout (None on a day without one): the zero-shot labels."""
        return [main_activity(events) for events in self.events]

    def statistics(self) -> np.ndarray:
        """(days, features) hand-crafted statistics: the app's daily summaries and each channel's mean and SD."""
        return day_statistics(self.values, self.observed)

    def subset(self, rows: np.ndarray) -> "CaptionedDays":
        return CaptionedDays(
            self.values[rows],
            self.observed[rows],
            self.owner[rows],
            self.day[rows],
            self.weekday[rows],
            [self.events[row] for row in rows],
        )


def captioned_days(*, participants: int, days: int, seed: int) -> CaptionedDays:
    simulated = simulated_days(participants=participants, days=days, seed=seed, worn_only=True)
    return CaptionedDays(
        simulated.values,
        simulated.observed,
        simulated.owner,
        simulated.day,
        simulated.weekday,
        [
            events_of_day(events, int(day))
            for events, day in zip(simulated.participant_events, simulated.day, strict=True)
        ],
    )


def day_statistics(values: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """(days, features): daily summaries (steps, sleep, resting heart rate, ...) and per-channel mean and SD; 0 where absent."""
    summaries = np.array(
        [
            [np.nan if day[name] is None else day[name] for name in SUMMARY_FIELDS]
            for day in daily_summaries(values, observed)
        ],
        dtype=float,
    )
    masked = np.where(observed, values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        channel_mean, channel_sd = np.nanmean(masked, axis=2), np.nanstd(masked, axis=2)  # (days, channels)
    statistics: np.ndarray = np.nan_to_num(np.concatenate([summaries, channel_mean, channel_sd], axis=1))
    return statistics


class CaptionDataset:
    """Standardized windows and their tokenized captions, for the shared trainer."""

    def __init__(
        self,
        values: torch.Tensor,
        observed: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        weekday: torch.Tensor,
    ):
        self.values, self.observed, self.input_ids, self.attention_mask, self.weekday = (
            values,
            observed,
            input_ids,
            attention_mask,
            weekday,
        )

    def __len__(self) -> int:
        return self.values.shape[0]

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "values": self.values[indices],
            "observed": self.observed[indices],
            "input_ids": self.input_ids[indices],
            "attention_mask": self.attention_mask[indices],
            "weekday": self.weekday[indices],
        }


def standardized(data: CaptionedDays, mean: np.ndarray, std: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    observed = torch.tensor(data.observed)
    return standardize(torch.tensor(data.values), observed, torch.tensor(mean), torch.tensor(std)), observed


@torch.no_grad()
def embed_windows(
    model: SensorLMModel, values: torch.Tensor, observed: torch.Tensor, weekday: torch.Tensor, batch: int = 64
) -> torch.Tensor:
    """(windows, embed_dim) sensor embeddings, in batches."""
    device = model.device
    return torch.cat(
        [
            model.embed_sensor(
                values[i : i + batch].to(device), observed[i : i + batch].to(device), weekday[i : i + batch].to(device)
            ).cpu()
            for i in range(0, len(values), batch)
        ]
    )


@torch.no_grad()
def embed_texts(model: SensorLMModel, tokenizer: Tokenizer, texts: list[str], batch: int = 128) -> torch.Tensor:
    """(texts, embed_dim) text embeddings, in batches."""
    device = model.device
    parts = []
    for i in range(0, len(texts), batch):
        input_ids, attention_mask = encode(tokenizer, texts[i : i + batch], model.config.max_text_tokens)
        parts.append(model.embed_text(input_ids.to(device), attention_mask.to(device)).cpu())
    return torch.cat(parts)


def recall_at(similarity: torch.Tensor, k: int) -> float:
    """Fraction of rows whose matching column (the diagonal) is among their ``k`` most similar."""
    target = similarity.diagonal()[:, None]
    rank = (similarity > target).sum(dim=1)  # ties count in the row's favour
    return float((rank < k).float().mean())


def mean_rank_fraction(similarity: torch.Tensor) -> float:
    """Mean over rows of the matching column's rank among all columns, as a fraction (0 = always first, 0.5 = chance)."""
    target = similarity.diagonal()[:, None]
    rank = (similarity > target).sum(dim=1).float()
    return float((rank / max(1, similarity.shape[1] - 1)).mean())


SIZE_CHOICES = [("tiny", "tiny (CPU, minutes)"), ("small", "small (GPU)"), ("base", "base (GPU)")]
LOSS_CHOICES = [("clip", "CLIP (InfoNCE)"), ("siglip", "SigLIP (sigmoid)"), ("coca", "CoCa (contrastive + captioning)")]
LEVEL_CHOICES = [
    ("semantic", "semantic (events)"),
    ("structural", "structural (trends, peaks)"),
    ("statistical", "statistical (means, ranges)"),
]


@dataclass
class SensorLMTrainSettings:
    """A training run of the sensor-language model, as the command line (``sensorlm train``) and the site's job form
    take it."""

    size: str = setting("tiny", choices=SIZE_CHOICES)
    loss: str = setting("clip", choices=LOSS_CHOICES)
    caption_levels: list[str] = setting(list(LEVELS), "Caption levels.", choices=LEVEL_CHOICES, flags=("--levels",))
    participants: int = setting(200, "Simulated participants (80 % train, 20 % held out).", minimum=10, maximum=100_000)
    days: int = setting(3, minimum=1, maximum=60)
    steps: int = setting(300, minimum=1, maximum=1_000_000)
    batch_size: int = setting(32, "Contrastive losses need several days per batch.", minimum=2, maximum=4096)
    learning_rate: float = setting(2e-3, minimum=1e-6, maximum=1.0)
    seed: int = setting(0, minimum=0)
    patch_minutes: int = setting(
        0, "Minutes per sensor patch (0: the size's; tiny 60, or the foundation model's). Must divide 1440.", minimum=0
    )
    patch_channels: int = setting(
        0, "Channels per sensor patch (0: the size's, 1, or the foundation model's). Must divide 27.", minimum=0
    )
    decoder_depth: int = setting(
        0, "Layers of the caption decoder (coca; 0: the size's, tiny 1).", minimum=0, maximum=12
    )

    def config_overrides(self) -> dict[str, Any]:
        """The sensor tower's patch geometry and the caption decoder's depth where they differ from the named size's
        (0 keeps the size's)."""
        overrides = {
            "patch_minutes": self.patch_minutes,
            "patch_channels": self.patch_channels,
            "decoder_depth": self.decoder_depth,
        }
        return {name: value for name, value in overrides.items() if value}

    def check(self) -> None:
        """The patches must tile the day and the channels."""
        if self.patch_minutes and 1440 % self.patch_minutes:
            raise ValueError(f"patch_minutes: a patch of {self.patch_minutes} minutes must divide the day's 1,440")
        if self.patch_channels and 27 % self.patch_channels:
            raise ValueError(f"patch_channels: a patch of {self.patch_channels} channels must divide the 27")

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=self.seed,
            checkpoint_every=max(10, self.steps // 10),
            log_every=10,
        )


def train_sensorlm_with(
    settings: SensorLMTrainSettings,
    *,
    output_dir: Path,
    init_from: Path | None = None,
    device: str = "auto",
    progress: Callable[[int, int, dict[str, float]], None] = lambda *args: None,
) -> dict[str, Any]:
    """:func:`train_sensorlm` with the settings of a command line or a job."""
    return train_sensorlm(
        size=settings.size,
        participants=settings.participants,
        days=settings.days,
        seed=settings.seed,
        train_config=settings.train_config(),
        output_dir=output_dir,
        loss=settings.loss,
        levels=settings.caption_levels,
        init_from=init_from,
        device=device,
        progress=progress,
        **settings.config_overrides(),
    )


def train_sensorlm(
    *,
    size: str,
    participants: int,
    days: int,
    seed: int,
    train_config: TrainConfig,
    output_dir: Path,
    loss: str = "clip",
    levels: Sequence[str] = LEVELS,
    init_from: Path | None = None,
    device: str = "auto",
    vocabulary_size: int = 2000,
    progress: Callable[[int, int, dict[str, float]], None] = lambda *args: None,
    **config_overrides: Any,
) -> dict[str, Any]:
    """Train on 80 % of the participants, report held-out retrieval on the other 20 %, save model + tokenizer + normalization.

    ``init_from`` (a foundation-model checkpoint) starts the sensor tower from its encoder: the tower takes that
    encoder's architecture (patch geometry, width, depth; ``config_overrides`` may still set any of them, and a
    mismatch is refused) and the channel normalization it was trained with, so its weights see the inputs they know."""
    data = captioned_days(participants=participants, days=days, seed=seed)
    _, held_out_participants = participant_split(participants, 0.2, seed)
    is_train = ~np.isin(data.owner, held_out_participants)  # by participant, never by window
    captions = data.captions(levels)
    if init_from:  # the foundation model's encoder as it was trained: its architecture and its channel normalization
        lsm_config = LSMConfig.from_pretrained(init_from)  # fills what an older checkpoint's config left out
        config_overrides = {name: getattr(lsm_config, name) for name in ENCODER_ARCHITECTURE} | config_overrides
        lsm_normalization = json.loads((Path(init_from) / "normalization.json").read_text())
        mean = np.array(lsm_normalization["mean"], dtype=np.float32)
        std = np.array(lsm_normalization["std"], dtype=np.float32)
    else:
        mean, std = channel_statistics(data.values[is_train], data.observed[is_train])
    tokenizer = train_tokenizer(
        [caption for caption, keep in zip(captions, is_train, strict=True) if keep], vocabulary_size=vocabulary_size
    )
    config = SensorLMConfig.named(
        size,
        loss=loss,
        caption_levels=tuple(levels),
        vocabulary_size=tokenizer.get_vocab_size(),
        pad_token_id=tokenizer.token_to_id("[PAD]"),
        bos_token_id=tokenizer.token_to_id("[CLS]"),
        eos_token_id=tokenizer.token_to_id("[SEP]"),
        **config_overrides,
    )
    torch.manual_seed(train_config.seed)
    model = SensorLMModel(config)
    copied = model.init_sensor_from(init_from) if init_from else 0
    values, observed = standardized(data, mean, std)
    input_ids, attention_mask = encode(tokenizer, captions, config.max_text_tokens)
    weekday = torch.tensor(data.weekday)
    train_rows = torch.tensor(np.flatnonzero(is_train))
    dataset = CaptionDataset(
        values[train_rows], observed[train_rows], input_ids[train_rows], attention_mask[train_rows], weekday[train_rows]
    )
    result = train(model, dataset, train_config, output_dir=output_dir, device=device, progress=progress)
    model.train(False)  # evaluation mode: what PreTrainedModel.eval() does, which is unannotated
    held = torch.tensor(np.flatnonzero(~is_train))
    similarity = (
        embed_windows(model, values[held], observed[held], weekday[held])
        @ embed_texts(model, tokenizer, [captions[i] for i in held]).T
    )
    held_out = {f"held_out_sensor_to_text_r@{k}": recall_at(similarity, k) for k in (1, 5, 10)}
    held_out["held_out_chance_r@1"] = 1 / len(held)
    held_out["held_out_mean_rank_fraction"] = mean_rank_fraction(similarity)  # chance: 0.5
    model_dir = output_dir / "model"
    pretraining: dict[str, Any] = {"seed": seed, "participants": participants, "days": days}
    if init_from:  # its participants are this model's too: evaluation must avoid them (sensorlm.evaluate)
        inherited = json.loads((Path(init_from) / "normalization.json").read_text()).get("pretraining", {})
        pretraining["initialized_from"] = {"path": str(init_from), **inherited}
    from modeling.ml.sensorlm.tagging import remove_tagger  # here: tagging reads decoding, which reads this module

    remove_tagger(model_dir)  # an earlier run's, fitted to other weights
    save_sensorlm(
        model,
        tokenizer,
        {"mean": mean.tolist(), "std": std.tolist(), "clip": 5.0, "pretraining": pretraining},
        model_dir,
    )
    tagger = tag_activities(model, data, values, observed, weekday, is_train, model_dir, seed=seed)
    return {
        **result,
        **held_out,
        "parameters": parameter_count(model),
        "model_dir": str(model_dir),
        "loss_kind": loss,
        "caption_levels": list(levels),
        "encoder_tensors_from_lsm": copied,
        "train_windows": int(is_train.sum()),
        "held_out_windows": len(held),
        "held_out_participants": len(np.unique(data.owner[~is_train])),
        "vocabulary_size": tokenizer.get_vocab_size(),
        "channels": NUM_FEATURES,
        "caption_tokens": token_lengths(tokenizer, captions, config.max_text_tokens),
        "activity_tagger": tagger,
    }


def tag_activities(
    model: SensorLMModel,
    data: CaptionedDays,
    values: torch.Tensor,
    observed: torch.Tensor,
    weekday: torch.Tensor,
    is_train: np.ndarray,
    model_dir: Path,
    *,
    seed: int,
) -> dict[str, Any]:
    """Fit the activity tagger (``tagging.py``) on the training days' tokens and events, its threshold on the held-out
    participants' days, and save it beside the model; returns its description."""
    from modeling.ml.sensorlm.tagging import fit_tagger, save_tagger, slot_tokens  # see train_sensorlm

    fitted = fit_tagger(
        slot_tokens(model, values, observed, weekday),
        data.events,
        fitting=np.flatnonzero(is_train),
        held_out=np.flatnonzero(~is_train),
        patch_minutes=model.config.patch_minutes,
        seed=seed,
    )
    save_tagger(fitted, model_dir)
    return fitted.description | {"threshold": fitted.threshold}


def tag_saved_model(model_dir: Path, device: str = "cpu") -> dict[str, Any]:
    """Fit and save the activity tagger of a model trained before the tagger existed, on its own training days: the
    participants, days and seed in its ``normalization.json`` and the split :func:`train_sensorlm` made."""
    model, _, mean, std = load_sensorlm(model_dir, device)
    trained_on = json.loads((Path(model_dir) / "normalization.json").read_text())["pretraining"]
    participants, seed = trained_on["participants"], trained_on["seed"]
    data = captioned_days(participants=participants, days=trained_on["days"], seed=seed)
    _, held_out_participants = participant_split(participants, 0.2, seed)
    values, observed = standardized(data, mean.numpy(), std.numpy())
    is_train = ~np.isin(data.owner, held_out_participants)
    return tag_activities(model, data, values, observed, torch.tensor(data.weekday), is_train, model_dir, seed=seed)
