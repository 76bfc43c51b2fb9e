"""The synthetic source: participants of the physiology simulator, as if exported from a study.

The simulator's participant ids stand in for a real source's identifiers and go through the same
anonymization; the latent traits and task labels are kept as ground truth for model evaluation.
"""

from collections.abc import Iterator

from healthagent.cohort.importing import RawParticipant
from healthagent.cohort.measurements import HEIGHT, UNITS_AND_MODALITIES
from modeling.ml.data.cohort import make_cohort
from modeling.ml.data.minutes import Event as MinuteEvent

# Minute-level event kinds of the simulator, mapped to Event.kind.
_MINUTE_EVENT_KINDS = {"sleep": "sleep", "stress": "stress", "illness": "illness"}


def _minute_event(event: MinuteEvent, minute_start_day: int) -> dict:
    return {
        "kind": _MINUTE_EVENT_KINDS.get(event.kind, "activity"),
        "name": event.kind,
        "day": minute_start_day + event.start_minute // 1440,
        "start_minute": event.start_minute,
        "end_minute": event.end_minute,
    }


def _with_height(measurements: list[dict], height_m: float, history_days: int) -> list[dict]:
    """The timeline's measurements and the participant's height, measured at the last weighing (or the history's
    last day): a history trimmed at import keeps its latest days."""
    weighed = [m["day"] for m in measurements if m["name"] == "weight"]
    unit, modality = UNITS_AND_MODALITIES[HEIGHT]
    height = {"day": max(weighed, default=history_days - 1), "name": HEIGHT, "value": round(100 * height_m, 1)}
    return [*measurements, {**height, "unit": unit, "modality": modality}]


def synthetic_participants(
    *, participants: int, days: int, seed: int, history_days: int = 365
) -> tuple[Iterator[RawParticipant], dict]:
    """Simulated participants (generated lazily) and the source report."""
    cohort = make_cohort(participants=participants, days=days, seed=seed, history_days=history_days)

    def generate() -> Iterator[RawParticipant]:
        for simulated in cohort:
            minute_start = simulated.minute_start_day
            yield RawParticipant(
                source_id=simulated.source_id,
                age_years=simulated.traits["age_years"],
                sex="female" if simulated.traits["female"] else "male",
                values=simulated.minutes.values,
                mask=simulated.minutes.mask,
                start_weekday=simulated.minutes.start_weekday,
                minute_start_day=minute_start,
                history_days=cohort.history_days,
                measurements=_with_height(
                    simulated.timeline.measurements, simulated.traits["height_m"], cohort.history_days
                ),
                events=[
                    *simulated.timeline.events,
                    *(_minute_event(e, minute_start) for e in simulated.minutes.events),
                ],
                ground_truth={
                    "traits": simulated.traits,
                    "labels": simulated.labels,
                    "seed": seed,
                    "index": simulated.index,
                },
            )

    report = {
        "source": "synthetic",
        "participants": participants,
        "days": days,
        "history_days": cohort.history_days,
        "seed": seed,
    }
    return generate(), report
