"""Simulated participants as twin records, and training windows of tokens.

Training participants get randomized interventions (a random one on a random day for most of
them) on top of the usual care the simulator applies, so the effect of an intervention token is
learnable from the data rather than confounded by who gets treated.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from modeling.ml.data.clinical import BIOMARKER_BY_NAME, INTERVENTIONS, Timeline, simulate_timeline
from modeling.ml.data.traits import Traits, sample_traits
from modeling.ml.twin.tokens import CODES, SUMMARY_BLOCK_DAYS, ParticipantRecord, Tokens

WEARABLE_BIOMARKERS = ("resting_heart_rate", "daily_steps", "sleep_minutes")
# A wearable day counts when the device was worn this long (the usual 10-hour validity rule of
# accelerometry), and a summary block needs this many such days; the site's records follow both rules.
MIN_WEAR_MINUTES = 600
MIN_WORN_DAYS_PER_BLOCK = 3
STATIC_CODES = np.array([index for index, (_, modality) in enumerate(CODES) if modality == "static"])
TREATMENT_CODES = np.array(
    [index for index, (_, modality) in enumerate(CODES) if modality in ("intervention", "medication")]
)
MAX_PINNED_TREATMENTS = 8


def pinned_window(tokens: Tokens, start: int, stop: int) -> np.ndarray:
    """Indices of a window of the non-static tokens [start, stop), led by the static tokens and by the
    treatments started before it (at most MAX_PINNED_TREATMENTS, the latest): no window forgets them."""
    static = np.isin(tokens.codes, STATIC_CODES)
    prefix, rest = np.flatnonzero(static), np.flatnonzero(~static)
    earlier = rest[:start]
    treatments = earlier[np.isin(tokens.codes[earlier], TREATMENT_CODES)][-MAX_PINNED_TREATMENTS:]
    return np.concatenate([prefix, treatments, rest[start:stop]])


def wearable_summaries(
    timeline: Timeline, *, days: int, compliance: float, block_days: int, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Block means of the daily wearable metrics (as the tokenizer would summarize daily values): the
    latent level over the worn days of each block plus the noise of averaging that many daily readings."""
    measurements = []
    for start in range(0, days, block_days):
        worn = np.flatnonzero(rng.random(min(block_days, days - start)) < compliance) + start
        if worn.size < MIN_WORN_DAYS_PER_BLOCK:
            continue
        for name in WEARABLE_BIOMARKERS:
            biomarker = BIOMARKER_BY_NAME[name]
            value = timeline.latent[name][worn].mean() + rng.normal(0.0, biomarker.measurement_sd / np.sqrt(worn.size))
            measurements.append({"day": int(worn[-1]), "name": name, "value": round(float(value), 2)})
    return measurements


def record_from_timeline(
    traits: Traits,
    index: int,
    timeline: Timeline,
    *,
    days: int,
    rng: np.random.Generator,
    wearable: bool,
    block_days: int = SUMMARY_BLOCK_DAYS,
) -> ParticipantRecord:
    deaths = [event["day"] for event in timeline.events if event["name"] == "death"]
    last_day = deaths[0] if deaths else days - 1
    measurements = [{"day": m["day"], "name": m["name"], "value": m["value"]} for m in timeline.measurements]
    if wearable:
        measurements += [
            m
            for m in wearable_summaries(
                timeline, days=days, compliance=float(traits.wear_compliance[index]), block_days=block_days, rng=rng
            )
            if m["day"] <= last_day
        ]
    return ParticipantRecord(
        age_years=float(traits.age_years[index]),
        sex="female" if traits.female[index] else "male",
        smoker=bool(traits.smoker[index]),
        measurements=measurements,
        events=[{"day": e["day"], "kind": e["kind"], "name": e["name"]} for e in timeline.events],
        last_day=last_day,
        height_m=float(traits.height_m[index]),
    )


@dataclass
class SimulatedRecords:
    traits: Traits
    records: list[ParticipantRecord]
    interventions: list[tuple[tuple[str, int], ...]]  # the randomized interventions each participant got
    # each participant's true (unmeasured) biomarker values on ``latent_day`` (``latent_on_day``), else empty
    latent: list[dict[str, float]] = field(default_factory=list)
    latent_day: int | None = None


def participant_stream(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index + 1,)))


def worn_blocks(days: list[int], *, block_days: int = SUMMARY_BLOCK_DAYS) -> set[int]:
    """The summary blocks (``day // block_days``) with enough valid wearable days to be summarized."""
    counts: dict[int, int] = {}
    for day in days:
        counts[day // block_days] = counts.get(day // block_days, 0) + 1
    return {block for block, count in counts.items() if count >= MIN_WORN_DAYS_PER_BLOCK}


def simulated_records(
    *,
    participants: int,
    days: int,
    seed: int,
    intervention_probability: float = 0.6,
    wearable_probability: float = 0.6,
    unknown_smoking_probability: float = 0.0,
    traits: Traits | None = None,
    latent_on_day: int | None = None,
    progress: Callable[[float, str], None] = lambda *args: None,
) -> SimulatedRecords:
    """``participants`` simulated people over ``days`` days; participant i is the same whatever the count.

    ``unknown_smoking_probability``: the share of records whose smoking status is withheld, as on the
    site, which does not record it; training uses it so a record without the smoker token is familiar.
    It draws from the participant's stream only when above 0, so other records stay as they were.
    ``latent_on_day``: keep each participant's true biomarker values on that day (a ceiling's inputs; a participant
    dead by then keeps the values of the day all the same). ``progress`` hears of every 200th participant."""
    traits = (
        traits
        if traits is not None
        else sample_traits(participants, np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,))))
    )
    if latent_on_day is not None and not 0 <= latent_on_day < days:
        raise ValueError(f"latent_on_day must be a day of the simulation, 0 to {days - 1}: got {latent_on_day}")
    records, given, latent = [], [], []
    for index in range(len(traits)):
        if index % 200 == 0:
            progress(index / len(traits), f"simulating participant {index + 1:,} of {len(traits):,}")
        stream = participant_stream(seed, index)
        interventions: tuple[tuple[str, int], ...] = ()
        if stream.random() < intervention_probability and days > 90:
            name = INTERVENTIONS[int(stream.integers(len(INTERVENTIONS)))].name
            interventions = ((name, int(stream.integers(30, days - 60))),)
        wearable = bool(stream.random() < wearable_probability)
        timeline = simulate_timeline(traits, index, days, stream, interventions=interventions)
        record = record_from_timeline(traits, index, timeline, days=days, rng=stream, wearable=wearable)
        if unknown_smoking_probability > 0 and stream.random() < unknown_smoking_probability:
            record.smoker = None
        records.append(record)
        given.append(interventions)
        if latent_on_day is not None:
            latent.append({name: float(values[latent_on_day]) for name, values in timeline.latent.items()})
    return SimulatedRecords(traits, records, given, latent, latent_on_day)


def window_indices(tokens: Tokens, block_size: int) -> list[tuple[np.ndarray, int]]:
    """The windows a timeline is cut into (:class:`TimelineWindows`): each one's token indices (:func:`pinned_window`)
    and where its own tokens begin among them, after the pinned static and treatment tokens."""
    static_count = int(np.isin(tokens.codes, STATIC_CODES).sum())
    chunk = block_size - static_count - MAX_PINNED_TREATMENTS
    rest = len(tokens) - static_count
    windows = []
    for start in range(0, max(rest, 1), chunk):
        keep = pinned_window(tokens, start, start + chunk)
        windows.append((keep, len(keep) - (min(start + chunk, rest) - start)))
    return windows


class TimelineWindows:
    """Token windows held in memory, right-padded to ``block_size``: what the shared trainer samples.

    A long timeline is cut into consecutive windows, each led by the participant's static tokens (sex,
    smoking) and the treatments already started (see :func:`pinned_window`); the age input is the age
    at day 0 either way.
    """

    def __init__(self, token_lists: list[Tokens], block_size: int):
        rows = [
            (tokens.ids[keep], tokens.days[keep], tokens.age_years)
            for tokens in token_lists
            for keep, _ in window_indices(tokens, block_size)
        ]
        count = len(rows)
        self.input_ids = torch.zeros(count, block_size, dtype=torch.long)
        self.days = torch.zeros(count, block_size, dtype=torch.long)
        self.valid = torch.zeros(count, block_size, dtype=torch.bool)
        self.age_years = torch.full((count,), float("nan"))
        for row, (ids, days, age) in enumerate(rows):
            length = len(ids)
            self.input_ids[row, :length] = torch.from_numpy(ids)
            self.days[row, :length] = torch.from_numpy(days)
            self.days[row, length:] = int(days[-1]) if length else 0  # padding repeats the last day: no phantom gaps
            self.valid[row, :length] = True
            if age is not None:
                self.age_years[row] = age

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids[indices],
            "days": self.days[indices],
            "age_years": self.age_years[indices],
            "valid": self.valid[indices],
        }
