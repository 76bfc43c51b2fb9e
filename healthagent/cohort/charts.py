"""The trajectory chart: one component for every page that shows a participant's data.

It takes a participant and a window (never a request), so the researcher's participant page and
the clinician's rating page render the same thing. Minute-level channels are downsampled on the
server (min and max per bucket, so peaks survive) to a fixed number of points whatever the
window; the browser asks for a finer window when the user zooms.
"""

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from django.conf import settings
from django.core.cache import caches
from django.utils.safestring import mark_safe
from django.utils.text import compress_string
from plotly.subplots import make_subplots

from healthagent.cohort.days import wearable_day
from healthagent.cohort.store import read_window, trajectory_root
from healthagent.models import CHART_VERSION_FOLDER, Event, Participant, participant_chart_folder
from modeling.ml.data.spec import FEATURE_NAMES, MINUTES_PER_DAY, SLEEP_STAGES, feature, unit_label

DEFAULT_CHANNELS = (
    "heart_rate",
    "rmssd",
    "steps",
    "sleep_stage",
    "skin_temperature",
    "skin_conductance",
    "spo2",
    "stress_score",
)
MAX_BUCKETS = 720  # per channel: at most 1,440 points (a min and a max per bucket)
MINUTE_MS = 60_000

# The minute chart uses a date axis, so zooming shows clock times. Day 1 of the window is drawn on
# 1 January of a year whose 1 January has the participant's weekday, and the axis format prints
# the day of the year ("Day 3") and the weekday, never a calendar date.
_YEAR_BY_WEEKDAY = {0: 2001, 1: 2002, 2: 2003, 3: 2004, 4: 2010, 5: 2005, 6: 2006}
AXIS_FORMAT = "Day %-j, %a %H:%M"

EVENT_COLOURS = {
    "sleep": "rgba(90, 100, 160, 0.16)",
    "stress": "rgba(214, 120, 0, 0.14)",
    "illness": "rgba(200, 30, 30, 0.12)",
}
ACTIVITY_COLOUR = "rgba(30, 150, 80, 0.18)"


class ChartError(Exception):
    pass


def chart_channels(text: str | None) -> tuple[str, ...]:
    """The panels a chart request names (comma-separated feature names; DEFAULT_CHANNELS when absent).
    Raises ChartError for an unknown, repeated or missing name, or more panels than the default chart has."""
    if text is None:
        return DEFAULT_CHANNELS
    names = tuple(name.strip() for name in text.split(","))
    known = set(FEATURE_NAMES)
    if not all(names) or len(set(names)) != len(names) or len(names) > len(DEFAULT_CHANNELS) or not set(names) <= known:
        raise ChartError(
            f"channels must be 1 to {len(DEFAULT_CHANNELS)} different names of: {', '.join(sorted(known))}"
        )
    return names


def _axis_origin_ms(participant: Participant) -> float:
    year = _YEAR_BY_WEEKDAY[participant.start_weekday % 7]
    return datetime(year, 1, 1, tzinfo=UTC).timestamp() * 1000.0


def minute_to_axis_ms(participant: Participant, minute: np.ndarray | int) -> np.ndarray:
    return _axis_origin_ms(participant) + np.asarray(minute, dtype=np.float64) * MINUTE_MS


def axis_ms_to_minute(participant: Participant, axis_ms: float) -> int:
    return round((axis_ms - _axis_origin_ms(participant)) / MINUTE_MS)


def _downsample(minutes: np.ndarray, values: np.ndarray, max_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of each bucket, in time order; an empty bucket becomes a gap (NaN)."""
    bucket = max(1, int(np.ceil(len(values) / max_buckets)))
    if bucket == 1:
        return minutes, values
    usable = len(values) // bucket * bucket
    shaped = values[:usable].reshape(-1, bucket)
    starts = minutes[:usable:bucket]
    empty = np.isnan(shaped).all(axis=1)
    filled = np.where(np.isnan(shaped), 0.0, shaped)
    arg_low = np.argmin(np.where(np.isnan(shaped), np.inf, shaped), axis=1)
    arg_high = np.argmax(np.where(np.isnan(shaped), -np.inf, shaped), axis=1)
    first = np.minimum(arg_low, arg_high)
    second = np.maximum(arg_low, arg_high)
    rows = np.arange(len(shaped))
    out_minutes = np.stack([starts + first, starts + second], axis=1).ravel()
    out_values = np.stack([filled[rows, first], filled[rows, second]], axis=1).astype(np.float32)
    out_values[empty] = np.nan
    return out_minutes, out_values.ravel()


def minute_figure(
    *,
    participant: Participant,
    start_minute: int | None = None,
    end_minute: int | None = None,
    channels: tuple[str, ...] = DEFAULT_CHANNELS,
    max_buckets: int = MAX_BUCKETS,
) -> dict:
    """Stacked panels of minute-level channels over ``[start_minute, end_minute)`` as plotly JSON.

    Minutes count from the participant's first minute-level minute; the default is the whole
    trajectory. Missing minutes are gaps; sleep, activities, stress and illness are shaded bands.
    """
    total = participant.minute_days * MINUTES_PER_DAY
    start_minute = 0 if start_minute is None else max(0, int(start_minute))
    end_minute = total if end_minute is None else min(total, int(end_minute))
    if end_minute - start_minute < 10:
        raise ChartError("the window must cover at least ten minutes of the trajectory")
    start_day, end_day = start_minute // MINUTES_PER_DAY, -(-end_minute // MINUTES_PER_DAY)
    values, mask = read_window(
        path=trajectory_root() / participant.trajectory_path,
        start_day=start_day,
        end_day=end_day,
        channels=list(channels),
    )
    flat = np.where(mask, values, np.nan).transpose(1, 0, 2).reshape(len(channels), -1)  # (channels, minutes)
    offset = start_minute - start_day * MINUTES_PER_DAY
    flat = flat[:, offset : offset + (end_minute - start_minute)]
    minutes = np.arange(start_minute, end_minute)

    figure = make_subplots(rows=len(channels), cols=1, shared_xaxes=True, vertical_spacing=0.012)
    for row, name in enumerate(channels, start=1):
        spec = feature(name)
        x_minutes, y = _downsample(minutes, flat[row - 1], max_buckets)
        figure.add_trace(
            go.Scatter(
                x=minute_to_axis_ms(participant, x_minutes),
                y=y,
                mode="lines",
                name=spec.description,
                line={"width": 1.1, "shape": "hv" if spec.categorical else "linear"},
                connectgaps=False,
                hovertemplate=f"%{{y:.1f}} {unit_label(spec.unit)}<extra>{name.replace('_', ' ')}</extra>",
            ),
            row=row,
            col=1,
        )
        axis = {
            "title": {"text": f"{name.replace('_', ' ')}<br>({unit_label(spec.unit)})", "font": {"size": 10}},
            "fixedrange": True,
        }
        if name == "sleep_stage":
            axis.update(tickvals=[0, 1, 2, 3], ticktext=list(SLEEP_STAGES), range=[-0.3, 3.3])
        figure.update_yaxes(axis, row=row, col=1)

    origin = _axis_origin_ms(participant)
    events = [
        (kind, start, end)
        for kind, start, end in participant.events.filter(
            start_minute__lt=end_minute, end_minute__gt=start_minute
        ).values_list("kind", "start_minute", "end_minute")
        if start is not None and end is not None  # the filter's comparisons already leave NULLs out
    ]
    shapes = [
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": origin + max(start, start_minute) * MINUTE_MS,
            "x1": origin + min(end, end_minute) * MINUTE_MS,
            "y0": 0,
            "y1": 1,
            "line": {"width": 0},
            "layer": "below",
            "fillcolor": EVENT_COLOURS.get(kind, ACTIVITY_COLOUR),
        }
        for kind, start, end in events
    ]
    figure.update_xaxes(
        type="date",
        tickformat=AXIS_FORMAT,
        hoverformat=AXIS_FORMAT,
        range=[origin + start_minute * MINUTE_MS, origin + end_minute * MINUTE_MS],
    )
    figure.update_layout(
        height=110 * len(channels) + 60,
        margin={"l": 90, "r": 20, "t": 20, "b": 40},
        showlegend=False,
        hovermode="x unified",
        shapes=shapes,
        template="plotly_white",
        # channels: what a zoom asks for again (static/js/trajectory-chart.js), so it redraws the same panels.
        meta={
            "start_minute": start_minute,
            "end_minute": end_minute,
            "origin_ms": origin,
            "total_minutes": total,
            "channels": list(channels),
        },
    )
    return json.loads(figure.to_json())


CHART_CACHE_VERSION = 4  # bump when minute_figure's output, or its files' layout, changes
_SCRIPT_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}  # as django.utils.html.json_script


def minute_figure_key(
    *,
    participant: Participant,
    start_minute: int | None = None,
    end_minute: int | None = None,
    channels: tuple[str, ...] = DEFAULT_CHANNELS,
) -> str:
    """What a minute figure depends on: the chart code's version, the trajectory file, the window, the
    channels. The cache key of :func:`minute_figure_json`, and an ETag for the figure's URL."""
    path = trajectory_root() / participant.trajectory_path
    return (
        f"minute-figure:v{CHART_CACHE_VERSION}:{participant.pk}:{path}:{start_minute}:{end_minute}:{','.join(channels)}"
    )


def minute_figure_json(
    *,
    participant: Participant,
    start_minute: int | None = None,
    end_minute: int | None = None,
    channels: tuple[str, ...] = DEFAULT_CHANNELS,
) -> str:
    """:func:`minute_figure` as JSON text, through the ``charts`` cache, keyed by participant and window.

    The text is safe inside a ``<script type="application/json">`` element (``<``, ``>`` and ``&``
    are escaped, as Django's ``json_script`` does) and is valid JSON for an HTTP response. Building
    the figure costs ~150 ms of CPU (plotly's object model) and serializing and escaping its ~210 KB ~8 ms, which
    every rating page and zoom would pay again; its inputs never change after the import (a
    trajectory file is written once, under a path that names the participant), so a cached figure
    is never stale.
    """
    key = minute_figure_key(
        participant=participant, start_minute=start_minute, end_minute=end_minute, channels=channels
    )
    cache = caches["charts"]
    text = cache.get(key)
    if text is None:
        built = _chart_file_path(key, participant.pk)
        if built.exists():  # built by another process, or before a restart: a decompression, not a build
            text = gzip.decompress(built.read_bytes()).decode()
        else:
            figure = minute_figure(
                participant=participant, start_minute=start_minute, end_minute=end_minute, channels=channels
            )
            text = json.dumps(figure, separators=(",", ":")).translate(_SCRIPT_ESCAPES)
        cache.set(key, text)
    return mark_safe(text)


def _chart_file_path(key: str, participant_pk: int) -> Path:
    folder = participant_chart_folder(participant_pk, CHART_CACHE_VERSION)
    return folder / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.json.gz"


def minute_figure_path(*, key: str, participant_pk: int) -> Path:
    """Where :func:`minute_figure_file` keeps the figure of ``key`` (:func:`minute_figure_key`), built or not (nothing
    is built or read)."""
    return _chart_file_path(key, participant_pk)


def minute_figure_file(
    *,
    participant: Participant,
    start_minute: int | None = None,
    end_minute: int | None = None,
    channels: tuple[str, ...] = DEFAULT_CHANNELS,
) -> Path:
    """The figure of :func:`minute_figure_json`, gzip-compressed, as a file: built once per deployment (by the study's
    chart job when it opens, or by the first request that needs it) and then read by every web process, after every
    restart, at the cost of an open and a read, or sent by the server itself (``sendfile``). Named by the digest of
    :func:`minute_figure_key` (the code's version, the trajectory file, the window, the channels), under a folder per
    chart version and participant (``CHART_ROOT/v<N>/p<participant>/``: an older version's folder can be removed
    whole, and a participant's goes with the participant). Written to a temporary file and renamed, so a reader never
    sees half a file."""
    key = minute_figure_key(
        participant=participant, start_minute=start_minute, end_minute=end_minute, channels=channels
    )
    path = _chart_file_path(key, participant.pk)
    folder = path.parent
    if not path.exists():
        text = minute_figure_json(
            participant=participant, start_minute=start_minute, end_minute=end_minute, channels=channels
        )
        compressed = compress_string(text.encode())
        for attempt in (1, 2):
            folder.mkdir(parents=True, exist_ok=True)
            try:
                with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as part:
                    part.write(compressed)
                os.replace(part.name, path)
                break
            except FileNotFoundError:  # the folder removed meanwhile (a newer version's prune on a shared store)
                if attempt == 2:
                    raise
    return path


def chart_versions_prune() -> list[Path]:
    """Remove whole the folders of every older chart version (``CHART_ROOT/v<N>``, N below
    :data:`CHART_CACHE_VERSION`) and return them: their files are named by keys this code never makes
    (:func:`minute_figure_key`), so nothing reads them again, and a link sealed to one (evaluation.chart_links) finds
    no file and goes to the view, which builds the current version's. A newer version's folder (a host already
    upgraded, sharing the store) and anything not named so are kept; a folder that could not be removed is not
    returned. Run at each deployment (``manage.py charts_prune``) and by every study's chart job."""
    root = Path(settings.CHART_ROOT)
    removed = []
    for folder in sorted(root.glob("v*")) if root.is_dir() else []:
        match = CHART_VERSION_FOLDER.fullmatch(folder.name)
        if match and folder.is_dir() and not folder.is_symlink() and int(match[1]) < CHART_CACHE_VERSION:
            shutil.rmtree(folder, ignore_errors=True)  # a file another process removed first is no error
            if not folder.exists():
                removed.append(folder)
    return removed


DAILY_PANELS = (
    ("steps", "Steps", "steps"),
    ("sleep_minutes", "Sleep", "min"),
    ("resting_heart_rate_bpm", "Resting heart rate", "bpm"),
    ("hrv_rmssd_ms", "HRV (RMSSD, night)", "ms"),
)
MEASUREMENT_PANELS = (
    (("systolic_bp", "diastolic_bp"), "Blood pressure", "mmHg"),
    (("weight",), "Weight", "kg"),
    (("hba1c",), "HbA1c", "%"),
    (("ldl", "hdl"), "Cholesterol", "mg/dL"),
    (("fasting_glucose", "cgm_mean_glucose"), "Glucose", "mg/dL"),
)


def daily_figure(*, participant: Participant) -> dict:
    """Daily summaries of the minute-level days and the sparse measurements over the whole history,
    with medications, interventions and diagnoses as vertical markers. The x axis numbers days as the
    minute chart does (``cohort/days.py``): day 1 is the first day of wearable data, earlier days are 0 or less."""
    rows = len(DAILY_PANELS) + len(MEASUREMENT_PANELS)
    figure = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.015)
    summaries = list(participant.daily_summaries.values("day_index", *(field for field, _, _ in DAILY_PANELS)))
    days = [wearable_day(participant, summary["day_index"]) for summary in summaries]
    for row, (field, title, unit) in enumerate(DAILY_PANELS, start=1):
        values = [summary[field] for summary in summaries]
        figure.add_trace(
            go.Bar(x=days, y=values, name=title, hovertemplate=f"day %{{x}}: %{{y:.0f}} {unit}<extra>{title}</extra>"),
            row=row,
            col=1,
        )
        figure.update_yaxes(
            title={"text": f"{title}<br>({unit_label(unit)})", "font": {"size": 10}}, fixedrange=True, row=row, col=1
        )

    measurements: dict[str, list[tuple[int, float]]] = {}
    for name, day_index, value in participant.measurements.values_list("name", "day_index", "value"):
        measurements.setdefault(name, []).append((wearable_day(participant, day_index), value))
    for row, (names, title, unit) in enumerate(MEASUREMENT_PANELS, start=len(DAILY_PANELS) + 1):
        for name in names:
            points = measurements.get(name, [])
            figure.add_trace(
                go.Scatter(
                    x=[p[0] for p in points],
                    y=[p[1] for p in points],
                    mode="markers",
                    name=name,
                    marker={"size": 5},
                    hovertemplate=f"day %{{x}}: %{{y:.1f}} {unit}<extra>{name}</extra>",
                ),
                row=row,
                col=1,
            )
        figure.update_yaxes(
            title={"text": f"{title}<br>({unit_label(unit)})", "font": {"size": 10}}, fixedrange=True, row=row, col=1
        )

    markers = participant.events.filter(
        kind__in=[Event.Kind.MEDICATION, Event.Kind.INTERVENTION, Event.Kind.DIAGNOSIS, Event.Kind.ENDPOINT]
    )
    shapes, annotations = [], []
    for kind, name, day_index in markers.values_list("kind", "name", "day_index"):
        day_index = wearable_day(participant, day_index)
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": day_index,
                "x1": day_index,
                "y0": 0,
                "y1": 1,
                "line": {"width": 1, "dash": "dot", "color": "#9a6700" if kind == Event.Kind.DIAGNOSIS else "#0b5cad"},
            }
        )
        annotations.append(
            {
                "x": day_index,
                "y": 1,
                "xref": "x",
                "yref": "paper",
                "text": name.replace("_", " "),
                "showarrow": False,
                "textangle": -90,
                "xanchor": "left",
                "yanchor": "top",
                "font": {"size": 9},
            }
        )
    minute_window = [0.5, participant.minute_days + 0.5]
    shapes.append(
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": minute_window[0],
            "x1": minute_window[1],
            "y0": 0,
            "y1": 1,
            "fillcolor": "rgba(11, 92, 173, 0.06)",
            "line": {"width": 0},
            "layer": "below",
        }
    )
    figure.update_xaxes(title={"text": "day (day 1 is the first day of wearable data)"}, row=rows, col=1)
    figure.update_layout(
        height=95 * rows + 80,
        margin={"l": 90, "r": 20, "t": 20, "b": 40},
        showlegend=False,
        template="plotly_white",
        shapes=shapes,
        annotations=annotations,
        bargap=0.15,
    )
    return json.loads(figure.to_json())
