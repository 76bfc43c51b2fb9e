"""From timestamped samples to the minute grid, saying what was dropped and why.

Real exports have second-level heart rate, interval step counts, duplicates and overlapping
devices. Every importer reduces its samples to ``(local time, channel, value)`` rows, an interval
record to one row covering its minutes, and calls :func:`samples_to_grid`, which checks ranges,
drops duplicates, aggregates each channel with its own rule (sums for counts, the last stage for
sleep, means for the rest) and lays the result on day windows of shape (channels, 1440).
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from modeling.ml.data.spec import FEATURE_INDEX, FEATURES, MINUTES_PER_DAY, NUM_FEATURES

SUMMED_CHANNELS = {"steps", "activity_counts", "energy_expenditure", "altitude_gain", "floors", "eda_lability"}
LAST_VALUE_CHANNELS = {"sleep_stage"}
DEFAULT_MAX_MINUTE_DAYS = 90
# The longest interval record an importer accepts. The longest real ones are the day-long totals
# some apps write (25 hours across a clock change); a span of years is a corrupt or hostile file.
# Importers refuse a longer one, naming it, rather than clip it: laid on its minutes it would
# stand for data nobody recorded, and clipped it would hide that the file is broken.
MAX_SPAN_MINUTES = 2 * MINUTES_PER_DAY


@dataclass
class SourceReport:
    """What an import read, kept, converted and dropped: shown after the import and stored with the cohort."""

    source: str
    # Counts of files by kind, never their names: export file names carry dates and sometimes names.
    files: Counter = field(default_factory=Counter)
    samples_read: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    resampled: Counter = field(default_factory=Counter)  # channel -> samples merged into a minute
    notes: list[str] = field(default_factory=list)

    def drop(self, reason: str, count: int = 1) -> None:
        if count:
            self.dropped[reason] += int(count)

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "files": dict(self.files),
            "samples_read": self.samples_read,
            "dropped": dict(sorted(self.dropped.items())),
            "merged_into_minutes": dict(sorted(self.resampled.items())),
            "notes": self.notes,
        }


def samples_to_grid(
    samples: pd.DataFrame, report: SourceReport, *, max_days: int = DEFAULT_MAX_MINUTE_DAYS
) -> tuple[date, np.ndarray, np.ndarray]:
    """Lay ``samples`` (columns ``time``: local datetime64 at the source's resolution, ``channel``, ``value``) on a grid.

    An optional column ``minutes`` (default 1) makes a row an interval record: its value (already
    per minute) is laid on each of that many minutes from ``time``, but only on the kept days, so
    a long span costs no more than those days. Overlapping intervals may together cover at most
    as many minutes as the kept days have cells; more raises ``ValueError``.

    Duplicates are exact repeats of (time, channel, value) at the source's resolution; samples
    that merely share a minute are merged into it by the channel's rule.

    Returns the first day's date and values/mask of shape (days, channels, 1440). Only the last
    ``max_days`` days are kept (the report says so when more were present).
    """
    if samples.empty:
        raise ValueError("no minute-level samples")
    if "minutes" not in samples.columns:
        samples = samples.assign(minutes=1)
    report.samples_read += int(samples["minutes"].sum())
    samples = samples.dropna(subset=["value"])
    duplicates = samples.duplicated(subset=["time", "channel", "value", "minutes"])
    report.drop("exact duplicate samples", int(samples.loc[duplicates, "minutes"].sum()))
    samples = samples[~duplicates]
    if samples.empty:  # only missing values: the range check below cannot compare an empty column
        raise ValueError("no plausible minute-level samples")

    low = samples["channel"].map({f.name: f.valid_range[0] for f in FEATURES})
    high = samples["channel"].map({f.name: f.valid_range[1] for f in FEATURES})
    implausible = (samples["value"] < low) | (samples["value"] > high)
    for channel, count in samples.loc[implausible].groupby("channel")["minutes"].sum().items():
        report.drop(f"{channel}: outside the plausible range {FEATURES[FEATURE_INDEX[channel]].valid_range}", count)
    samples = samples[~implausible]
    if samples.empty:
        raise ValueError("no plausible minute-level samples")

    time = samples["time"].values.astype("datetime64[s]")
    length = samples["minutes"].values.astype(np.int64)
    channel = samples["channel"].map(FEATURE_INDEX).values.astype(np.int64)
    value = samples["value"].values.astype(np.float64)
    minute = time.astype("datetime64[m]")  # floors to the minute
    first_day = minute.min().astype("datetime64[D]")
    last_day = (minute + (length - 1)).max().astype("datetime64[D]")
    days = int((last_day - first_day).astype(int)) + 1
    if days > max_days:
        cut = last_day - np.timedelta64(max_days - 1, "D")
        # Minutes before the cut: all of a sample that ends before it, the head of an interval across it.
        before = np.clip(-((time - cut.astype("datetime64[s]")).astype(np.int64) // 60), 0, length)
        report.notes.append(
            f"minute-level data spans {days} days; only the last {max_days} are kept (sparse measurements keep all days)"
        )
        report.drop("minute-level samples before the kept days", int(before.sum()))
        keep = before < length
        time, length = time[keep] + before[keep] * np.timedelta64(60, "s"), length[keep] - before[keep]
        channel, value, first_day, days = channel[keep], value[keep], cut, max_days

    interval_minutes = int(length[length > 1].sum())
    if interval_minutes:
        cells = days * MINUTES_PER_DAY * NUM_FEATURES
        if interval_minutes > cells:
            raise ValueError(
                f"interval records cover {interval_minutes:,} minutes of {days} days, more than the grid's "
                f"{cells:,} cells (many overlapping records)"
            )
        rows = np.repeat(np.arange(len(length)), length)
        step = np.arange(len(rows)) - np.repeat(np.cumsum(length) - length, length)  # minute within its interval
        time, channel, value = time[rows] + step * np.timedelta64(60, "s"), channel[rows], value[rows]
        duplicates = pd.DataFrame({"time": time, "channel": channel, "value": value}).duplicated().values
        report.drop("exact duplicate samples", int(duplicates.sum()))
        time, channel, value = time[~duplicates], channel[~duplicates], value[~duplicates]
    minute = time.astype("datetime64[m]")

    offset = (minute - first_day.astype("datetime64[m]")).astype(np.int64)  # minutes since the first local midnight
    frame = pd.DataFrame({"offset": offset, "channel": channel, "value": value})
    values = np.full((NUM_FEATURES, days * MINUTES_PER_DAY), np.nan, dtype=np.float32)
    for channel_index, group in frame.groupby("channel", sort=False):
        name = FEATURES[channel_index].name
        grouped = group.groupby("offset")["value"]
        if name in SUMMED_CHANNELS:
            reduced = grouped.sum()
        elif name in LAST_VALUE_CHANNELS:
            reduced = grouped.last()
        else:
            reduced = grouped.mean()
        if len(group) > len(reduced):
            report.resampled[name] += len(group) - len(reduced)
        values[channel_index, reduced.index.values] = reduced.values
    mask = ~np.isnan(values)
    grid = values.reshape(NUM_FEATURES, days, MINUTES_PER_DAY).transpose(1, 0, 2)
    return (
        pd.Timestamp(first_day).date(),
        np.ascontiguousarray(grid),
        np.ascontiguousarray(mask.reshape(NUM_FEATURES, days, MINUTES_PER_DAY).transpose(1, 0, 2)),
    )
