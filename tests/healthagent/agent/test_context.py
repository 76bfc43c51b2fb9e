"""The agent's context numbers days as every page does: day 1 is the first day of wearable data."""

import pytest

from healthagent.agent.context import participant_context
from healthagent.models import Measurement
from tests.factories import synthetic_cohort

pytestmark = pytest.mark.django_db


def test_the_context_states_its_windows_and_measurement_days_in_the_pages_numbering():
    participant = synthetic_cohort("Numbered", participants=1, days=14, seed=21, history_days=120).participants.get()
    context = participant_context(participant=participant)
    windows = context["windows"]
    days = ("first_day", "last_day", "recent_first_day", "recent_days", "baseline_days")
    assert tuple(windows[key] for key in days) == (1, 14, 8, 7, 7)
    assert "day 1 is the first day of wearable data" in windows["numbering"]
    assert context["measurements"]
    for name, entry in context["measurements"].items():
        latest = Measurement.objects.filter(participant=participant, name=name).order_by("-day_index").first()
        assert (
            entry["day"] == latest.day_index - participant.minute_start_day + 1
        )  # 0 or less: before the wearable data
        assert entry["day"] == windows["last_day"] - entry["days_ago"]
        if entry["previous"]:
            assert entry["previous"]["day"] == windows["last_day"] - entry["previous"]["days_ago"] < entry["day"]
