"""Generic CSV / Parquet import, in a long or a wide layout.

Signals file (CSV or Parquet), one of:

* **long**: ``participant_id, timestamp, channel, value`` and optionally ``unit``;
* **wide**: ``participant_id, timestamp`` and one column per channel (names from the feature spec).

``timestamp`` is ISO 8601. What is stored is the participant's local clock time: a timestamp with
an offset (``2024-03-01T08:00:00-05:00``) is read as the local time it names (08:00). Timestamps
recorded in UTC (``...Z``) are converted with ``--timezone Europe/Berlin`` or similar.
Units are those of the feature spec; a ``unit`` column may name another unit where a conversion is
known (degF, fraction for SpO2, s for RR intervals), otherwise the line is rejected.

Demographics file (CSV, optional): ``participant_id, age`` (or ``birth_date``) ``, sex``. Any
other column (names, contact details) is never read.

Measurements file (CSV, optional): ``participant_id, timestamp, name, value, unit`` with names of
the biomarkers (``systolic_bp``, ``hba1c``, ``ldl``, ``weight``, ...) and ``height`` (cm, m or in; the twin reads
obesity against it: healthagent.cohort.measurements).
"""

import math
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from healthagent.cohort.anonymize import age_from_birth
from healthagent.cohort.importers.minute_grid import SourceReport, samples_to_grid
from healthagent.cohort.importing import CohortImportError, RawParticipant
from healthagent.cohort.measurements import HEIGHT, UNITS_AND_MODALITIES, height_problem
from modeling.ml.data.spec import FEATURE_NAMES, feature

_TIMESTAMP = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$")
UNIT_CONVERSIONS = {
    ("skin_temperature", "degF"): lambda v: (v - 32.0) * 5.0 / 9.0,
    ("spo2", "fraction"): lambda v: v * 100.0,
    ("rr_median", "s"): lambda v: v * 1000.0,
    ("rr_p20", "s"): lambda v: v * 1000.0,
    ("rr_p80", "s"): lambda v: v * 1000.0,
    ("rmssd", "s"): lambda v: v * 1000.0,
    ("sdnn", "s"): lambda v: v * 1000.0,
}
MEASUREMENT_CONVERSIONS = {
    ("weight", "lb"): lambda v: v * 0.45359237,
    ("fasting_glucose", "mmol/L"): lambda v: v * 18.016,
    ("ldl", "mmol/L"): lambda v: v * 38.67,
    ("hdl", "mmol/L"): lambda v: v * 38.67,
    (HEIGHT, "m"): lambda v: v * 100.0,
    (HEIGHT, "in"): lambda v: v * 2.54,
}


def _fail(where: str, row_index: int, problem: str) -> CohortImportError:
    return CohortImportError(f"{where} line {row_index + 2}: {problem}")  # +2: header line, 1-based


def read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".parquet":
            table = pq.read_table(path)
            table.validate(full=True)  # only a full check finds strings that are not UTF-8 in a damaged file
            return table.to_pandas()
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except FileNotFoundError as error:
        raise CohortImportError(f"{path.name}: no such file") from error
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as error:
        raise CohortImportError(
            f"{path.name}: cannot be read as {'Parquet' if path.suffix.lower() == '.parquet' else 'CSV'}: {error}"
        ) from error


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], where: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        # The columns found are not listed: without a header line they would be a participant's data.
        raise CohortImportError(
            f"{where}: missing column(s) {', '.join(missing)} (the first line must name the columns)"
        )


def local_times(strings: pd.Series, *, where: str, timezone: str | None = None) -> np.ndarray:
    """Local wall-clock times (datetime64[s]) of ISO 8601 strings; see the module docstring."""
    text = strings.astype(str)
    parts = text.str.extract(_TIMESTAMP)
    bad = parts[0].isna()
    if bad.any():
        row = int(np.flatnonzero(bad.values)[0])
        raise _fail(where, row, f"{text.iloc[row]!r} is not an ISO 8601 timestamp")
    clock = parts[1].where(parts[1].str.len() == 8, parts[1] + ":00")
    wall = pd.to_datetime(parts[0] + "T" + clock, format="%Y-%m-%dT%H:%M:%S", errors="coerce")
    if wall.isna().any():
        row = int(np.flatnonzero(wall.isna().values)[0])
        raise _fail(where, row, f"{text.iloc[row]!r} is not a valid date and time")
    result = wall.values.astype("datetime64[s]")
    if timezone:
        utc_rows = parts[2].isin(["Z", "+00:00", "+0000"]).values
        if utc_rows.any():
            try:
                converted = (
                    pd.to_datetime(wall[utc_rows]).dt.tz_localize("UTC").dt.tz_convert(timezone).dt.tz_localize(None)
                )
            except Exception as error:  # zoneinfo raises several types for an unknown zone
                raise CohortImportError(f"{where}: unknown time zone {timezone!r}") from error
            result[utc_rows] = converted.values.astype("datetime64[s]")
    return result


def _numbers(values: pd.Series, where: str, what: str = "value") -> np.ndarray:
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna() & values.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.values)[0])
        raise _fail(where, row, f"{what} {values.iloc[row]!r} is not a number")
    return numeric.values.astype(float)


def _long_samples(frame: pd.DataFrame, where: str, timezone: str | None) -> pd.DataFrame:
    _require_columns(frame, ("participant_id", "timestamp", "channel", "value"), where)
    channels = frame["channel"].astype(str).str.strip()
    unknown = ~channels.isin(FEATURE_NAMES)
    if unknown.any():
        row = int(np.flatnonzero(unknown.values)[0])
        raise _fail(where, row, f"unknown channel {channels.iloc[row]!r} (known: {', '.join(FEATURE_NAMES)})")
    values = _numbers(frame["value"], where)
    if "unit" in frame.columns:
        units = frame["unit"].fillna("").astype(str).str.strip()
        expected = channels.map(lambda name: feature(name).unit)
        for (channel, unit), rows in frame.groupby([channels, units]).groups.items():
            if unit in ("", feature(channel).unit):
                continue
            convert = UNIT_CONVERSIONS.get((channel, unit))
            if convert is None:
                row = int(frame.index.get_indexer([rows[0]])[0])
                raise _fail(where, row, f"{channel} is measured in {expected.iloc[row]}, not {unit!r}")
            positions = frame.index.get_indexer(rows)
            values[positions] = convert(values[positions])
    return pd.DataFrame(
        {
            "participant_id": frame["participant_id"].astype(str).str.strip().values,
            "time": local_times(frame["timestamp"], where=where, timezone=timezone),
            "channel": channels.values,
            "value": values,
        }
    )


def _wide_samples(frame: pd.DataFrame, where: str, timezone: str | None) -> pd.DataFrame:
    _require_columns(frame, ("participant_id", "timestamp"), where)
    channel_columns = [column for column in frame.columns if column not in ("participant_id", "timestamp")]
    unknown = [column for column in channel_columns if column not in FEATURE_NAMES]
    if unknown:
        raise CohortImportError(
            f"{where}: unknown channel column(s) {', '.join(map(str, unknown))} (known: {', '.join(FEATURE_NAMES)})"
        )
    if not channel_columns:
        raise CohortImportError(f"{where}: no channel columns")
    times = local_times(frame["timestamp"], where=where, timezone=timezone)
    participant_ids = frame["participant_id"].astype(str).str.strip().values
    pieces = []
    for column in channel_columns:
        values = _numbers(frame[column], where, what=f"{column} value")
        present = ~np.isnan(values)
        pieces.append(
            pd.DataFrame(
                {
                    "participant_id": participant_ids[present],
                    "time": times[present],
                    "channel": column,
                    "value": values[present],
                }
            )
        )
    return pd.concat(pieces, ignore_index=True)


def _demographics(path: Path | None) -> dict[str, dict]:
    if path is None:
        return {}
    where = path.name
    frame = read_table(path)
    _require_columns(frame, ("participant_id",), where)
    people = {}
    for row, record in enumerate(frame.to_dict("records")):
        sex = record.get("sex")
        person: dict = {"sex": sex if isinstance(sex, str) else None}  # an empty cell reads as NaN
        # Neither messages nor chained causes show an age or a date of birth: they identify.
        if record.get("age") not in (None, "") and not pd.isna(record.get("age")):
            try:
                age = float(record["age"])
            except ValueError:
                age = math.nan
            if not math.isfinite(age):
                raise _fail(where, row, "age is not a number")
            person["age"] = age
        elif record.get("birth_date") not in (None, "") and not pd.isna(record.get("birth_date")):
            try:
                person["birth_date"] = date.fromisoformat(str(record["birth_date"])[:10])
            except ValueError:
                raise _fail(where, row, "birth_date is not a date (YYYY-MM-DD)") from None
        people[str(record["participant_id"]).strip()] = person
    return people


def _measurements(path: Path | None, timezone: str | None) -> pd.DataFrame:
    if path is None:
        return pd.DataFrame(columns=["participant_id", "time", "name", "value", "unit"])
    where = path.name
    frame = read_table(path)
    _require_columns(frame, ("participant_id", "timestamp", "name", "value", "unit"), where)
    names = frame["name"].astype(str).str.strip()
    values = _numbers(frame["value"], where)
    units = frame["unit"].astype(str).str.strip()
    for row, (name, unit) in enumerate(zip(names, units, strict=True)):
        kind = UNITS_AND_MODALITIES.get(name)
        if kind is None:
            raise _fail(where, row, f"unknown measurement {name!r} (known: {', '.join(UNITS_AND_MODALITIES)})")
        if unit != kind[0]:
            convert = MEASUREMENT_CONVERSIONS.get((name, unit))
            if convert is None:
                raise _fail(where, row, f"{name} is measured in {kind[0]}, not {unit!r}")
            values[row] = convert(values[row])
        if name == HEIGHT and np.isfinite(values[row]):
            problem = height_problem(values[row], f"{frame['value'].iloc[row]} {unit}")
            if problem:
                raise _fail(where, row, problem)
    missing = ~np.isfinite(values)  # an empty cell, or inf / 1e999: a measurement without a usable value
    if missing.any():
        raise _fail(where, int(np.flatnonzero(missing)[0]), "the value is missing, infinite or out of range")
    return pd.DataFrame(
        {
            "participant_id": frame["participant_id"].astype(str).str.strip().values,
            "time": local_times(frame["timestamp"], where=where, timezone=timezone),
            "name": names.values,
            "value": values,
        }
    )


def tabular_participants(
    *, signals: Path, demographics: Path | None = None, measurements: Path | None = None, timezone: str | None = None
) -> tuple[Iterator[RawParticipant], dict]:
    """Parse the files (all of them, before anything is stored) into participants and a report."""
    report = SourceReport(source="csv")
    for kind, path in (("signals", signals), ("demographics", demographics), ("measurements", measurements)):
        report.files[kind] += path is not None
    frame = read_table(signals)
    layout = "long" if "channel" in frame.columns else "wide"
    samples = (_long_samples if layout == "long" else _wide_samples)(frame, signals.name, timezone)
    report.notes.append(f"signals in the {layout} layout")
    people = _demographics(demographics)
    sparse = _measurements(measurements, timezone)
    participants: list[RawParticipant] = []
    for participant_id, group in samples.groupby("participant_id", sort=True):
        try:
            first_day, values, mask = samples_to_grid(group[["time", "channel", "value"]], report)
        except ValueError as error:
            raise CohortImportError(f"{signals.name}: participant {len(participants) + 1}: {error}") from error
        person = people.get(participant_id, {})
        age = person.get("age")
        if age is None and person.get("birth_date"):
            age = age_from_birth(birth=person["birth_date"], on=first_day)
        own = sparse[sparse["participant_id"] == participant_id]
        history_origin = (
            min([np.datetime64(first_day, "D"), *own["time"].values.astype("datetime64[D]")])
            if len(own)
            else np.datetime64(first_day, "D")
        )
        origin = pd.Timestamp(history_origin).date()
        minute_start_day = (first_day - origin).days
        measurement_rows = [
            {
                "day": int((np.datetime64(minute, "D") - history_origin) // np.timedelta64(1, "D")),
                "name": name,
                "value": round(float(value), 3),
                "unit": UNITS_AND_MODALITIES[name][0],
                "modality": UNITS_AND_MODALITIES[name][1],
            }
            for minute, name, value in zip(own["time"].values, own["name"], own["value"], strict=True)
        ]
        participants.append(
            RawParticipant(
                origin=", ".join([signals.name, *([demographics.name] if demographics and person else [])]),
                source_id=participant_id,
                age_years=age,
                sex=person.get("sex"),
                values=values,
                mask=mask,
                first_day=origin,
                minute_start_day=minute_start_day,
                history_days=max([minute_start_day + values.shape[0], *(m["day"] + 1 for m in measurement_rows)]),
                measurements=measurement_rows,
            )
        )
    if not participants:
        raise CohortImportError(f"{signals.name}: no participants")
    missing_demographics = sum(1 for p in participants if p.source_id not in people)
    if people and missing_demographics:
        report.notes.append(f"{missing_demographics} participant(s) have no demographics row: age band and sex unknown")
    return iter(participants), report.as_dict()
