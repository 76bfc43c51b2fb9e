"""The participant's record as the agent saw it, as tables a reader checks an answer's numbers against.

The agent's context (``context.py``) holds averages of the daily summaries over its windows and the
latest values of a fixed set of measurements. This selector reads the same rows from the database,
with the same definitions and the same rounding, so every number an answer cites can be found in
it: the latest value of each measurement with its age in days before the last day and the reading
before it, the daily summaries of the days the agent averaged with those averages, and the events
of the days a study shows. Nothing identifies the participant: day numbers (``cohort/days.py``),
never dates, pseudonyms or free text.
"""

import statistics
from dataclasses import dataclass, field

from django.db.models import F, Window
from django.db.models.functions import RowNumber

from healthagent.agent.context import DAILY_METRICS, LATEST_MEASUREMENTS, MEASUREMENT_DECIMALS, recent_window_days
from healthagent.agent.formatting import duration, number
from healthagent.cohort.days import DaySpan, days_before_last, wearable_day
from healthagent.models import DailySummary, Event, Measurement, Participant
from modeling.ml.data.spec import MINUTES_PER_DAY, unit_label

READINGS_PER_MEASUREMENT = 2  # the latest and the one before it: what the agent's context holds of each
# Sleep and stress periods come every night and several times a day: the daily summaries and the chart's bands show them.
EVENT_KINDS_LEFT_OUT = (Event.Kind.SLEEP, Event.Kind.STRESS)


# Decimals as the agent writes each measurement (backends/grounded.py: HbA1c with one, blood pressure and LDL
# with none); weight keeps the one decimal the context has.
@dataclass
class MeasurementRow:
    name: str
    label: str
    unit: str
    readings: list[dict]  # latest first: {"value": "137", "days_before_last": 78}

    @property
    def latest(self) -> dict:
        return self.readings[0]

    @property
    def previous(self) -> dict | None:
        return self.readings[1] if len(self.readings) > 1 else None


@dataclass
class ParticipantRecord:
    agent_days: DaySpan  # the wearable days the agent's averages come from
    recent_days: DaySpan  # the last of them, the agent's "recent" window
    shown_days: DaySpan  # the days the study's chart shows
    columns: list[
        dict
    ]  # the daily-summary columns: {"field", "label", "unit"}; sleep is written in hours and minutes, so no unit
    measurements: list[MeasurementRow] = field(default_factory=list)
    summaries: list[dict] = field(default_factory=list)  # {"day", "shown", "values": [{"field", "text"} per column]}
    averages: list[dict] = field(
        default_factory=list
    )  # {"key": "recent" or "baseline", "label", "values": as summaries'}
    events: list[dict] = field(default_factory=list)  # {"day", "time", "kind", "name", "duration"}

    @property
    def baseline_days(self) -> DaySpan | None:
        return (
            DaySpan(self.agent_days.first, self.recent_days.first - 1)
            if self.recent_days.first > self.agent_days.first
            else None
        )


def _sentence_case(label: str) -> str:
    """'systolic blood pressure' -> 'Systolic blood pressure'; 'eGFR' stays as it is."""
    return label if label[1:2].isupper() else label[:1].upper() + label[1:]


def _display(field_name: str, value: float | None, decimals: int) -> str:
    if value is None:
        return "–"
    return duration(value) if field_name == "sleep_minutes" else number(value, decimals)


def _measurement_rows(participant: Participant) -> list[MeasurementRow]:
    from modeling.selectors import BIOMARKER_LABELS

    latest_first = (
        Measurement.objects.filter(participant=participant, name__in=LATEST_MEASUREMENTS)
        .annotate(
            position=Window(RowNumber(), partition_by=[F("name")], order_by=[F("day_index").desc(), F("pk").desc()])
        )
        .filter(position__lte=READINGS_PER_MEASUREMENT)
        .order_by("name", "position")
    )
    rows: dict[str, MeasurementRow] = {}
    for measurement in latest_first:
        row = rows.get(measurement.name)
        if row is None:
            label = BIOMARKER_LABELS.get(measurement.name, measurement.name.replace("_", " "))
            row = rows[measurement.name] = MeasurementRow(
                measurement.name, _sentence_case(label), unit_label(measurement.unit), []
            )
        # Rounded to one decimal first, as the context stores it, then written as the agent writes it.
        row.readings.append(
            {
                "value": number(round(measurement.value, 1), MEASUREMENT_DECIMALS.get(measurement.name, 0)),
                "days_before_last": days_before_last(participant, measurement.day_index),
            }
        )
    return [rows[name] for name in LATEST_MEASUREMENTS if name in rows]


def _averages(summaries: list[dict], spans: list[tuple[str, str, DaySpan]]) -> list[dict]:
    """The mean of each column over each span, rounded as the agent's context rounds it."""
    averages = []
    for key, label, span in spans:
        values = []
        for field_name, _, _, decimals in DAILY_METRICS:
            observed = [
                row["raw"][field_name]
                for row in summaries
                if span.first <= row["day"] <= span.last and row["raw"][field_name] is not None
            ]
            mean = round(statistics.fmean(observed), decimals) if observed else None  # as context._metric
            values.append({"field": field_name, "text": _display(field_name, mean, decimals)})
        averages.append({"key": key, "label": label, "values": values})
    return averages


def participant_record(*, participant: Participant, shown_days: DaySpan) -> ParticipantRecord:
    """What the agent saw of ``participant``, for a reader of its answer: the latest readings of the
    measurements it is given, the daily summaries and averages of the days it averaged, and the events of
    ``shown_days`` (the study's window). Three queries, whatever the record's length."""
    recent = recent_window_days(participant.minute_days)
    record = ParticipantRecord(
        agent_days=DaySpan(1, participant.minute_days),
        recent_days=DaySpan(max(1, participant.minute_days - recent + 1), participant.minute_days),
        shown_days=shown_days,
        columns=[
            {"field": name, "label": _sentence_case(label), "unit": "" if name == "sleep_minutes" else unit_label(unit)}
            for name, label, unit, _ in DAILY_METRICS
        ],
    )
    first_index, last_index = record.agent_days.day_indices(participant)
    record.measurements = _measurement_rows(participant)

    fields = [name for name, *_ in DAILY_METRICS]
    summaries = DailySummary.objects.filter(
        participant=participant, day_index__range=(first_index, last_index)
    ).order_by("day_index")
    for summary in summaries.values("day_index", *fields):
        day = wearable_day(participant, summary["day_index"])
        record.summaries.append(
            {
                "day": day,
                "shown": shown_days.first <= day <= shown_days.last,
                "raw": summary,
                "values": [
                    {"field": name, "text": _display(name, summary[name], decimals)}
                    for name, _, _, decimals in DAILY_METRICS
                ],
            }
        )
    spans = [("recent", f"Average, {record.recent_days} (recent)", record.recent_days)]
    if record.baseline_days:
        spans.append(("baseline", f"Average, {record.baseline_days} (before)", record.baseline_days))
    record.averages = _averages(record.summaries, spans)

    shown_first, shown_last = shown_days.day_indices(participant)
    events = (
        Event.objects.filter(participant=participant, day_index__range=(shown_first, shown_last))
        .exclude(kind__in=EVENT_KINDS_LEFT_OUT)
        .order_by("day_index", "start_minute")
        .only("kind", "name", "day_index", "start_minute", "end_minute")
    )
    for event in events:
        clock = None if event.start_minute is None else event.start_minute % MINUTES_PER_DAY
        record.events.append(
            {
                "day": wearable_day(participant, event.day_index),
                "kind": event.get_kind_display(),
                "name": event.name.replace("_", " "),
                "time": None if clock is None else f"{clock // 60:02d}:{clock % 60:02d}",
                "duration": duration(event.duration_minutes) if event.duration_minutes else "",
            }
        )
    return record
