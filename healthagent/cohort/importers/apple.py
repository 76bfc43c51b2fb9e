"""Apple Health exports (``export.xml``, or the ``export.zip`` that contains it), streamed.

Real exports are gigabytes, so the XML is parsed incrementally and every element is released as
soon as it is read. Read: heart rate, step count, active and basal energy, HRV (SDNN), oxygen
saturation, respiratory rate, sleep analysis, the latest height (a measurement: healthagent.cohort.measurements), and
from ``<Me>`` the date of birth and sex. Source
and device names (which often carry the owner's name) are used only to pick one source per type
and are never stored.

Times are written as local clock time with an offset (``2024-03-01 08:00:00 -0500``): the local
clock time is what is kept. Overlapping sources (a watch and a phone both counting steps) would
double count, so per type the watch is kept, or else the source with the most records; the report
says how many records of the other sources were dropped.

Exports are untrusted files: the XML is parsed with defusedxml (no entity expansion, no external
references), held to :data:`MAX_XML_BYTES` as unpacked and :data:`MAX_XML_DEPTH` levels of nesting,
and a record spanning more than ``MAX_SPAN_MINUTES`` is refused. Error messages name the file and
the record's position but never its dates or the date of birth.
"""

import hashlib
import re
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

import numpy as np
import pandas as pd
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser, iterparse

from healthagent.cohort.anonymize import age_from_birth
from healthagent.cohort.importers.archives import LimitedReader, open_member, open_zip
from healthagent.cohort.importers.minute_grid import MAX_SPAN_MINUTES, SourceReport, samples_to_grid
from healthagent.cohort.importing import CohortImportError, RawParticipant
from healthagent.cohort.measurements import HEIGHT, UNITS_AND_MODALITIES, height_problem

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
HEIGHT_TYPE = "HKQuantityTypeIdentifierHeight"
HEIGHT_UNITS_CM = {"cm": 1.0, "m": 100.0, "in": 2.54, "ft": 30.48}  # what Health writes, by the owner's locale
SLEEP_VALUES = {
    "HKCategoryValueSleepAnalysisAwake": 0,
    "HKCategoryValueSleepAnalysisAsleepCore": 1,
    "HKCategoryValueSleepAnalysisAsleepUnspecified": 1,
    "HKCategoryValueSleepAnalysisAsleep": 1,
    "HKCategoryValueSleepAnalysisAsleepDeep": 2,
    "HKCategoryValueSleepAnalysisAsleepREM": 3,
}
_LOCAL_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
# Real export.xml files reach a few GB for many years of watch data. Unpacked from a zip, it may be
# as large as a bare one may be (COHORT_IMPORT_MAX_BYTES, 8 GB by default): parsing holds only the
# records read, a fraction of the bytes, so this bounds the time a zip bomb can take.
MAX_XML_BYTES = 8 * 1024**3
# Exports nest four levels (HealthData > Workout > WorkoutRoute > FileReference); every open
# element is held until it ends, so nesting is what could still grow memory.
MAX_XML_DEPTH = 16


def _local_time(text: str) -> np.datetime64:
    """'2024-03-01 08:00:05 -0500' -> the local time 2024-03-01T08:00:05."""
    if not _LOCAL_TIME.match(text):  # numpy alone would take '08:00:-0' for a time with an offset
        raise ValueError("not a date and time")
    return np.datetime64(text[:10] + "T" + text[11:19], "s")


class _Collector:
    """Accumulates per-type records by source, then keeps one source per type."""

    def __init__(self):
        # type -> source -> [(start, minutes covered, value)]
        self.records: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        self.birth: date | None = None
        self.sex: str | None = None
        self.first_start = ""
        self.heights: list[tuple[np.datetime64, float]] = []  # (when, cm)

    def add(self, element: Element, where: str) -> None:
        record_type = element.get("type")
        if record_type == HEIGHT_TYPE:
            self.add_height(element, where)
            return
        if record_type not in QUANTITY_TYPES and record_type != SLEEP_TYPE:
            return
        try:
            start, end = _local_time(element.get("startDate", "")), _local_time(element.get("endDate", ""))
        except ValueError:
            raise CohortImportError(f"{where}: a {record_type} record has an invalid date") from None  # not shown
        minutes = max(1, int((end - start).astype(np.int64)) // 60)
        if minutes > MAX_SPAN_MINUTES:
            raise CohortImportError(
                f"{where}: a {record_type} record spans more than {MAX_SPAN_MINUTES // 1440} days; refused"
            )
        value = element.get("value", "")
        if record_type == SLEEP_TYPE:
            if value == "HKCategoryValueSleepAnalysisInBed":
                return  # time in bed is not sleep; the asleep records cover the night
            stage = SLEEP_VALUES.get(value)
            if stage is None:
                raise CohortImportError(f"{where}: unknown sleep value {value!r:.60}")
            parsed = float(stage)
        else:
            _channel, unit, scale, _ = QUANTITY_TYPES[record_type]
            if element.get("unit") != unit:
                raise CohortImportError(f"{where}: {record_type} in {element.get('unit')!r:.40}, expected {unit!r}")
            try:
                parsed = float(value) * scale
            except ValueError as error:
                raise CohortImportError(f"{where}: {record_type} value {value!r:.40} is not a number") from error
        start_date = element.get("startDate", "")
        self.first_start = min(self.first_start or start_date, start_date)
        self.records[record_type][element.get("sourceName", "")].append((start, minutes, parsed))

    def add_height(self, element: Element, where: str) -> None:
        value, unit = element.get("value", ""), element.get("unit", "")
        scale = HEIGHT_UNITS_CM.get(unit)
        if scale is None:
            raise CohortImportError(
                f"{where}: {HEIGHT_TYPE} in {unit!r:.40}, expected one of {', '.join(HEIGHT_UNITS_CM)}"
            )
        try:
            when, cm = _local_time(element.get("startDate", "")), float(value) * scale
        except ValueError:
            raise CohortImportError(f"{where}: a {HEIGHT_TYPE} record has an invalid date or value") from None
        problem = height_problem(cm, f"{value:.40} {unit}")
        if problem:
            raise CohortImportError(f"{where}: {problem}")
        self.heights.append((when, round(cm, 1)))

    def height_measurement(self, first_day: date, history_days: int) -> list[dict]:
        """The latest height as the participant's measurement, on the day it was recorded, counted from
        ``first_day``; a height recorded before the first day (commonly, when the device was set up) is kept on it:
        an adult's height does not change, and its own date would lengthen the history, which k-anonymity trims."""
        if not self.heights:
            return []
        when, cm = max(self.heights)
        day = int((when.astype("datetime64[D]") - np.datetime64(first_day, "D")) // np.timedelta64(1, "D"))
        unit, modality = UNITS_AND_MODALITIES[HEIGHT]
        return [
            {"day": min(max(day, 0), history_days - 1), "name": HEIGHT, "value": cm, "unit": unit, "modality": modality}
        ]

    def read_me(self, element: Element, where: str) -> None:
        self.sex = element.get("HKCharacteristicTypeIdentifierBiologicalSex")
        birth = element.get("HKCharacteristicTypeIdentifierDateOfBirth")
        try:
            self.birth = date.fromisoformat(birth) if birth else None
        except ValueError:
            # Neither the message nor a chained cause may show the value: it is the date of birth.
            raise CohortImportError(f"{where}: the date of birth in <Me> is not a date (YYYY-MM-DD)") from None

    def samples(self, report: SourceReport) -> pd.DataFrame:
        """One row per kept record; an interval record covers its minutes (laid on them by ``samples_to_grid``)."""
        pieces = []
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
            starts, minutes, values = (np.array(column) for column in zip(*by_source[kept], strict=True))
            if not spread:
                minutes = np.ones_like(minutes)
            elif record_type != SLEEP_TYPE:
                values = values / minutes  # a count is divided among the minutes it covers
            pieces.append(pd.DataFrame({"time": starts, "channel": channel, "value": values, "minutes": minutes}))
        return pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame()


class _AttributesOnly(TreeBuilder):
    """Builds elements without their text: exports carry everything in attributes, and a hostile
    text node would otherwise be held whole in memory."""

    def data(self, data: str) -> None:
        pass


def _open_xml(path: Path) -> tuple[LimitedReader, str]:
    """export.xml, bare or in the export's zip, as a stream of at most ``MAX_XML_BYTES`` bytes."""
    if not zipfile.is_zipfile(path):
        if path.stat().st_size > MAX_XML_BYTES:
            raise CohortImportError(f"{path.name}: over the limit of {MAX_XML_BYTES:,} bytes; refused")
        return LimitedReader(open(path, "rb"), limit=MAX_XML_BYTES, where=path.name), path.name
    archive = open_zip(path)
    names = [name for name in archive.namelist() if name.endswith("export.xml")]
    if not names:
        raise CohortImportError(f"{path.name}: the zip holds no export.xml")
    where = f"{path.name}/{names[0]}"
    return open_member(archive, names[0], limit=MAX_XML_BYTES, where=where), where


def _parse(path: Path, report: SourceReport) -> _Collector:
    """Read the export's records, releasing every element once read: memory stays flat."""
    collector = _Collector()
    stream, where = _open_xml(path)
    # defusedxml refuses entity declarations (a billion-laughs bomb) and external references. Apple
    # writes UTF-8; read as such whatever the declaration says (an unknown one would raise LookupError).
    parser = DefusedXMLParser(target=_AttributesOnly(), encoding="utf-8")
    open_elements: list[Element] = []
    records = 0
    with stream:
        try:
            for event, element in iterparse(stream, events=("start", "end"), parser=parser):
                if event == "start":
                    open_elements.append(element)
                    if len(open_elements) > MAX_XML_DEPTH:
                        raise CohortImportError(
                            f"{where}: elements nested more than {MAX_XML_DEPTH} deep, which no export is; refused"
                        )
                    continue
                open_elements.pop()
                if element.tag == "Record":
                    records += 1
                    collector.add(element, f"{where} record {records:,}")
                elif element.tag == "Me":
                    collector.read_me(element, where)
                if open_elements:
                    open_elements[-1].remove(element)
        except DefusedXmlException:
            raise CohortImportError(
                f"{where}: the XML declares entities or external references, which exports never do "
                "(an entity-expansion bomb?); refused"
            ) from None
        except ParseError as error:
            if stream.at_end:
                raise CohortImportError(
                    f"{where}: the XML ends early (truncated after {stream.bytes_read:,} bytes)"
                ) from error
            line, column = error.position
            raise CohortImportError(f"{where} line {line} column {column}: malformed XML ({error.msg})") from error
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
        try:
            first_day, values, mask = samples_to_grid(samples, report)
        except ValueError as error:
            raise CohortImportError(f"{path.name}: {error}") from error
        age = age_from_birth(birth=collector.birth, on=first_day) if collector.birth else None
        # Exports carry no participant id; the date of birth, sex and first record identify the
        # person stably across re-exports (and are hashed into the pseudonym, never stored).
        identity = hashlib.sha256(f"{collector.birth}|{collector.sex}|{collector.first_start}".encode()).hexdigest()
        participants.append(
            RawParticipant(
                origin=path.name,
                source_id=identity,
                age_years=age,
                sex=(collector.sex or "").removeprefix("HKBiologicalSex"),
                values=values,
                mask=mask,
                first_day=first_day,
                history_days=values.shape[0],
                measurements=collector.height_measurement(first_day, values.shape[0]),
            )
        )
    return iter(participants), report.as_dict()
