"""Daily summaries of minute-level days: what a wearable app shows, and hand-crafted features.

Works on any day grid of shape (days, channels, 1440) in the order of the feature spec, whatever
its source (simulator or import). A summary is ``None`` when the minutes behind it are missing.
"""

import warnings
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from modeling.ml.data.spec import FEATURE_INDEX, MINUTES_PER_DAY

# The night that ends on a day: from 18:00 the evening before to noon.
_EVENING_START = 18 * 60
_NOON = 12 * 60


def _channel(values: np.ndarray, mask: np.ndarray, name: str) -> np.ndarray:
    index = FEATURE_INDEX[name]
    return np.where(mask[:, index], values[:, index], np.nan)  # (days, 1440)


def _nanreduce(
    function: Callable[..., np.ndarray], array: np.ndarray, where: np.ndarray, minimum: int
) -> list[float | None]:
    """Apply a NaN-aware reduction per day over minutes where ``where`` holds; None if too few."""
    selected = np.where(where, array, np.nan)
    counts = np.sum(~np.isnan(selected), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reduced = function(selected, axis=1)
    return [float(value) if count >= minimum else None for value, count in zip(reduced, counts, strict=True)]


def daily_summaries(values: np.ndarray, mask: np.ndarray) -> list[dict[str, Any]]:
    """One dict per day: wear, steps, activity, sleep, resting heart rate, HRV and the rest."""
    days = values.shape[0]
    worn = cast(np.ndarray, mask.any(axis=1))  # (days, 1440); numpy's stub allows a scalar np.bool
    stage = _channel(values, mask, "sleep_stage")
    asleep = stage >= 1
    # Sleep minutes of the night ending on each day: yesterday evening plus this morning.
    evening = np.zeros(days)
    evening[1:] = asleep[:-1, _EVENING_START:].sum(axis=1)
    night_minutes = evening + asleep[:, :_NOON].sum(axis=1)
    stage_observed = ~np.isnan(stage)
    night_observed = stage_observed[:, :_NOON].sum(axis=1) + np.concatenate(
        [[0], stage_observed[:-1, _EVENING_START:].sum(axis=1)]
    )
    night_window = _NOON + np.where(np.arange(days) > 0, MINUTES_PER_DAY - _EVENING_START, 0)
    night_covered = night_observed >= 0.8 * night_window  # an off-wrist night has no sleep total

    heart_rate = _channel(values, mask, "heart_rate")
    met = _channel(values, mask, "met")
    steps = _channel(values, mask, "steps")
    # Awake and still; a channel the device lacks does not disqualify a minute (NaN compares False).
    still_and_awake = ~asleep & ~(met >= 1.6) & ~(steps > 0)
    summaries: list[dict[str, Any]] = []
    columns = {
        "resting_heart_rate_bpm": _nanreduce(
            lambda a, axis: np.nanpercentile(a, 10, axis=axis), heart_rate, still_and_awake, 30
        ),
        "hrv_rmssd_ms": _nanreduce(np.nanmean, _channel(values, mask, "rmssd"), asleep, 30),
        "spo2_mean_pct": _nanreduce(np.nanmean, _channel(values, mask, "spo2"), asleep, 30),
        "respiration_rate_bpm": _nanreduce(np.nanmean, _channel(values, mask, "respiration_rate"), asleep, 30),
        "skin_temperature_c": _nanreduce(np.nanmean, _channel(values, mask, "skin_temperature"), worn, 60),
        "stress_score": _nanreduce(np.nanmean, _channel(values, mask, "stress_score"), worn, 60),
    }
    steps_observed = (~np.isnan(steps)).sum(axis=1)
    met_observed = (~np.isnan(met)).sum(axis=1)
    for day in range(days):
        summaries.append(
            {
                "day": day,
                "wear_minutes": int(worn[day].sum()),
                "steps": int(np.nansum(steps[day])) if steps_observed[day] else None,
                "active_minutes": int(np.sum(met[day] >= 3.0)) if met_observed[day] else None,
                "sleep_minutes": int(night_minutes[day]) if night_covered[day] else None,
                **{name: column[day] for name, column in columns.items()},
            }
        )
    return summaries


assert MINUTES_PER_DAY == 1440  # the evening/noon offsets above assume minute resolution


SUMMARY_FIELDS = (
    "steps",
    "active_minutes",
    "sleep_minutes",
    "resting_heart_rate_bpm",
    "hrv_rmssd_ms",
    "spo2_mean_pct",
    "respiration_rate_bpm",
    "skin_temperature_c",
    "stress_score",
    "wear_minutes",
)


def summary_features(values: np.ndarray, mask: np.ndarray, *, percentiles: bool = True) -> np.ndarray:
    """Hand-crafted features of a participant's days: mean and SD (and 10th/90th percentiles) of each
    daily summary; 0 where a summary never had data. The baseline the learned models are compared with."""
    table = np.array(
        [
            [np.nan if day[name] is None else day[name] for name in SUMMARY_FIELDS]
            for day in daily_summaries(values, mask)
        ],
        dtype=float,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a summary a device never produces is all-NaN
        parts = [np.nanmean(table, axis=0), np.nanstd(table, axis=0)]
        if percentiles:
            parts += [np.nanpercentile(table, 10, axis=0), np.nanpercentile(table, 90, axis=0)]
    features: np.ndarray = np.nan_to_num(np.concatenate(parts))
    return features
