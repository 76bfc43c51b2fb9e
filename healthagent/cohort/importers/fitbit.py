"""Fitbit data exports (Google Takeout): one participant per export folder or zip.

Read, wherever they sit in the export: ``heart_rate-YYYY-MM-DD.json`` (second-level heart rate,
averaged per minute), ``steps-YYYY-MM-DD.json`` (minute steps), ``sleep-YYYY-MM-DD.json`` (sleep
logs with stage levels) and ``Profile.csv`` (only ``id``, ``date_of_birth`` and ``gender`` are
read; names, e-mail and the rest are never read). Fitbit writes local clock times, which is what
is stored.
"""

import csv
import io
import json
import re
import zipfile
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from healthagent.cohort.anonymize import age_from_birth
from healthagent.cohort.importers.minute_grid import SourceReport, samples_to_grid
from healthagent.cohort.importing import CohortImportError, RawParticipant

_FILE_KINDS = {
    "heart_rate": re.compile(r"(^|/)heart_rate-\d{4}-\d{2}-\d{2}\.json$"),
    "steps": re.compile(r"(^|/)steps-\d{4}-\d{2}-\d{2}\.json$"),
    "sleep": re.compile(r"(^|/)sleep-\d{4}-\d{2}-\d{2}\.json$"),
    "profile": re.compile(r"(^|/)Profile\.csv$"),
}
SLEEP_LEVELS = {"wake": 0, "awake": 0, "restless": 0, "light": 1, "asleep": 1, "deep": 2, "rem": 3}


class _Export:
    """A Fitbit export as a folder or a zip: file names and their bytes."""

    def __init__(self, path: Path):
        self.path = path
        if path.is_dir():
            self._files: dict[str, Path | str] = {str(p.relative_to(path)): p for p in path.rglob("*") if p.is_file()}
            self._zip = None
        elif zipfile.is_zipfile(path):
            self._zip = zipfile.ZipFile(path)
            self._files = {name: name for name in self._zip.namelist() if not name.endswith("/")}
        else:
            raise CohortImportError(f"{path.name}: not a Fitbit export (expected a folder or a .zip)")

    def names(self, kind: str) -> list[str]:
        return sorted(name for name in self._files if _FILE_KINDS[kind].search(name))

    def read(self, name: str) -> bytes:
        return self._zip.read(name) if self._zip else Path(self._files[name]).read_bytes()


def _json(export: _Export, name: str) -> list:
    try:
        data = json.loads(export.read(name))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CohortImportError(f"{export.path.name}/{name}: not valid JSON ({error})") from error
    if not isinstance(data, list):
        raise CohortImportError(f"{export.path.name}/{name}: expected a JSON list of records")
    return data


def _fitbit_time(text: str) -> np.datetime64:
    """'03/01/24 08:00:05' (Fitbit's local time) -> that local time."""
    return np.datetime64(datetime.strptime(text, "%m/%d/%y %H:%M:%S"), "s")


def _records(export: _Export, kind: str, channel: str, value_of, report: SourceReport) -> list[tuple]:
    rows = []
    for name in export.names(kind):
        for position, record in enumerate(_json(export, name)):
            try:
                rows.append((_fitbit_time(record["dateTime"]), channel, float(value_of(record["value"]))))
            except (KeyError, TypeError, ValueError) as error:
                raise CohortImportError(
                    f"{export.path.name}/{name} record {position + 1}: unexpected record {record!r:.80} ({error})"
                ) from error
        report.files[kind] += 1
    return rows


def _sleep_rows(export: _Export, report: SourceReport) -> list[tuple]:
    rows = []
    for name in export.names("sleep"):
        for position, log in enumerate(_json(export, name)):
            try:
                levels = log["levels"]["data"]
                for level in levels:
                    stage = SLEEP_LEVELS.get(level["level"])
                    if stage is None:
                        report.drop(f"sleep: unknown level {level['level']!r}")
                        continue
                    start = datetime.fromisoformat(level["dateTime"][:19])
                    for minute in range(int(level["seconds"]) // 60):
                        rows.append(
                            (np.datetime64(start + timedelta(minutes=minute), "s"), "sleep_stage", float(stage))
                        )
            except (KeyError, TypeError, ValueError) as error:
                raise CohortImportError(
                    f"{export.path.name}/{name} sleep log {position + 1}: unexpected structure ({error})"
                ) from error
        report.files["sleep"] += 1
    return rows


def _profile(export: _Export) -> dict:
    names = export.names("profile")
    if not names:
        return {}
    text = export.read(names[0]).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        return {}
    row = rows[0]
    profile = {"id": (row.get("id") or "").strip(), "sex": row.get("gender")}
    if row.get("date_of_birth"):
        try:
            profile["birth"] = date.fromisoformat(row["date_of_birth"][:10])
        except ValueError as error:
            raise CohortImportError(
                f"{export.path.name}/{names[0]} line 2: date_of_birth {row['date_of_birth']!r} is not a date"
            ) from error
    return profile


def fitbit_participants(*, paths: list[Path]) -> tuple[Iterator[RawParticipant], dict]:
    """One participant per export; every export is parsed before anything is stored."""
    if not paths:
        raise CohortImportError("name at least one Fitbit export (folder or zip)")
    report = SourceReport(source="fitbit")
    participants = []
    for path in paths:
        if not path.exists():
            raise CohortImportError(f"{path.name}: no such file or folder")
        export = _Export(path)
        rows = _records(export, "heart_rate", "heart_rate", lambda value: value["bpm"], report)
        rows += _records(export, "steps", "steps", lambda value: value, report)
        rows += _sleep_rows(export, report)
        if not rows:
            raise CohortImportError(f"{path.name}: no heart rate, steps or sleep files found")
        samples = pd.DataFrame(rows, columns=["time", "channel", "value"])
        first_day, values, mask = samples_to_grid(samples, report)
        profile = _profile(export)
        age = age_from_birth(birth=profile["birth"], on=first_day) if profile.get("birth") else None
        participants.append(
            RawParticipant(
                source_id=profile.get("id") or path.stem,
                age_years=age,
                sex=profile.get("sex"),
                values=values,
                mask=mask,
                first_day=first_day,
                history_days=values.shape[0],
            )
        )
    return iter(participants), report.as_dict()
