import json

import numpy as np
import pytest
from django.urls import reverse

from healthagent.cohort import charts
from healthagent.cohort.charts import ChartError, _downsample, daily_figure, minute_figure, minute_figure_json
from tests.factories import synthetic_cohort

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_week_participant():
    return synthetic_cohort("Two weeks", participants=1, days=14, seed=3, history_days=200).participants.get()


def decoded_y(trace):
    y = trace["y"]
    if isinstance(y, dict):  # plotly's base64 typed array
        import base64

        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=np.dtype(y["dtype"]))
    return np.array(y, dtype=float)


def test_a_two_week_view_stays_small_and_shows_gaps(two_week_participant):
    figure = minute_figure(participant=two_week_participant)
    payload = json.dumps(figure)
    assert len(payload) <= 400_000, len(payload)
    heart = decoded_y(figure["data"][0])
    assert len(heart) <= 1440
    assert np.isnan(heart).any()  # charging and off-wrist time are gaps, not lines across them
    assert figure["layout"]["shapes"]  # sleep and activity bands


def test_the_cached_chart_text_is_the_figure_escaped_for_a_script_element_and_built_once(
    two_week_participant, monkeypatch
):
    built = []
    real_minute_figure = charts.minute_figure
    monkeypatch.setattr(charts, "minute_figure", lambda **window: built.append(window) or real_minute_figure(**window))
    window = {"participant": two_week_participant, "start_minute": 1440, "end_minute": 3 * 1440}
    text = minute_figure_json(**window)
    assert minute_figure_json(**window) == text and len(built) == 1  # the second page view is a cache hit
    assert "<" not in text and ">" not in text and "&" not in text  # nothing can close the <script> element
    assert json.loads(text) == json.loads(json.dumps(real_minute_figure(**window)))
    minute_figure_json(participant=two_week_participant, start_minute=0, end_minute=1440)
    assert len(built) == 2  # another window is another entry


def test_min_max_downsampling_keeps_peaks():
    minutes = np.arange(1000)
    values = np.zeros(1000, dtype=np.float32)
    values[517] = 180.0
    values[200:300] = np.nan
    x, y = _downsample(minutes, values, max_buckets=50)
    assert len(y) == 100 and np.nanmax(y) == 180.0 and 517 in x
    assert np.isnan(y).sum() == 10  # five empty buckets, two points each


def test_zooming_returns_finer_detail_for_the_range(client, researcher, two_week_participant):
    client.force_login(researcher)
    url = reverse("cohort:participant_minutes", args=[two_week_participant.pk])
    response = client.get(url, {"start": 3 * 1440, "end": 3 * 1440 + 120})
    assert response.status_code == 200
    zoomed = response.json()
    assert zoomed["layout"]["meta"]["start_minute"] == 3 * 1440
    assert len(decoded_y(zoomed["data"][0])) == 120  # every minute of a two-hour window
    assert client.get(url, {"start": "x", "end": 10}).status_code == 400
    assert client.get(url, {"start": 50, "end": 52}).json()["error"].startswith("the window must cover")


def test_daily_figure_has_summaries_and_measurements(two_week_participant):
    figure = daily_figure(participant=two_week_participant)
    names = {trace["name"] for trace in figure["data"]}
    assert {"Steps", "Sleep", "systolic_bp", "hba1c"} <= names


def test_the_window_must_be_inside_the_trajectory(two_week_participant):
    with pytest.raises(ChartError):
        minute_figure(participant=two_week_participant, start_minute=14 * 1440, end_minute=15 * 1440)


def decoded(trace, axis):
    values = trace[axis]
    if isinstance(values, dict):  # plotly's base64 typed array
        import base64

        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"])).tolist()
    return list(values)


def test_the_daily_chart_and_the_event_table_number_days_as_the_minute_chart(client, researcher, two_week_participant):
    """Day 1 is the first day of wearable data everywhere: the daily bars of the 14 wearable days are days 1-14, not day indices of the history."""
    figure = daily_figure(participant=two_week_participant)
    steps = next(trace for trace in figure["data"] if trace["name"] == "Steps")
    assert decoded(steps, "x") == list(range(1, 15))
    blood_pressure = next(trace for trace in figure["data"] if trace["name"] == "systolic_bp")
    assert (
        max(decoded(blood_pressure, "x")) <= 14 and min(decoded(blood_pressure, "x")) < 1
    )  # readings of the history before it
    client.force_login(researcher)
    page = client.get(reverse("cohort:participant_detail", args=[two_week_participant.pk])).content.decode()
    event = (
        two_week_participant.events.exclude(kind__in=["sleep", "stress"]).order_by("day_index", "start_minute").first()
    )
    assert (
        f"<tr><td>{event.day_index - two_week_participant.minute_start_day + 1}</td><td>{event.get_kind_display()}</td>"
        in page
    )
    height = two_week_participant.measurements.get(name="height").value  # the one the twin reads obesity against
    assert f"· height {height:.1f} cm ·" in page
    two_week_participant.measurements.filter(name="height").delete()
    page = client.get(reverse("cohort:participant_detail", args=[two_week_participant.pk])).content.decode()
    assert "· height not recorded ·" in page
