"""Apple Health exports (``export.xml``, or the ``export.zip`` that contains it), streamed.

Real exports are gigabytes, so the XML is parsed incrementally and every element is released as
soon as it is read. Read: heart rate, step count, active and basal energy, HRV (SDNN), oxygen
saturation, respiratory rate, sleep analysis, and from ``<Me>`` the date of birth and sex. Source
and device names (which often carry the owner's name) are used only to pick one source per type
and are never stored.

Times are written as local clock time with an offset (``2024-03-01 08:00:00 -0500``): the local
clock time is what is kept. Overlapping sources (a watch and a phone both counting steps) would
double count, so per type the watch is kept, or else the source with the most records; the report
says how many records of the other sources were dropped.
"""

import hashlib
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import cast
from xml.etree import ElementTree

import numpy as np
import pandas as pd

from healthagent.cohort.anonymize import age_from_birth
from healthagent.cohort.importers.minute_grid import SourceReport, samples_to_grid
from healthagent.cohort.importing import CohortImportError, RawParticipant

# Apple type -> (channel, unit expected, scale to the channel's unit, spread over the interval)
QUANTITY_TYPES = {
    "HKQuantityTypeIdentifierHeartRate": ("heart_rate", "count/min", 1.0, False),
    "HKQuantityTypeIdentifierStepCount": ("steps", "count", 1.0, True),
    "HKQuantityTypeIdentifierActiveEnergyBurned": ("energy_expenditure", "kcal", 1.0, True),
    "HKQuantityTypeIdentifierBasalEnergyBurned": ("energy_expenditure", "kcal", 1.0, True),
    "HKQuantityTypeIdentifierHeartRateVariabilitySDNN": ("sdnn", "ms", 1.0, False),
    "HKQuantityTypeIdentifierOxygenSaturation": ("spo2", "%", 100.0, False),
    "HKQuantityTypeIdentifierRespiratoryRate": ("respiration_rate", "count/min", 1.0, False),
}
SLEEP_TYPE = "HKCategoryTypeIdentifierSleepAnalysis"
SLEEP_VALUES = {
    "HKCategoryValueSleepAnalysisAwake": 0,
    "HKCategoryValueSleepAnalysisAsleepCore": 1,
    "HKCategoryValueSleepAnalysisAsleepUnspecified": 1,
    "HKCategoryValueSleepAnalysisAsleep": 1,
    "HKCategoryValueSleepAnalysisAsleepDeep": 2,
    "HKCategoryValueSleepAnalysisAsleepREM": 3,
}


def _local_time(text: str) -> np.datetime64:
    """'2024-03-01 08:00:05 -0500' -> the local time 2024-03-01T08:00:05."""
    return np.datetime64(text[:10] + "T" + text[11:19], "s")


class _Collector:
    """Accumulates per-type records by source, then keeps one source per type."""

    def __init__(self):
        self.records: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        self.birth: date | None = None
        self.sex: str | None = None
        self.first_start = ""

    def add(self, element: ElementTree.Element, where: str) -> None:
        record_type = element.get("type")
        if record_type not in QUANTITY_TYPES and record_type != SLEEP_TYPE:
            return
        try:
            start, end = _local_time(element.get("startDate", "")), _local_time(element.get("endDate", ""))
        except ValueError as error:
            raise CohortImportError(f"{where}: a {record_type} record has an invalid date ({error})") from error
        value = element.get("value", "")
        if record_type == SLEEP_TYPE:
            if value == "HKCategoryValueSleepAnalysisInBed":
                return  # time in bed is not sleep; the asleep records cover the night
            stage = SLEEP_VALUES.get(value)
            if stage is None:
                raise CohortImportError(f"{where}: unknown sleep value {value!r}")
            parsed = float(stage)
        else:
            _channel, unit, scale, _ = QUANTITY_TYPES[record_type]
            if element.get("unit") != unit:
                raise CohortImportError(f"{where}: {record_type} in {element.get('unit')!r}, expected {unit!r}")
            try:
                parsed = float(value) * scale
            except ValueError as error:
                raise CohortImportError(f"{where}: {record_type} value {value!r} is not a number") from error
        start_date = element.get("startDate", "")
        self.first_start = min(self.first_start or start_date, start_date)
        self.records[record_type][element.get("sourceName", "")].append((start, end, parsed))

    def samples(self, report: SourceReport) -> pd.DataFrame:
        minutes, channels, values = [], [], []
        for record_type, by_source in self.records.items():
            kept = max(by_source, key=lambda source: ("watch" in source.lower(), len(by_source[source])))
            for source, rows in by_source.items():
                if source != kept:
                    kind = "watch" if "watch" in source.lower() else "phone or other device"
                    report.drop(
                        f"{record_type.removeprefix('HKQuantityTypeIdentifier').removeprefix('HKCategoryTypeIdentifier')}: "
                        f"records of a second source ({kind}) overlapping the kept one",
                        len(rows),
                    )
            channel = "sleep_stage" if record_type == SLEEP_TYPE else QUANTITY_TYPES[record_type][0]
            spread = record_type == SLEEP_TYPE or QUANTITY_TYPES[record_type][3]
            for start, end, value in by_source[kept]:
                length = max(1, int((end - start).astype(int)) // 60)
                if spread:  # an interval record covers each of its minutes; counts are divided among them
                    each = value if record_type == SLEEP_TYPE else value / length
                    minutes.extend(start + np.arange(length) * np.timedelta64(60, "s"))
                    channels.extend([channel] * length)
                    values.extend([each] * length)
                else:
                    minutes.append(start)
                    channels.append(channel)
                    values.append(value)
        return pd.DataFrame({"time": np.array(minutes, dtype="datetime64[s]"), "channel": channels, "value": values})


def _open_xml(path: Path):
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        names = [name for name in archive.namelist() if name.endswith("export.xml")]
        if not names:
            raise CohortImportError(f"{path.name}: the zip holds no export.xml")
        return archive.open(names[0]), f"{path.name}/{names[0]}"
    return open(path, "rb"), path.name


def _parse(path: Path, report: SourceReport) -> _Collector:
    collector = _Collector()
    stream, where = _open_xml(path)
    with stream:
        parser: ElementTree.XMLPullParser = ElementTree.XMLPullParser(events=("start", "end"))
        depth = 0
        position = 0
        root = None
        while chunk := stream.read(1 << 20):
            position += len(chunk)
            try:
                parser.feed(chunk)
                for event, element in cast(Iterator[tuple[str, ElementTree.Element]], parser.read_events()):
                    if event == "start":
                        depth += 1
                        root = element if root is None else root
                        continue
                    depth -= 1
                    if element.tag == "Record":
                        collector.add(element, where)
                    elif element.tag == "Me":
                        collector.sex = element.get("HKCharacteristicTypeIdentifierBiologicalSex")
                        birth = element.get("HKCharacteristicTypeIdentifierDateOfBirth")
                        collector.birth = date.fromisoformat(birth) if birth else None
                    if depth == 1 and root is not None:
                        root.clear()  # release each top-level element once read: memory stays flat
            except ElementTree.ParseError as error:
                line, column = error.position
                raise CohortImportError(
                    f"{where} line {line} column {column}: malformed XML ({error.msg if hasattr(error, 'msg') else error})"
                ) from error
        try:
            parser.close()
        except ElementTree.ParseError as error:
            raise CohortImportError(f"{where}: the XML ends early (truncated after {position} bytes)") from error
    report.files["export.xml"] += 1
    return collector


def apple_participants(*, paths: list[Path]) -> tuple[Iterator[RawParticipant], dict]:
    """One participant per export; each export is parsed before anything is stored."""
    if not paths:
        raise CohortImportError("name at least one Apple Health export.xml or export.zip")
    report = SourceReport(source="apple")
    participants = []
    for path in paths:
        if not path.exists():
            raise CohortImportError(f"{path.name}: no such file")
        collector = _parse(path, report)
        samples = collector.samples(report)
        if samples.empty:
            raise CohortImportError(
                f"{path.name}: no heart rate, steps, energy, HRV, SpO2, respiration or sleep records"
            )
        first_day, values, mask = samples_to_grid(samples, report)
        age = age_from_birth(birth=collector.birth, on=first_day) if collector.birth else None
        # Exports carry no participant id; the date of birth, sex and first record identify the
        # person stably across re-exports (and are hashed into the pseudonym, never stored).
        identity = hashlib.sha256(f"{collector.birth}|{collector.sex}|{collector.first_start}".encode()).hexdigest()
        participants.append(
            RawParticipant(
                source_id=identity,
                age_years=age,
                sex=(collector.sex or "").removeprefix("HKBiologicalSex"),
                values=values,
                mask=mask,
                first_day=first_day,
                history_days=values.shape[0],
            )
        )
    return iter(participants), report.as_dict()
