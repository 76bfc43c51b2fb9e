"""How days are numbered on every page, in every caption and in the agent's context.

Day 1 is the participant's first day of wearable (minute-level) data, as on the minute chart's
axis; the last wearable day is day ``minute_days``. A study's window is the last ``window_days``
of those days, so a 7-day window of a 14-day record shows days 8-14, never "days 1-7". Sparse
measurements and events from before the wearable data are dated in days before the last day
(the agent's ``days_ago``), since their day numbers would be 0 or negative.
"""

from dataclasses import dataclass

from healthagent.models import Participant
from modeling.ml.data.spec import MINUTES_PER_DAY

DAY_NUMBERING = "day 1 is the first day of wearable data; a measurement's days_ago counts back from the last day"


def wearable_day(participant: Participant, day_index: int) -> int:
    """A record day index (``Measurement.day_index`` and kin) as a day number: 1 is the first wearable day."""
    return day_index - participant.minute_start_day + 1


def days_before_last(participant: Participant, day_index: int) -> int:
    """How many days a record day index lies before the participant's last wearable day."""
    return participant.minute_start_day + participant.minute_days - 1 - day_index


@dataclass(frozen=True)
class DaySpan:
    """Days ``first``-``last`` (inclusive) in wearable-day numbers."""

    first: int
    last: int

    @property
    def days(self) -> int:
        return max(0, self.last - self.first + 1)

    @property
    def minutes(self) -> tuple[int, int]:
        """The span as ``[start, end)`` minutes of the participant's minute-level data (day 1 starts at minute 0)."""
        return (self.first - 1) * MINUTES_PER_DAY, self.last * MINUTES_PER_DAY

    def __str__(self) -> str:
        return f"day {self.first}" if self.first == self.last else f"days {self.first}–{self.last}"

    def day_indices(self, participant: Participant) -> tuple[int, int]:
        """The span as record day indices ``(first, last)``, inclusive."""
        return participant.minute_start_day + self.first - 1, participant.minute_start_day + self.last - 1


def shown_days(participant: Participant, window_days: int) -> DaySpan:
    """The days a study with ``window_days`` shows of ``participant``: the last ones of the wearable data."""
    return DaySpan(max(1, participant.minute_days - window_days + 1), participant.minute_days)
