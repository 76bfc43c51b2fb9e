"""Day captions of a stored participant: the SensorLM captioner over the anonymized minutes and event log.

Only what the cohort store already holds goes in (day indices, clock times within a day, signal
values, event kinds), so a caption reveals nothing the chart beside it does not.
"""

from healthagent.cohort.store import read_window, trajectory_root
from healthagent.models import Participant
from modeling.ml.sensorlm.captions import READER_LEVELS, caption_days


def participant_day_captions(
    *, participant: Participant, start_day: int, end_day: int, levels=READER_LEVELS
) -> list[dict]:
    """``{"day", "caption"}`` for minute-level days ``[start_day, end_day)`` (0-based), each numbered as the chart
    numbers it (``cohort/days.py``: day 1 is the first day of wearable data), not by its position in the window."""
    if not participant.trajectory_path or end_day <= start_day:
        return []
    values, mask = read_window(
        path=trajectory_root() / participant.trajectory_path, start_day=start_day, end_day=end_day
    )
    events = participant.events.filter(
        start_minute__isnull=False, end_minute__gt=start_day * 1440, start_minute__lt=end_day * 1440
    )
    in_window = list(events.only("name", "kind", "start_minute", "end_minute"))
    # none in the window: does the participant have an event log at all? (one more query, only then)
    event_log = bool(in_window) or participant.events.exists()
    captions = caption_days(values, mask, in_window, levels, first_day=start_day, event_log=event_log)
    return [{"day": start_day + position + 1, "caption": caption} for position, caption in enumerate(captions)]
