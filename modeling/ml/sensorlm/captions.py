"""A deterministic hierarchical captioner of day windows, in the style of SensorLM.

Three levels, each selectable (the paper's caption-level ablation):

- **semantic**: what happened, from the event log: activities with duration and clock time, the night's
  sleep (length, timing, fragmentation), stress episodes, illness;
- **structural**: shapes in the signals: heart-rate climbs and how fast they settle, the largest
  level shift of heart rate, the step-rate peak, the stress-score trend;
- **statistical**: means, SDs and ranges of the main channels over the day and its four periods.

The levels are joined semantic first, so a text encoder that truncates a long caption drops
statistics before events. The same inputs always give the same words; no randomness anywhere.
"""

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modeling.ml.data.activities import ACTIVITY_NAMES
from modeling.ml.data.spec import FEATURE_INDEX, MINUTES_PER_DAY

LEVELS = ("semantic", "structural", "statistical")  # join order
READER_LEVELS = (
    "semantic",
    "structural",
)  # what a person reads beside a chart: events and shapes; the numbers are on the chart
PERIODS = (("night", 0, 360), ("morning", 360, 720), ("afternoon", 720, 1080), ("evening", 1080, 1440))
NO_DATA = "No wearable data this day."
ACTIVITIES_OPENING = "Activities:"  # the semantic level's first sentence lists the day's activities after these words
NO_ACTIVITIES = "No exercise or commute recorded."  # or says there were none
FRAGMENTED_AWAKENINGS_PER_HOUR = 1.0  # brief wakes per hour asleep above which a night reads as fragmented


@dataclass(frozen=True)
class DayEvent:
    """An event relative to the window's first minute; a night that began the evening before starts below 0."""

    name: str  # a simulator event kind: an activity name, "sleep", "stress" or "illness"
    start_minute: int
    end_minute: int

    @property
    def duration_min(self) -> int:
        return self.end_minute - self.start_minute


def events_of_day(events: Iterable[Any], day: int) -> list[DayEvent]:
    """The events overlapping day ``day`` (0-based), shifted to that day's minutes. ``events`` carry
    ``name`` or ``kind`` and start/end minutes from the participant's first minute-level minute."""
    offset = day * MINUTES_PER_DAY
    chosen = []
    for event in events:
        name = getattr(event, "name", None) or event.kind
        start, end = event.start_minute, event.end_minute
        if start is None or end is None or end <= offset or start >= offset + MINUTES_PER_DAY:
            continue
        chosen.append(DayEvent(name, int(start) - offset, int(end) - offset))
    return sorted(chosen, key=lambda event: (event.start_minute, event.name))


def clock(minute: float) -> str:
    minute = int(minute) % MINUTES_PER_DAY
    return f"{minute // 60:02d}:{minute % 60:02d}"


def part_of_day(minute: float) -> str:
    hour = (int(minute) % MINUTES_PER_DAY) // 60
    return (
        "morning" if 5 <= hour < 12 else "afternoon" if 12 <= hour < 17 else "evening" if 17 <= hour < 22 else "night"
    )


def activity_words(name: str) -> str:
    """How an activity kind is written in captions and prompts ("commute_walk" -> "commute walk")."""
    return name.replace("_", " ")


def _article(words: str) -> str:
    number = words.split("-")[0]
    spoken_with_vowel = number in ("8", "11", "18") or (
        len(number) == 2 and number.startswith("8")
    )  # eight, eleven, eighty-...
    return "an" if words[0] in "aeiou" or spoken_with_vowel else "a"


# ---------------------------------------------------------------- semantic


def stated_activities(events: Sequence[DayEvent]) -> list[DayEvent]:
    """The activities a day's caption states: events of an activity kind that began on the day."""
    return [event for event in events if event.name in ACTIVITY_NAMES and event.start_minute >= 0]


def activities_sentence(activities: Sequence[DayEvent]) -> str:
    """The semantic level's first sentence: each activity's duration, kind, part of the day and start, in the order
    given ("Activities: a 134-minute hike in the morning at 09:01."), or :data:`NO_ACTIVITIES`."""
    if not activities:
        return NO_ACTIVITIES
    parts = []
    for event in activities:
        phrase = f"{event.duration_min}-minute {activity_words(event.name)}"
        parts.append(
            f"{_article(phrase)} {phrase} in the {part_of_day(event.start_minute)} at {clock(event.start_minute)}"
        )
    return f"{ACTIVITIES_OPENING} " + ", ".join(parts) + "."


def _semantic(events: Sequence[DayEvent], stage: np.ndarray) -> list[str]:
    sentences = [activities_sentence(stated_activities(events))]

    nights = [
        event for event in events if event.name == "sleep" and event.start_minute < 12 * 60
    ]  # the night ending this morning
    if nights:
        night = max(nights, key=lambda event: event.duration_min)
        hours = night.duration_min / 60
        start, end = max(night.start_minute, 0), min(night.end_minute, MINUTES_PER_DAY)
        night_stage = stage[start:end]
        observed = ~np.isnan(night_stage)
        if observed.sum() >= 60:
            awake = np.nan_to_num(night_stage, nan=1.0) == 0
            awakenings = int(np.sum(np.diff(awake.astype(np.int8), prepend=0) == 1))
            per_hour = awakenings / (observed.sum() / 60)
            quality = (
                f"fragmented sleep with {awakenings} awakenings"
                if per_hour > FRAGMENTED_AWAKENINGS_PER_HOUR
                else f"consolidated sleep with {awakenings} awakenings"
            )
        else:
            quality = "sleep not tracked by the watch"
        length = "short" if hours < 6 else "long" if hours > 9 else "normal"
        sentences.append(
            f"Slept {hours:.1f} hours ({length} night) from {clock(night.start_minute)} to {clock(night.end_minute)}, {quality}."
        )
    else:
        sentences.append("No night sleep recorded.")

    stress = [event for event in events if event.name == "stress" and event.start_minute >= 0]
    if stress:
        total = sum(event.duration_min for event in stress)
        longest = max(stress, key=lambda event: event.duration_min)
        count = f"{len(stress)} stress episode" + ("s" if len(stress) > 1 else "")
        sentences.append(
            f"{count} ({total} minutes in total), the longest in the {part_of_day(longest.start_minute)} at {clock(longest.start_minute)}."
        )
    else:
        sentences.append("No stress episodes.")
    if any(event.name == "illness" for event in events):
        sentences.append("Signs of illness: fever and a raised heart rate.")
    return sentences


# ---------------------------------------------------------------- structural


def _smoothed(signal: np.ndarray, width: int) -> np.ndarray:
    """Moving mean over ``width`` minutes ignoring gaps; NaN where the window has no data."""
    present = ~np.isnan(signal)
    kernel = np.ones(width)
    sums = np.convolve(np.where(present, signal, 0.0), kernel, mode="same")
    counts = np.convolve(present.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts >= width / 3, sums / counts, np.nan)


def heart_rate_climbs(heart_rate: np.ndarray, *, minimum_rise_bpm: float = 30.0, most: int = 2) -> list[dict[str, Any]]:
    """Climbs of the 5-minute heart rate by at least ``minimum_rise_bpm`` above the hour before, largest first:
    ``{"from_bpm", "to_bpm", "start_minute", "settle_minutes"}`` (settle is None if it never settles that day)."""
    smooth = _smoothed(heart_rate, 5)
    climbs: list[dict[str, Any]] = []
    blocked = np.zeros(len(smooth), dtype=bool)
    candidates = np.where(np.isnan(smooth), -np.inf, smooth)
    for _ in range(most * 4):
        if len(climbs) == most:
            break
        peak = int(np.argmax(np.where(blocked, -np.inf, candidates)))
        if not np.isfinite(candidates[peak]) or blocked[peak]:
            break
        before = smooth[max(0, peak - 60) : peak + 1]
        if np.isnan(before).all():
            blocked[max(0, peak - 30) : peak + 30] = True
            continue
        base_index = max(0, peak - 60) + int(np.nanargmin(before))
        base, top = float(smooth[base_index]), float(smooth[peak])
        blocked[max(0, peak - 90) : peak + 90] = True
        if top - base < minimum_rise_bpm:
            continue
        halfway = base + 0.5 * (top - base)
        rising = np.flatnonzero(smooth[base_index : peak + 1] >= halfway)
        start = base_index + int(rising[0]) if rising.size else peak
        after = smooth[peak:]
        settled = np.flatnonzero(after <= base + 0.25 * (top - base))
        # settle: minutes from the end of the high plateau (last minute within 10 % of the peak) to back near the base
        plateau = np.flatnonzero(after[: settled[0]] >= top - 0.1 * (top - base)) if settled.size else np.array([])
        settle = int(settled[0] - (plateau[-1] if plateau.size else 0)) if settled.size else None
        climbs.append({"from_bpm": round(base), "to_bpm": round(top), "start_minute": start, "settle_minutes": settle})
    return climbs


def _round_minutes(minutes: int) -> int:
    return max(5, round(minutes / 5.0) * 5)


def _level_shift(signal: np.ndarray) -> tuple[int, float, float] | None:
    """The one split of half-hour means that best separates the day into two levels: (minute, before, after)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(signal.reshape(-1, 30), axis=1)  # (48,)
    present = np.flatnonzero(~np.isnan(means))
    if present.size < 8:
        return None
    series = means[present]
    best, best_gain = None, 0.0
    total_sse = np.sum((series - series.mean()) ** 2)
    for split in range(3, len(series) - 3):
        left, right = series[:split], series[split:]
        gain = total_sse - np.sum((left - left.mean()) ** 2) - np.sum((right - right.mean()) ** 2)
        if gain > best_gain:
            best, best_gain = split, gain
    if best is None:
        return None
    return int(present[best] * 30), float(series[:best].mean()), float(series[best:].mean())


def _structural(values: np.ndarray) -> list[str]:
    sentences = []
    heart_rate = values[FEATURE_INDEX["heart_rate"]]
    if (~np.isnan(heart_rate)).sum() < 120:
        sentences.append("Too little heart rate recorded for its shape.")
    else:
        for climb in heart_rate_climbs(heart_rate):
            settle = (
                f"settles within {_round_minutes(climb['settle_minutes'])} minutes"
                if climb["settle_minutes"] is not None
                else "stays high"
            )
            sentences.append(
                f"Heart rate climbs from {climb['from_bpm']} to {climb['to_bpm']} bpm at {clock(climb['start_minute'])} "
                f"and {settle}."
            )
        shift = _level_shift(heart_rate)
        if shift is not None and abs(shift[2] - shift[1]) >= 5:
            direction = "steps up" if shift[2] > shift[1] else "steps down"
            sentences.append(
                f"Heart rate {direction} from {round(shift[1])} to {round(shift[2])} bpm around {clock(shift[0])}."
            )
    steps = values[FEATURE_INDEX["steps"]]
    if (~np.isnan(steps)).any() and np.nanmax(steps) > 0:
        cadence = _smoothed(steps, 5)
        peak = int(np.nanargmax(cadence))
        sentences.append(f"Steps peak at {round(float(cadence[peak]))} per minute at {clock(peak)}.")
    stress = values[FEATURE_INDEX["stress_score"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        morning, evening = np.nanmean(stress[480:780]), np.nanmean(stress[1020:1320])
    if np.isfinite(morning) and np.isfinite(evening):
        trend = "rises" if evening - morning > 8 else "falls" if morning - evening > 8 else "stays level"
        sentences.append(
            f"Stress score {trend} from {round(morning)} in the morning to {round(evening)} in the evening."
        )
    return sentences


# ---------------------------------------------------------------- statistical

STATISTICS = (  # channel, words, unit, decimals
    ("heart_rate", "Heart rate", "bpm", 0),
    ("rmssd", "HRV (RMSSD)", "ms", 0),
    ("skin_temperature", "Skin temperature", "degrees", 1),
    ("stress_score", "Stress score", "", 0),
)


def _number(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}" if decimals else str(round(value))


def _statistical(values: np.ndarray) -> list[str]:
    sentences = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for channel, words, unit, decimals in STATISTICS:
            signal = values[FEATURE_INDEX[channel]]
            if (~np.isnan(signal)).sum() < 60:
                continue
            suffix = f" {unit}" if unit else ""
            periods = []
            for name, start, end in PERIODS:
                part = signal[start:end]
                if (~np.isnan(part)).sum() >= 30:
                    periods.append(f"{name} {_number(np.nanmean(part), decimals)}")
            sentences.append(
                f"{words} mean {_number(np.nanmean(signal), decimals)}{suffix} (SD {_number(np.nanstd(signal), decimals)}, "
                f"range {_number(np.nanmin(signal), decimals)} to {_number(np.nanmax(signal), decimals)}); "
                + ", ".join(periods)
                + "."
            )
        steps = values[FEATURE_INDEX["steps"]]
        if (~np.isnan(steps)).any():
            by_period = ", ".join(f"{name} {round(float(np.nansum(steps[start:end])))}" for name, start, end in PERIODS)
            sentences.append(f"Steps total {round(float(np.nansum(steps)))}; {by_period}.")
        worn = ~np.isnan(values).all(axis=0)
        sentences.append(f"Watch worn {round(100 * worn.mean())} percent of the day.")
    return sentences


# ---------------------------------------------------------------- the caption


def caption_day(values: np.ndarray, events: Sequence[DayEvent], levels: Sequence[str] = LEVELS) -> str:
    """The caption of one day window. ``values`` (channels, 1440) in the feature-spec order, NaN where not
    observed; ``events`` from :func:`events_of_day`; ``levels`` any subset of :data:`LEVELS`, written semantic first."""
    unknown = set(levels) - set(LEVELS)
    if unknown or not levels:
        raise ValueError(f"caption levels are a non-empty subset of {LEVELS}, not {sorted(unknown)}")
    if np.isnan(values).all():
        return NO_DATA
    sentences = []
    if "semantic" in levels:
        sentences += _semantic(events, values[FEATURE_INDEX["sleep_stage"]])
    if "structural" in levels:
        sentences += _structural(values)
    if "statistical" in levels:
        sentences += _statistical(values)
    return " ".join(sentences)


def caption_days(
    values: np.ndarray,
    mask: np.ndarray,
    events: Iterable[Any],
    levels: Sequence[str] = LEVELS,
    first_day: int = 0,
    *,
    event_log: bool | None = None,
) -> list[str]:
    """Captions of a participant's days ``values``/``mask`` (days, channels, 1440); ``events`` count minutes from
    the participant's first minute, and ``values[0]`` is the participant's day ``first_day``.

    ``event_log``: whether the participant has an event log at all (None: whether ``events`` holds any). Without one
    the semantic level is left out: "No exercise or commute recorded" would state what nobody recorded."""
    events = list(events)
    if not (bool(events) if event_log is None else event_log):
        levels = tuple(level for level in levels if level != "semantic") or ("structural",)
    observed_values = np.where(mask, values, np.nan)
    return [
        caption_day(observed_values[day], events_of_day(events, first_day + day), levels)
        for day in range(values.shape[0])
    ]


def main_activity(events: Sequence[DayEvent]) -> str | None:
    """The day's longest activity bout (the zero-shot classification label), or None on a day without one."""
    activities = stated_activities(events)
    return max(activities, key=lambda event: (event.duration_min, -event.start_minute)).name if activities else None
