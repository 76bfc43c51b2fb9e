"""Every number the grounded agent writes is recomputed here from the stored data, independently."""

import re
import statistics

import numpy as np
import pyarrow.parquet as pq
import pytest
from django.db.models import Avg, Count

from healthagent.agent.generate import cohort_generate
from healthagent.cohort.store import trajectory_root
from healthagent.models import AgentVariant, DailySummary, Measurement
from tests.factories import synthetic_cohort

pytestmark = pytest.mark.django_db
NUMBER = re.compile(r"(?<![\w.,])\d[\d,]*(?:\.\d+)?(?![\w])")


@pytest.fixture
def recommendations():
    cohort = synthetic_cohort("Cited", participants=12, days=14, seed=77, history_days=200)
    grounded = AgentVariant.objects.get(name="grounded agent")
    counts = cohort_generate(cohort=cohort, variants=[grounded])
    assert counts["succeeded"] == 12
    return list(grounded.recommendations.select_related("participant"))


def summary_mean(participant, field, *, recent: bool):
    last_day = participant.minute_start_day + participant.minute_days
    recent_start = last_day - max(1, min(14, participant.minute_days // 2))
    rows = DailySummary.objects.filter(participant=participant, **{f"{field}__isnull": False})
    rows = rows.filter(day_index__gte=recent_start) if recent else rows.filter(day_index__lt=recent_start)
    return rows.aggregate(mean=Avg(field), days=Count("pk"))


def sleep_midpoint_spread(participant):
    table = pq.read_table(
        trajectory_root() / participant.trajectory_path, columns=["sleep_stage", "observed_bits"]
    ).to_pandas()
    stage_bit = 1 << 21  # sleep_stage is channel 21 of the feature spec
    asleep = ((table["observed_bits"] & stage_bit) != 0) & (table["sleep_stage"] >= 1)
    minutes = np.flatnonzero(asleep.to_numpy())
    midpoints = []
    for day in range(participant.minute_days):
        night = minutes[(minutes >= day * 1440 - 360) & (minutes < day * 1440 + 720)]
        if night.size >= 60:
            midpoints.append(night.mean() - day * 1440)
    return len(midpoints), round(statistics.pstdev(midpoints)) if len(midpoints) >= 3 else None


def recompute(source: str, recommendation):
    participant = recommendation.participant
    parts = source.split(".")
    if parts[0] == "metrics":
        field = parts[1]
        if parts[2] == "recent*7":
            return summary_mean(participant, field, recent=True)["mean"] * 7
        result = summary_mean(participant, field, recent=parts[2].startswith("recent"))
        return result["days"] if parts[2].endswith("_days") else result["mean"]
    if parts[0] == "measurements":
        latest = Measurement.objects.filter(participant=participant, name=parts[1]).order_by("-day_index").first()
        if parts[2] == "days_ago":
            return participant.minute_start_day + participant.minute_days - 1 - latest.day_index
        return latest.value
    if parts[0] == "sleep_timing":
        nights, spread = sleep_midpoint_spread(participant)
        return {"nights": nights, "midpoint_sd_min": spread}[parts[1]]
    if parts[0] == "windows":
        return max(1, min(14, participant.minute_days // 2))
    if parts[0] == "norms":  # guideline constants: the norms for the participant's age band
        return {
            "sleep_hours.low": 7,
            "sleep_hours.high": 8 if participant.age_band.startswith(("65", "70", "75", "80", "85")) else 9,
            "daily_steps.target": 6000 if participant.age_band[:2] in {"60", "65", "70", "75", "80", "85"} else 8000,
            "active_minutes_per_week.target": 150,
            "hba1c_pct.prediabetes": 5.7,
        }[".".join(parts[1:])]
    raise AssertionError(f"no recomputation for {source}")


def test_every_cited_number_is_recomputed_from_the_stored_data(recommendations):
    checked = 0
    for recommendation in recommendations:
        text = recommendation.text
        for item in recommendation.items:
            assert item["citations"], item["key"]
            for citation in item["citations"]:
                expected = recompute(citation["source"], recommendation)
                tolerance = 0.051 if isinstance(citation["value"], float) and citation["value"] % 1 else 0.51
                if citation["source"].startswith("metrics.active_minutes"):
                    tolerance = 3.6  # the weekly figure is a rounded daily mean times seven
                assert citation["value"] == pytest.approx(expected, abs=tolerance), (citation, expected)
                assert citation["display"] in text
                checked += 1
    assert checked >= 20


def test_the_text_holds_no_number_that_is_not_cited(recommendations):
    for recommendation in recommendations:
        text = recommendation.text
        days_with_data = DailySummary.objects.filter(participant=recommendation.participant, wear_minutes__gt=0).count()
        confidence = f"from {days_with_data} days of wearable data"
        assert confidence in text
        text = text.replace(confidence, "")
        for display in sorted(
            {c["display"] for item in recommendation.items for c in item["citations"]}, key=len, reverse=True
        ):
            text = text.replace(display, "")
        text = re.sub(r"^\d+\. ", "", text, flags=re.MULTILINE)  # list numbering
        assert NUMBER.findall(text) == [], text


def test_recommendations_are_ranked_by_expected_benefit(recommendations):
    for recommendation in recommendations:
        benefits = [item["expected_benefit"] for item in recommendation.items]
        assert benefits == sorted(benefits, reverse=True)
        assert len(benefits) <= 4
