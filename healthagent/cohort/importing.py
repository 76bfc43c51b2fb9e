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
from django.db import transaction

from healthagent.audit import Action, audit_record
from healthagent.cohort.anonymize import (
    AnonymizationError,
    QuasiIdentifiers,
    age_band,
    date_shift_days,
    k_anonymize,
    normalize_sex,
    pseudonym,
    shifted_weekday,
)
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
    k: int = 5,
    description: str = "",
    user=None,
    via: str = "",
) -> ImportSummary:
    """Import ``participants`` into the cohort ``name`` (created if new), atomically.

    Participants already in the cohort (same pseudonym) are left as they are, so importing the
    same export twice is idempotent. Holds one database transaction for the whole import.
    """
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
            new_participants: list[Participant] = []
            already_present = 0
            for raw in participants:
                try:
                    key = pseudonym(source=source, source_id=raw.source_id)
                    band = age_band(raw.age_years)
                except AnonymizationError as error:
                    raise CohortImportError(
                        f"participant #{len(new_participants) + already_present + 1}: {error}"
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
                        f"participant #{len(new_participants) + already_present + 1}: the trajectory store cannot "
                        f"take its file ({error.strerror or error}); nothing of this import was kept"
                    ) from error
                summaries, measurements, events = _participant_rows(participant, raw)
                DailySummary.objects.bulk_create(summaries, batch_size=500)
                Measurement.objects.bulk_create(measurements, batch_size=2000)
                Event.objects.bulk_create(events, batch_size=2000)
                new_participants.append(participant)

            anonymity = _apply_k_anonymity(cohort, new_participants, k)
            entry = {
                **(source_report or {}),
                "imported": len(new_participants),
                "already_present": already_present,
                "k_anonymity": anonymity,
            }
            cohort.import_report = {"imports": [*cohort.import_report.get("imports", []), entry]}
            cohort.save(update_fields=["import_report"])
            audit_record(
                actor=user,
                via=via,
                action=Action.COHORT_IMPORTED,
                target=cohort,
                details={
                    "source": source,
                    "imported": len(new_participants),
                    "already_present": already_present,
                    "k": k,
                },
            )
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return ImportSummary(cohort=cohort, imported=len(new_participants), already_present=already_present, report=entry)


def _apply_k_anonymity(cohort: Cohort, new_participants: list[Participant], k: int) -> dict:
    """Generalize the new participants' quasi-identifiers against the whole cohort."""
    new_ids = {participant.pk for participant in new_participants}
    everyone = list(cohort.participants.only("pk", "age_band", "sex"))
    groups = [QuasiIdentifiers(p.age_band, p.sex) for p in everyone]
    generalized, report = k_anonymize(groups, k)
    changed = []
    for participant, group in zip(everyone, generalized, strict=True):
        if participant.pk in new_ids and (participant.age_band, participant.sex) != (group.age_band, group.sex):
            participant.age_band, participant.sex = group.age_band, group.sex
            changed.append(participant)
    Participant.objects.bulk_update(changed, ["age_band", "sex"])
    return report
