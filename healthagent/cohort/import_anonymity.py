"""The cohort-wide half of anonymization at the door, inside an import's transaction.

An import writes each new participant's row, trajectory file and daily summaries as it reads them, and holds back
their measurements and events (:class:`HeldRows`). Once every participant of the import is known,
:func:`import_anonymize` decides against the whole cohort (the rules are in ``anonymize.py``), in this order:

1. (age band, sex) groups are generalized; a participant whose group is still smaller than k is dropped (row,
   daily summaries and trajectory file);
2. a history longer than the one k participants reach keeps only its most recent days;
3. clinical events whose name fewer than k participants have are generalized, or dropped;
4. measurements are top- and bottom-coded; one fewer than k participants have is dropped;

and only then writes the held rows, so neither an extreme value nor a rare name is ever written, not even for
the length of the transaction. The participants already in the cohort count in every decision but are never
changed: adding participants only makes each group larger, so what an earlier import stored stays anonymous.
"""

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Max, Min, QuerySet

from healthagent.cohort.anonymize import (
    CONDITION_KINDS,
    Condition,
    QuasiIdentifiers,
    conditions_generalize,
    history_top_code,
    k_anonymize,
    measurement_bounds,
)
from healthagent.cohort.store import read_window, trajectory_root, write_trajectory
from healthagent.models import Cohort, DailySummary, Event, Measurement, Participant
from modeling.ml.data.spec import MINUTES_PER_DAY


@dataclass
class HeldRows:
    """A new participant, already stored, with the rows that wait for the cohort-wide decisions."""

    participant: Participant
    measurements: list[Measurement]
    events: list[Event]


def import_anonymize(*, cohort: Cohort, new: list[HeldRows], k: int) -> dict[str, Any]:
    """Make the import's ``new`` participants k-anonymous within ``cohort`` and write their held rows.

    Returns the report the cohort page shows: what was generalized, coded, trimmed and dropped, and
    ``achieved_k``, the fewest participants sharing any (age band, sex) group, clinical event name or
    measurement in the cohort. Runs inside the import's transaction.
    """
    existing = cohort.participants.exclude(pk__in=[held.participant.pk for held in new])
    kept, report = _quasi_identifiers(
        new, k, existing=[QuasiIdentifiers(*group) for group in existing.values_list("age_band", "sex")]
    )
    report |= _history(kept, k, existing_lengths=list(existing.values_list("history_days", flat=True)))
    conditions, rarest_condition = _conditions(kept, k, existing=existing)
    measurements, rarest_measurement = _measurements(kept, k, existing=existing)
    Event.objects.bulk_create([event for held in kept for event in held.events], batch_size=2000)
    Measurement.objects.bulk_create([row for held in kept for row in held.measurements], batch_size=2000)
    shared_by = [report["smallest_group"], *(count for count in (rarest_condition, rarest_measurement) if count)]
    achieved_k = min(shared_by) if report["smallest_group"] else 0  # 0: nobody in the cohort
    return report | conditions | measurements | {"minimum_k": settings.ANONYMIZATION_MIN_K, "achieved_k": achieved_k}


def _quasi_identifiers(
    new: list[HeldRows], k: int, *, existing: list[QuasiIdentifiers]
) -> tuple[list[HeldRows], dict[str, Any]]:
    groups, report = k_anonymize(
        [QuasiIdentifiers(held.participant.age_band, held.participant.sex) for held in new], k, existing=existing
    )
    kept, changed, dropped = [], [], []
    for held, group in zip(new, groups, strict=True):
        participant = held.participant
        if group is None:
            dropped.append(participant)
            continue
        if (participant.age_band, participant.sex) != (group.age_band, group.sex):
            participant.age_band, participant.sex = group.age_band, group.sex
            changed.append(participant)
        kept.append(held)
    Participant.objects.bulk_update(changed, ["age_band", "sex"])
    Participant.objects.filter(pk__in=[participant.pk for participant in dropped]).delete()  # their files on commit
    return kept, report


def _history(kept: list[HeldRows], k: int, *, existing_lengths: list[int]) -> dict[str, Any]:
    top_code = history_top_code(lengths=[*existing_lengths, *(held.participant.history_days for held in kept)], k=k)
    trimmed = [held for held in kept if top_code is not None and held.participant.history_days > top_code]
    for held in trimmed:
        assert top_code is not None
        _history_trim(held, days=held.participant.history_days - top_code)
    return {"history_top_code_days": top_code, "histories_trimmed": len(trimmed)}


def _history_trim(held: HeldRows, *, days: int) -> None:
    """Drop the first ``days`` days of a participant's history and count the days from the new first one."""
    participant = held.participant
    minute_days_cut = max(0, min(days - participant.minute_start_day, participant.minute_days))
    held.measurements = [row for row in held.measurements if row.day_index >= days]
    for row in held.measurements:
        row.day_index -= days
    held.events = [event for event in held.events if event.day_index >= days]
    for event in held.events:
        event.day_index -= days
        if event.start_minute is not None:  # counted from the first minute-level minute, which moves too
            event.start_minute -= minute_days_cut * MINUTES_PER_DAY
        if event.end_minute is not None:
            event.end_minute -= minute_days_cut * MINUTES_PER_DAY
    summaries = list(participant.daily_summaries.filter(day_index__gte=days))
    participant.daily_summaries.all().delete()  # then written again: shifting in place could collide with a day
    for summary in summaries:
        summary.pk, summary.day_index = None, summary.day_index - days
    DailySummary.objects.bulk_create(summaries, batch_size=500)
    if minute_days_cut:
        path = trajectory_root() / participant.trajectory_path
        values, mask = read_window(path=path, start_day=minute_days_cut, end_day=participant.minute_days)
        participant.start_weekday = (participant.start_weekday + minute_days_cut) % 7
        write_trajectory(path=path, values=values, mask=mask, start_weekday=participant.start_weekday)
        participant.minute_days -= minute_days_cut
    participant.minute_start_day = max(0, participant.minute_start_day - days)
    participant.history_days -= days
    participant.save(update_fields=["history_days", "minute_start_day", "minute_days", "start_weekday"])


def _conditions(kept: list[HeldRows], k: int, *, existing: QuerySet[Participant]) -> tuple[dict[str, int], int]:
    existing_conditions: dict[int, set[Condition]] = defaultdict(set)
    stored = Event.objects.filter(participant__in=existing, kind__in=CONDITION_KINDS).order_by()
    for participant_id, kind, name in stored.values_list("participant_id", "kind", "name").distinct():
        existing_conditions[participant_id].add((kind, name))
    labels, rarest = conditions_generalize(
        [{(event.kind, event.name) for event in held.events if event.kind in CONDITION_KINDS} for held in kept],
        k,
        existing=list(existing_conditions.values()),
    )
    generalized = dropped = 0
    for held, names in zip(kept, labels, strict=True):
        events = []
        for event in held.events:
            label = names.get((event.kind, event.name), event.name)
            if label is None:
                dropped += 1
                continue
            if label != event.name:
                event.name, event.detail = label, ""  # a detail may name what the label no longer does
                generalized += 1
            events.append(event)
        held.events = events
    return {"conditions_generalized": generalized, "conditions_dropped": dropped}, rarest


def _measurements(kept: list[HeldRows], k: int, *, existing: QuerySet[Participant]) -> tuple[dict[str, int], int]:
    ranges: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    stored = Measurement.objects.filter(participant__in=existing).order_by()  # no ordering field in the GROUP BY
    for row in stored.values("participant", "name", "unit").annotate(low=Min("value"), high=Max("value")):
        ranges[(row["name"], row["unit"])].append((row["low"], row["high"]))
    for held in kept:
        values: dict[tuple[str, str], list[float]] = defaultdict(list)
        for measurement in held.measurements:
            values[(measurement.name, measurement.unit)].append(measurement.value)
        for key, own in values.items():
            ranges[key].append((min(own), max(own)))
    bounds = measurement_bounds(ranges, k)
    counts = {"measurements_top_coded": 0, "measurements_bottom_coded": 0, "measurements_dropped": 0}
    for held in kept:
        coded = []
        for measurement in held.measurements:
            code = bounds[(measurement.name, measurement.unit)]
            if code is None:
                counts["measurements_dropped"] += 1
                continue
            if measurement.value > code.high:
                measurement.value = code.high
                counts["measurements_top_coded"] += 1
            elif measurement.value < code.low:
                measurement.value = code.low
                counts["measurements_bottom_coded"] += 1
            coded.append(measurement)
        held.measurements = coded
    return counts, min((code.participants for code in bounds.values() if code is not None), default=0)
