"""The one way participants enter the database: anonymize, store, summarize, all or nothing.

Importers (``healthagent/cohort/importers/``) parse their source into :class:`RawParticipant`
objects, which may still carry the source identifier, exact age and calendar dates. This module
turns each into anonymized rows and a trajectory file. An import is atomic: if anything fails,
no participant, row or file of that import remains.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction

from healthagent.audit import Action, audit_record
from healthagent.cohort.anonymize import (
    AnonymizationError,
    age_band,
    date_shift_days,
    k_check,
    normalize_sex,
    pseudonym,
    shifted_weekday,
)
from healthagent.cohort.import_anonymity import HeldRows, import_anonymize
from healthagent.cohort.store import trajectory_root, write_trajectory
from healthagent.models import Cohort, DailySummary, Event, Measurement, Participant
from modeling.ml.data.summaries import daily_summaries


class CohortImportError(Exception):
    """An import failed; the message names the file, the line or element, and the problem."""


@dataclass
class RawParticipant:
    """One participant as parsed from a source, before anonymization. Never stored as such."""

    source_id: str
    age_years: float | None
    sex: str | None
    values: np.ndarray  # (days, channels, 1440) float32, minute-level days
    mask: np.ndarray  # (days, channels, 1440) bool
    first_day: date | None = None  # calendar date of day 0 (real sources); dropped after use
    start_weekday: int | None = None  # weekday of the first minute-level day (synthetic sources)
    minute_start_day: int = 0
    history_days: int = 0
    measurements: list[dict] = field(default_factory=list)  # {day, name, value, unit, modality}
    events: list[dict] = field(default_factory=list)  # {kind, name, day, start_minute, end_minute, detail}
    ground_truth: dict = field(default_factory=dict)
    origin: str = ""  # the file it was read from, named in a refusal (never stored)


def _from(raw: RawParticipant) -> str:
    """Where a refused participant was read from, for its message: " (export.zip)", or nothing."""
    return f" ({raw.origin})" if raw.origin else ""


@dataclass
class ImportSummary:
    cohort: Cohort
    imported: int
    already_present: int
    report: dict


def _participant_rows(participant: Participant, raw: RawParticipant) -> tuple[list, list, list]:
    summaries = [
        DailySummary(participant=participant, day_index=raw.minute_start_day + summary.pop("day"), **summary)
        for summary in daily_summaries(raw.values, raw.mask)
    ]
    measurements = [
        Measurement(
            participant=participant,
            day_index=m["day"],
            name=m["name"],
            value=m["value"],
            unit=m["unit"],
            modality=m["modality"],
        )
        for m in raw.measurements
    ]
    events = [
        Event(
            participant=participant,
            kind=e["kind"],
            name=e["name"],
            day_index=e["day"],
            start_minute=e.get("start_minute"),
            end_minute=e.get("end_minute"),
            detail=e.get("detail", "")[:120],
        )
        for e in raw.events
    ]
    return summaries, measurements, events


def cohort_import(
    *,
    name: str,
    source: str,
    participants: Iterable[RawParticipant],
    source_report: dict | None = None,
    k: int | None = None,
    allow_k_below_minimum: bool = False,
    description: str = "",
    user=None,
    via: str = "",
) -> ImportSummary:
    """Import ``participants`` into the cohort ``name`` (created if new), atomically.

    Participants already in the cohort (same pseudonym) are left as they are, so importing the
    same export twice is idempotent. Holds one database transaction for the whole import.
    ``k`` defaults to ``ANONYMIZATION_MIN_K``; a smaller one needs ``allow_k_below_minimum`` (audited).
    The import's participants in a group still smaller than ``k`` are dropped.
    """
    k = settings.ANONYMIZATION_MIN_K if k is None else k
    try:
        k_check(k=k, allow_below_minimum=allow_k_below_minimum)
    except AnonymizationError as error:
        raise CohortImportError(str(error)) from error
    written: list[Path] = []
    try:
        with transaction.atomic():
            cohort, created = Cohort.objects.get_or_create(
                name=name, defaults={"source": source, "description": description, "k_anonymity": k, "created_by": user}
            )
            if not created and cohort.source != source:
                raise CohortImportError(
                    f"cohort {name!r} holds {cohort.source} data; import {source} data into another cohort"
                )
            existing = set(cohort.participants.values_list("pseudonym", flat=True))
            new_participants: list[HeldRows] = []
            already_present = 0
            for raw in participants:
                try:
                    key = pseudonym(source=source, source_id=raw.source_id)
                    band = age_band(raw.age_years)
                except AnonymizationError as error:
                    raise CohortImportError(
                        f"participant #{len(new_participants) + already_present + 1}{_from(raw)}: {error}"
                    ) from error
                if key in existing:
                    already_present += 1
                    continue
                existing.add(key)
                if raw.start_weekday is not None:
                    weekday = raw.start_weekday
                else:
                    assert raw.first_day is not None, "a source gives each participant a first day or a weekday"
                    shift = date_shift_days(source=source, source_id=raw.source_id)
                    weekday = shifted_weekday(first_day=raw.first_day, shift_days=shift + raw.minute_start_day)
                relative_path = Path(f"cohort-{cohort.pk}") / f"{key}.parquet"
                participant = Participant.objects.create(
                    cohort=cohort,
                    pseudonym=key,
                    age_band=band,
                    sex=normalize_sex(raw.sex),
                    history_days=max(raw.history_days, raw.minute_start_day + raw.values.shape[0]),
                    minute_start_day=raw.minute_start_day,
                    minute_days=raw.values.shape[0],
                    start_weekday=weekday,
                    trajectory_path=str(relative_path),
                    ground_truth=raw.ground_truth,
                )
                path = trajectory_root() / relative_path
                written.append(path)
                try:
                    write_trajectory(path=path, values=raw.values, mask=raw.mask, start_weekday=weekday)
                except OSError as error:  # a full or failing trajectory store: say so, and roll everything back
                    raise CohortImportError(
                        f"participant #{len(new_participants) + already_present + 1}{_from(raw)}: the trajectory store cannot "
                        f"take its file ({error.strerror or error}); nothing of this import was kept"
                    ) from error
                summaries, measurements, events = _participant_rows(participant, raw)
                DailySummary.objects.bulk_create(summaries, batch_size=500)
                # Measurements and events wait until the whole import is known: they are coded first.
                new_participants.append(HeldRows(participant, measurements, events))

            anonymity = import_anonymize(cohort=cohort, new=new_participants, k=k)
            imported = len(new_participants) - anonymity["dropped"]
            entry = {
                **(source_report or {}),
                "imported": imported,
                "already_present": already_present,
                "k_anonymity": anonymity,
            }
            cohort.import_report = {
                "imports": [*cohort.import_report.get("imports", []), entry],
                "achieved_k": anonymity["achieved_k"],
            }
            cohort.save(update_fields=["import_report"])
            audit_record(
                actor=user,
                via=via,
                action=Action.COHORT_IMPORTED,
                target=cohort,
                details={
                    "source": source,
                    "imported": imported,
                    "already_present": already_present,
                    "dropped": anonymity["dropped"],
                    "k": k,
                    "minimum_k": settings.ANONYMIZATION_MIN_K,
                    "k_below_minimum": k < settings.ANONYMIZATION_MIN_K,
                },
            )
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return ImportSummary(cohort=cohort, imported=imported, already_present=already_present, report=entry)
