"""Minute-level trajectories as one Parquet file per participant under ``TRAJECTORY_ROOT``.

Layout: one row per minute, one float32 column per channel of the feature spec (NaN where not
observed) plus ``observed_bits``, an int32 bit mask of the observed channels (bit i = channel i).
Each day is its own row group, so reading any window reads only that window's row groups and
only the requested columns.
"""

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from django.conf import settings

from modeling.ml.data.spec import FEATURE_NAMES, MINUTES_PER_DAY, NUM_FEATURES

MASK_COLUMN = "observed_bits"
_SCHEMA = pa.schema([pa.field(name, pa.float32()) for name in FEATURE_NAMES] + [pa.field(MASK_COLUMN, pa.int32())])
_BIT_WEIGHTS = (1 << np.arange(NUM_FEATURES, dtype=np.int64)).astype(np.int64)


class TrajectoryError(Exception):
    pass


def trajectory_root() -> Path:
    return Path(settings.TRAJECTORY_ROOT)


def write_trajectory(*, path: Path, values: np.ndarray, mask: np.ndarray, start_weekday: int) -> int:
    """Write ``values``/``mask`` of shape (days, channels, 1440) atomically; returns bytes written.

    The file appears under its final name only when complete (written beside it, then renamed).
    """
    days, channels, minutes = values.shape
    if (channels, minutes) != (NUM_FEATURES, MINUTES_PER_DAY) or mask.shape != values.shape:
        raise TrajectoryError(
            f"expected (days, {NUM_FEATURES}, {MINUTES_PER_DAY}) arrays, got {values.shape} and {mask.shape}"
        )
    flat_values = values.transpose(1, 0, 2).reshape(NUM_FEATURES, days * MINUTES_PER_DAY).astype(np.float32)
    flat_mask = mask.transpose(1, 0, 2).reshape(NUM_FEATURES, days * MINUTES_PER_DAY)
    flat_values = np.where(flat_mask, flat_values, np.nan).astype(np.float32)
    bits = (flat_mask.T.astype(np.int64) @ _BIT_WEIGHTS).astype(np.int32)
    table = pa.Table.from_arrays([pa.array(column) for column in flat_values] + [pa.array(bits)], schema=_SCHEMA)
    table = table.replace_schema_metadata({"healthagent": json.dumps({"days": days, "start_weekday": start_weekday})})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        pq.write_table(table, partial, row_group_size=MINUTES_PER_DAY, compression="zstd", use_dictionary=False)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path.stat().st_size


def read_window(
    *, path: Path, start_day: int, end_day: int, channels: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Days ``[start_day, end_day)`` of the chosen channels: values and mask of shape (days, channels, 1440).

    Reads only those days' row groups and those columns.
    """
    names = list(channels or FEATURE_NAMES)
    unknown = sorted(set(names) - set(FEATURE_NAMES))
    if unknown:
        raise TrajectoryError(f"unknown channels: {', '.join(unknown)}")
    try:
        parquet = pq.ParquetFile(path)
    except (FileNotFoundError, OSError) as error:
        raise TrajectoryError(f"trajectory file {path.name} cannot be read: {error}") from error
    available_days = parquet.metadata.num_row_groups
    start_day, end_day = max(0, start_day), min(end_day, available_days)
    if end_day <= start_day:
        return np.empty((0, len(names), MINUTES_PER_DAY), np.float32), np.empty((0, len(names), MINUTES_PER_DAY), bool)
    table = parquet.read_row_groups(list(range(start_day, end_day)), columns=[*names, MASK_COLUMN])
    days = end_day - start_day
    values = np.stack([table.column(name).to_numpy(zero_copy_only=False) for name in names]).astype(np.float32)
    bits = table.column(MASK_COLUMN).to_numpy()
    channel_bits = np.array([1 << FEATURE_NAMES.index(name) for name in names], dtype=np.int64)
    mask = (bits[None, :].astype(np.int64) & channel_bits[:, None]) != 0
    shape = (len(names), days, MINUTES_PER_DAY)
    return values.reshape(shape).transpose(1, 0, 2), mask.reshape(shape).transpose(1, 0, 2)


def trajectory_days(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_row_groups
