"""Fitbit data exports (Google Takeout): one participant per export folder or zip.

Read, wherever they sit in the export: ``heart_rate-YYYY-MM-DD.json`` (second-level heart rate,
averaged per minute), ``steps-YYYY-MM-DD.json`` (minute steps), ``sleep-YYYY-MM-DD.json`` (sleep
logs with stage levels) and ``Profile.csv`` (only ``id``, ``date_of_birth`` and ``gender`` are
read; names, e-mail and the rest are never read). Fitbit writes local clock times, which is what
is stored.

The files read are held to :data:`MAX_FILE_BYTES` each and :data:`MAX_UNCOMPRESSED_BYTES` together,
as unpacked, so a small zip cannot unpack into more than a real export holds. Error messages name
the file and the record but never show a record's values: they carry dates and the date of birth.
"""

import csv
import io
import json
import re
import zipfile
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from healthagent.cohort.anonymize import age_from_birth
from healthagent.cohort.importers.archives import LimitedReader, open_member, open_zip
from healthagent.cohort.importers.minute_grid import MAX_SPAN_MINUTES, SourceReport, samples_to_grid
from healthagent.cohort.importing import CohortImportError, RawParticipant

_FILE_KINDS = {
    "heart_rate": re.compile(r"(^|/)heart_rate-\d{4}-\d{2}-\d{2}\.json$"),
    "steps": re.compile(r"(^|/)steps-\d{4}-\d{2}-\d{2}\.json$"),
    "sleep": re.compile(r"(^|/)sleep-\d{4}-\d{2}-\d{2}\.json$"),
    "profile": re.compile(r"(^|/)Profile\.csv$"),
}
SLEEP_LEVELS = {"wake": 0, "awake": 0, "restless": 0, "light": 1, "asleep": 1, "deep": 2, "rem": 3}
# The largest real file, a day of heart rate every few seconds, is a few MB; parsed, a JSON file
# takes about ten times its size in memory.
MAX_FILE_BYTES = 64 * 1024**2
# A typical multi-year export's heart rate, steps, sleep and profile files are a few hundred MB; this
# is about four years of heart rate at Fitbit's finest resolution. Its rows take a few times as much
# memory, so a bigger export would not fit in a worker anyway.
MAX_UNCOMPRESSED_BYTES = 2 * 1024**3


class _Export:
    """A Fitbit export as a folder or a zip: file names and their bytes, within the size limits.

    The sizes of the files to read (as unpacked, per the zip's headers) are checked before any is
    read; each read stops at the limit as well, should a header understate a member's size.
    """

    def __init__(self, path: Path):
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._files: dict[str, Path] = {}  # a folder's files by name
        if path.is_dir():
            self._files = {str(p.relative_to(path)): p for p in path.rglob("*") if p.is_file()}
            sizes = {name: file.stat().st_size for name, file in self._files.items()}
        elif zipfile.is_zipfile(path):
            self._zip = open_zip(path)
            sizes = {info.filename: info.file_size for info in self._zip.infolist() if not info.is_dir()}
        else:
            raise CohortImportError(f"{path.name}: not a Fitbit export (expected a folder or a .zip)")
        self._names = {
            kind: sorted(name for name in sizes if pattern.search(name)) for kind, pattern in _FILE_KINDS.items()
        }
        to_read = {name: sizes[name] for names in self._names.values() for name in names}
        for name, size in to_read.items():
            if size > MAX_FILE_BYTES:
                raise CohortImportError(
                    f"{path.name}/{name}: {size:,} bytes, over the limit of {MAX_FILE_BYTES:,} for one file; refused"
                )
        if sum(to_read.values()) > MAX_UNCOMPRESSED_BYTES:
            raise CohortImportError(
                f"{path.name}: its heart rate, steps, sleep and profile files unpack to {sum(to_read.values()):,} "
                f"bytes, over the limit of {MAX_UNCOMPRESSED_BYTES:,}; refused"
            )
        self._bytes_left = MAX_UNCOMPRESSED_BYTES

    def names(self, kind: str) -> list[str]:
        return self._names[kind]

    def read(self, name: str) -> bytes:
        where, limit = f"{self.path.name}/{name}", min(MAX_FILE_BYTES, self._bytes_left)
        if self._zip is not None:
            with open_member(self._zip, name, limit=limit, where=where) as stream:
                data = stream.read()
        else:
            with open(self._files[name], "rb") as file:
                data = LimitedReader(file, limit=limit, where=where).read()
        self._bytes_left -= len(data)
        return data


def _json(export: _Export, name: str) -> list:
    try:
        data = json.loads(export.read(name))
    except (ValueError, RecursionError) as error:  # ValueError: JSON, Unicode and integer-length errors
        raise CohortImportError(f"{export.path.name}/{name}: not valid JSON ({error})") from error
    if not isinstance(data, list):
        raise CohortImportError(f"{export.path.name}/{name}: expected a JSON list of records")
    return data


def _problem(error: Exception) -> str:
    """What was wrong with a record, without its values (they carry dates)."""
    if isinstance(error, KeyError):
        return f"no {error.args[0]!r} field"
    return f"a field of the wrong type or format ({type(error).__name__})"


def _fitbit_time(text: str) -> np.datetime64:
    """'03/01/24 08:00:05' (Fitbit's local time) -> that local time."""
    return np.datetime64(datetime.strptime(text, "%m/%d/%y %H:%M:%S"), "s")


def _records(export: _Export, kind: str, channel: str, value_of, report: SourceReport) -> list[tuple]:
    rows = []
    for name in export.names(kind):
        for position, record in enumerate(_json(export, name)):
            try:
                rows.append((_fitbit_time(record["dateTime"]), channel, float(value_of(record["value"])), 1))
            except (KeyError, TypeError, ValueError, OverflowError) as error:
                raise CohortImportError(
                    f"{export.path.name}/{name} record {position + 1}: {_problem(error)}"
                ) from None  # the cause's message would show the value
        report.files[kind] += 1
    return rows


def _sleep_rows(export: _Export, report: SourceReport) -> list[tuple]:
    """One row per sleep level, covering its minutes (laid on them by ``samples_to_grid``)."""
    rows = []
    for name in export.names("sleep"):
        for position, log in enumerate(_json(export, name)):
            where = f"{export.path.name}/{name} sleep log {position + 1}"
            try:
                for level in log["levels"]["data"]:
                    stage = SLEEP_LEVELS.get(level["level"])
                    if stage is None:
                        report.drop("sleep: levels other than wake, restless, light, deep and rem")
                        continue
                    minutes = int(level["seconds"]) // 60
                    if minutes > MAX_SPAN_MINUTES:
                        raise CohortImportError(
                            f"{where}: a sleep level spans more than {MAX_SPAN_MINUTES // 1440} days; refused"
                        )
                    if minutes > 0:
                        start = np.datetime64(datetime.fromisoformat(level["dateTime"][:19]), "s")
                        rows.append((start, "sleep_stage", float(stage), minutes))
            except (KeyError, TypeError, ValueError, OverflowError) as error:
                raise CohortImportError(f"{where}: {_problem(error)}") from None  # the cause would show the value
        report.files["sleep"] += 1
    return rows


def _profile(export: _Export) -> dict:
    names = export.names("profile")
    if not names:
        return {}
    where = f"{export.path.name}/{names[0]}"
    try:
        rows = list(csv.DictReader(io.StringIO(export.read(names[0]).decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as error:
        raise CohortImportError(f"{where}: not a UTF-8 CSV file ({type(error).__name__})") from None
    if not rows:
        return {}
    row = rows[0]
    profile = {"id": (row.get("id") or "").strip(), "sex": row.get("gender")}
    if row.get("date_of_birth"):
        try:
            profile["birth"] = date.fromisoformat(row["date_of_birth"][:10])
        except (TypeError, ValueError):
            # Neither the message nor a chained cause may show the value: it is the date of birth.
            raise CohortImportError(f"{where} line 2: date_of_birth is not a date (YYYY-MM-DD)") from None
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
        samples = pd.DataFrame(rows, columns=["time", "channel", "value", "minutes"])
        try:
            first_day, values, mask = samples_to_grid(samples, report)
        except ValueError as error:
            raise CohortImportError(f"{path.name}: {error}") from error
        profile = _profile(export)
        age = age_from_birth(birth=profile["birth"], on=first_day) if profile.get("birth") else None
        participants.append(
            RawParticipant(
                origin=path.name,
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
