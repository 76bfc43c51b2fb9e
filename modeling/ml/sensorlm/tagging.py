"""The day's activities, when and for how long: a tagging head on the sensor tower's patch tokens (issue 26).

The contrastive embedding pools a day into one vector. A probe on it tells a run from a rest day but loses short or
look-alike bouts: at a precision that captions can state (0.9) it found a quarter of the activities
(``decoding.ActivityDetector``; walk's average precision 0.20). The tower's patch tokens still hold each time slot
(10 minutes for the committed model). :class:`ActivityTagger` reads them: for every slot, which activity kind fills
it or none, from the tokens of all channel groups at that slot and its neighbours (two 1-D convolutions over time, the
slot's clock time added). Runs of one kind become the day's activities with their start and duration
(:func:`activity_runs`), and a run is stated where its most confident slot reaches a threshold chosen on held-out
participants of the training days for a target precision (:func:`choose_threshold`). The tower stays frozen: the
tagger is a probe of what the pre-trained tokens hold, trained on the training days' event logs, the labels the
captions were written from. It is saved beside the model (:data:`TAGGER_WEIGHTS`, :data:`TAGGER_DESCRIPTION`).

:func:`tagged_captions` then decodes greedily with the caption's first sentence held to the tagged activities, in the
captioner's own words (``captions.activities_sentence``): the decoder writes the rest (the night, stress, shapes).
"""

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch import nn

from modeling.ml.data.activities import ACTIVITY_NAMES
from modeling.ml.data.spec import MINUTES_PER_DAY
from modeling.ml.sensorlm.captions import ACTIVITIES_OPENING, DayEvent, activities_sentence, stated_activities
from modeling.ml.sensorlm.decoding import constrained_captions
from modeling.ml.sensorlm.facts import fact_scores
from modeling.ml.sensorlm.model import SensorLMModel

TAGGER_WEIGHTS = "activity_tagger.safetensors"
TAGGER_DESCRIPTION = "activity_tagger.json"  # written last: a directory with it has a whole tagger
NONE = 0  # the label of a slot without an activity; kind i of ACTIVITY_NAMES is i + 1
PRECISION_TARGET = 0.95  # stated activities that happened, on held-out participants: a caption rarely invents one
THRESHOLDS = np.round(np.arange(0.30, 1.0, 0.01), 2)  # the candidates of :func:`choose_threshold`


# ---------------------------------------------------------------- inputs and labels


@torch.no_grad()
def slot_tokens(
    model: SensorLMModel, values: torch.Tensor, observed: torch.Tensor, weekday: torch.Tensor, batch: int = 64
) -> torch.Tensor:
    """(days, time slots, channel groups x dim) the frozen sensor tower's patch tokens of standardized windows, the
    channel groups of one time slot side by side; zeros for a patch without an observed minute."""
    return torch.cat([by_slot for by_slot, _ in _slot_batches(model, values, observed, weekday, batch)])


@torch.no_grad()
def slot_tokens_and_embeddings(
    model: SensorLMModel, values: torch.Tensor, observed: torch.Tensor, weekday: torch.Tensor, batch: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`slot_tokens` and the windows' (days, embed_dim) sensor embeddings (``model.embed_sensor``'s in eval mode,
    which encodes every observed patch) from one pass of the tower: the pooling reads the same encodings from the full
    grid, its missing patches masked (``model.embed_tokens``)."""
    if model.training:
        raise ValueError("slot tokens and embeddings are read from a model in eval mode (no patch dropped)")
    tokens, embeddings = [], []
    for by_slot, embedded in _slot_batches(model, values, observed, weekday, batch, embed=True):
        tokens.append(by_slot)
        embeddings.append(embedded)
    return torch.cat(tokens), torch.cat(embeddings)


def _slot_batches(
    model: SensorLMModel,
    values: torch.Tensor,
    observed: torch.Tensor,
    weekday: torch.Tensor,
    batch: int,
    embed: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Per batch of windows, the slot tokens (on the CPU) and, with ``embed``, the sensor embeddings (else empty)."""
    config = model.config
    for start in range(0, len(values), batch):
        rows = slice(start, start + batch)
        grid, present = model.sensor.token_grid(
            values[rows].to(model.device),
            observed[rows].to(model.device),
            weekday[rows].to(model.device) if config.calendar_features else None,
        )  # (days, groups * slots, dim), channel-major
        by_slot = grid.reshape(len(grid), config.channel_groups, config.time_patches, config.dim).permute(0, 2, 1, 3)
        embedded = model.embed_tokens(grid, ~present).cpu() if embed else grid.new_zeros(0)
        yield by_slot.reshape(len(grid), config.time_patches, -1).cpu(), embedded


def slot_labels(days: Sequence[Sequence[DayEvent]], patch_minutes: int) -> np.ndarray:
    """(days, slots) per slot of ``patch_minutes``, 1 + the index of the activity kind covering most of it, or
    :data:`NONE`. An activity labels a slot it covers for at least half the slot or half its own length (a 3-minute
    climb of stairs labels its slot)."""
    slots = MINUTES_PER_DAY // patch_minutes
    labels = np.full((len(days), slots), NONE, dtype=np.int64)
    for row, events in enumerate(days):
        covered = np.zeros(slots)
        for event in stated_activities(events):
            end = min(event.end_minute, MINUTES_PER_DAY)
            for slot in range(event.start_minute // patch_minutes, min(slots, math.ceil(end / patch_minutes))):
                overlap = min(end, (slot + 1) * patch_minutes) - max(event.start_minute, slot * patch_minutes)
                if overlap >= min(patch_minutes, event.duration_min) / 2 and overlap > covered[slot]:
                    covered[slot], labels[row, slot] = overlap, ACTIVITY_NAMES.index(event.name) + 1
    return labels


# ---------------------------------------------------------------- the head


class ActivityTagger(nn.Module):
    """(days, slots, width) patch tokens -> (days, slots, 1 + activity kinds) logits: normed tokens plus the slot's
    24-hour clock, a 3-slot then a 5-slot convolution over time (residual), a per-slot read-out."""

    def __init__(self, width: int, slots: int, hidden: int = 128):
        super().__init__()
        self.width, self.slots, self.hidden = width, slots, hidden
        middle = (torch.arange(slots) + 0.5) / slots * 2 * torch.pi
        self.register_buffer("clock_phase", torch.stack([middle.sin(), middle.cos()], dim=1), persistent=False)
        self.clock = nn.Linear(2, width)
        self.norm = nn.LayerNorm(width)
        self.near = nn.Conv1d(width, hidden, 3, padding=1)
        self.wide = nn.Conv1d(hidden, hidden, 5, padding=2)
        self.read_out = nn.Conv1d(hidden, len(ACTIVITY_NAMES) + 1, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.norm(tokens + self.clock(self.clock_phase)[None]).transpose(1, 2)  # (days, width, slots)
        x = F.gelu(self.near(x))
        x = F.gelu(self.wide(x)) + x
        logits: torch.Tensor = self.read_out(x).transpose(1, 2)
        return logits


def train_tagger(
    tokens: torch.Tensor,
    labels: np.ndarray,
    *,
    epochs: int = 30,
    batch: int = 64,
    learning_rate: float = 2e-3,
    seed: int = 0,
) -> ActivityTagger:
    """An :class:`ActivityTagger` fitted to ``labels`` (days, slots) of :func:`slot_labels` by cross-entropy over
    every slot (AdamW, weight decay 0.01); seeded."""
    torch.manual_seed(seed)
    tagger = ActivityTagger(int(tokens.shape[2]), int(tokens.shape[1]))
    optimizer = torch.optim.AdamW(tagger.parameters(), lr=learning_rate, weight_decay=1e-2)
    targets = torch.as_tensor(labels)
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for rows in torch.split(torch.randperm(len(tokens), generator=order), batch):
            logits = tagger(tokens[rows])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[rows].reshape(-1))
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()
    return tagger.eval()


@torch.no_grad()
def slot_probabilities(tagger: ActivityTagger, tokens: torch.Tensor, batch: int = 256) -> np.ndarray:
    """(days, slots, 1 + kinds) each slot's probability of no activity and of each kind."""
    return torch.cat([torch.softmax(tagger(part), dim=-1) for part in torch.split(tokens, batch)]).numpy()


# ---------------------------------------------------------------- from slots to activities


@dataclass(frozen=True)
class TaggedActivity:
    event: DayEvent  # the kind, its first slot's start and its slots' length
    confidence: float  # the probability of its kind at its most confident slot


def activity_runs(probabilities: np.ndarray, patch_minutes: int) -> list[list[TaggedActivity]]:
    """Per day of (days, slots, 1 + kinds) slot probabilities, its runs of slots whose most probable label is one
    activity kind, in time order; two runs of a kind one slot apart are one activity (a slot of doubt in a hike)."""
    days = []
    for day in probabilities:
        label = day.argmax(axis=1)
        runs: list[list[int]] = []  # [kind, first slot, last slot]
        for slot, kind in enumerate(label):
            if kind == NONE:
                continue
            if runs and runs[-1][0] == kind and slot - runs[-1][2] <= 2:
                runs[-1][2] = slot
            else:
                runs.append([int(kind), slot, slot])
        days.append(
            [
                TaggedActivity(
                    DayEvent(ACTIVITY_NAMES[kind - 1], first * patch_minutes, (last + 1) * patch_minutes),
                    float(day[first : last + 1, kind].max()),
                )
                for kind, first, last in runs
            ]
        )
    return days


def stated(runs: Sequence[Sequence[TaggedActivity]], threshold: float | None) -> list[list[DayEvent]]:
    """Per day, the activities whose confidence reaches ``threshold`` (None: none)."""
    return [[run.event for run in day if threshold is not None and run.confidence >= threshold] for day in runs]


def choose_threshold(
    runs: Sequence[Sequence[TaggedActivity]], truths: Sequence[str], precision: float = PRECISION_TARGET
) -> tuple[float | None, dict[str, Any]]:
    """The lowest of :data:`THRESHOLDS` at which the stated activities' precision against ``truths`` (each day's
    reference caption, ``facts.fact_scores``) reaches ``precision``, and the facts' scores there (scores on the days the
    threshold was chosen on: a little optimistic); None, stating nothing, where none does."""
    for threshold in THRESHOLDS:
        scores = fact_scores([activities_sentence(day) for day in stated(runs, float(threshold))], truths)
        if (scores["activity_precision"] or 0.0) >= precision:
            return float(threshold), scores
    return None, fact_scores([activities_sentence([]) for _ in runs], truths)


def fit_tagger(
    tokens: torch.Tensor,
    days: Sequence[Sequence[DayEvent]],
    *,
    fitting: np.ndarray,
    held_out: np.ndarray,
    patch_minutes: int,
    precision: float = PRECISION_TARGET,
    epochs: int = 30,
    seed: int = 0,
) -> "FittedTagger":
    """A tagger trained on the ``fitting`` rows of :func:`slot_tokens` ``tokens`` and their days' events, its
    threshold chosen on the ``held_out`` rows (other participants) for ``precision`` (:func:`choose_threshold`)."""
    labels = slot_labels(days, patch_minutes)
    tagger = train_tagger(tokens[fitting], labels[fitting], epochs=epochs, seed=seed)
    runs = activity_runs(slot_probabilities(tagger, tokens[held_out]), patch_minutes)
    truths = [activities_sentence(stated_activities(days[row])) for row in held_out]
    threshold, scores = choose_threshold(runs, truths, precision)
    description = {
        "precision_target": precision,
        "epochs": epochs,
        "seed": seed,
        "fitting_days": len(fitting),
        "held_out_days": len(held_out),
        "held_out": {
            name: scores[name] for name in ("activity_precision", "activity_recall", "days_without_false_activity")
        },
    }
    return FittedTagger(tagger, threshold, patch_minutes, description)


def opened_with_activities(
    captions: Sequence[str], activities: Sequence[Sequence[DayEvent]]
) -> tuple[list[str], list[bool]]:
    """Captions of days without an event log opened by the activities the tagger read (``activities``), and whether
    each was. A day it read none on keeps its caption: "No exercise or commute recorded." would state a record nobody
    kept, and a search then reads the day by the model's similarity instead (``find_days.zero_shot_share``)."""
    opened = [
        f"{activities_sentence(day)} {caption}" if day else caption
        for caption, day in zip(captions, activities, strict=True)
    ]
    return opened, [bool(day) for day in activities]


# ---------------------------------------------------------------- saved beside the model


@dataclass
class FittedTagger:
    tagger: ActivityTagger
    threshold: float | None  # None: no threshold reached the target precision, and nothing is stated
    patch_minutes: int
    description: dict[str, Any]  # how it was fitted and how it scored on held-out participants

    def activities(self, tokens: torch.Tensor) -> list[list[DayEvent]]:
        """Per day of :func:`slot_tokens`, the activities it states."""
        return stated(activity_runs(slot_probabilities(self.tagger, tokens), self.patch_minutes), self.threshold)


def remove_tagger(model_dir: Path) -> None:
    """Take away the tagger saved beside a model, its description first (then no half of it is read as whole)."""
    for name in (TAGGER_DESCRIPTION, TAGGER_WEIGHTS):
        (Path(model_dir) / name).unlink(missing_ok=True)


def save_tagger(fitted: FittedTagger, model_dir: Path) -> None:
    """The tagger's weights, then its description (the sign of a whole tagger), into ``model_dir``, each written
    beside and moved into place; an earlier tagger is taken away first."""
    model_dir = Path(model_dir)
    remove_tagger(model_dir)
    state = {name: value.detach().cpu().contiguous() for name, value in fitted.tagger.state_dict().items()}
    weights = model_dir / f"{TAGGER_WEIGHTS}.partial"
    save_file(state, weights)
    weights.replace(model_dir / TAGGER_WEIGHTS)
    description = fitted.description | {
        "width": fitted.tagger.width,
        "slots": fitted.tagger.slots,
        "hidden": fitted.tagger.hidden,
        "threshold": fitted.threshold,
        "patch_minutes": fitted.patch_minutes,
    }
    partial = model_dir / f"{TAGGER_DESCRIPTION}.partial"
    partial.write_text(json.dumps(description, indent=1))
    partial.replace(model_dir / TAGGER_DESCRIPTION)


def load_tagger(model_dir: Path, model: SensorLMModel | None = None) -> FittedTagger | None:
    """The tagger saved beside a model, or None for a model without one. Given the ``model``, a tagger fitted for
    another sensor tower (patch geometry or width) is refused with a message, not read."""
    model_dir = Path(model_dir)
    if not (model_dir / TAGGER_DESCRIPTION).exists():
        return None
    description = json.loads((model_dir / TAGGER_DESCRIPTION).read_text())
    if not (model_dir / TAGGER_WEIGHTS).exists():
        raise ValueError(f"{model_dir / TAGGER_DESCRIPTION} has no weights beside it: fit it again with `sensorlm tag`")
    config = None if model is None else model.config
    if config is not None and (description["width"], description["slots"], description["patch_minutes"]) != (
        config.channel_groups * config.dim,
        config.time_patches,
        config.patch_minutes,
    ):
        raise ValueError(
            f"the activity tagger in {model_dir} was fitted for another sensor tower (its patches or width): fit it "
            "again with `sensorlm tag`"
        )
    tagger = ActivityTagger(description["width"], description["slots"], description["hidden"])
    tagger.load_state_dict(load_file(model_dir / TAGGER_WEIGHTS))
    return FittedTagger(tagger.eval(), description["threshold"], description["patch_minutes"], description)


# ---------------------------------------------------------------- captions held to the tagged activities


class FirstSentence:
    """A ``CaptionConstraint`` of greedy decoding: each caption opens with its given sentence, token by token; the
    decoder writes on freely after it, except another activities sentence. One per call of ``generate_captions``."""

    def __init__(self, tokenizer: Tokenizer, sentences: Sequence[str]):
        self.forced = [list(tokenizer.encode(sentence, add_special_tokens=False).ids) for sentence in sentences]
        self.opening = tokenizer.encode(ACTIVITIES_OPENING, add_special_tokens=False).ids[0]

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        written = ids.shape[1] - 1  # tokens after [CLS]
        allowed = torch.ones(logits.shape, dtype=torch.bool)
        for row, forced in enumerate(self.forced):
            if written < len(forced):
                allowed[row] = False
                allowed[row, forced[written]] = True
            else:
                allowed[row, self.opening] = False
        return logits.masked_fill(~allowed.to(logits.device), -torch.inf)


def tagged_captions(
    model: SensorLMModel,
    tokenizer: Tokenizer,
    values: torch.Tensor,
    observed: torch.Tensor,
    weekday: torch.Tensor | None,
    activities: Sequence[Sequence[DayEvent]],
    *,
    max_tokens: int | None = None,
    batch: int = 64,
) -> list[str]:
    """Greedy captions of the standardized windows whose first sentence states, per day, ``activities`` in the
    captioner's words (``captions.activities_sentence``: kind, duration, part of the day and start)."""
    return constrained_captions(
        model,
        tokenizer,
        values,
        observed,
        weekday,
        lambda window: FirstSentence(tokenizer, [activities_sentence(day) for day in activities[window]]),
        max_tokens=max_tokens,
        batch=batch,
    )
