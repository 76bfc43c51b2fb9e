"""What the agent sees: one function assembles it from the stored data of one participant.

The context is plain JSON (stored verbatim with every recommendation, so a reviewer sees exactly
what the agent saw). Every number in it is computed here from the database and the trajectory
file, rounded once, and cited by the backends as it stands.

Windows: of the participant's minute-level days, the **recent** window is the last
``min(14, days // 2)`` days and the **baseline** is the days before it. Days are numbered as every
page numbers them: day 1 is the participant's first day of wearable (minute-level) data, and a
measurement's age is counted in days before the last of those days (``days_ago``).
"""

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from healthagent.cohort.days import DAY_NUMBERING, days_before_last, wearable_day
from healthagent.cohort.store import read_window, trajectory_root
from healthagent.models import Measurement, Participant
from modeling.ml.data.clinical import BIOMARKER_BY_NAME
from modeling.ml.data.spec import MINUTES_PER_DAY

CONTEXT_VERSION = 2  # 2: windows and measurement days in wearable-day numbers (1 = first day of wearable data)

# Daily-summary metrics: field, label, unit, decimals.
DAILY_METRICS = (
    ("sleep_minutes", "sleep", "min", 0),
    ("steps", "daily steps", "steps", 0),
    ("active_minutes", "active minutes", "min", 0),
    ("resting_heart_rate_bpm", "resting heart rate", "bpm", 1),
    ("hrv_rmssd_ms", "heart-rate variability (RMSSD, night)", "ms", 1),
    ("spo2_mean_pct", "night-time SpO2", "%", 1),
    ("stress_score", "stress score", "0-100", 0),
)
LATEST_MEASUREMENTS = (
    "systolic_bp",
    "diastolic_bp",
    "weight",
    "hba1c",
    "fasting_glucose",
    "ldl",
    "hdl",
    "triglycerides",
    "egfr",
    "cgm_mean_glucose",
)
# Decimals a measurement is written with wherever it is shown (the answers cite it so; the rating page shows it so); 0 if not listed.
MEASUREMENT_DECIMALS = {"hba1c": 1, "weight": 1}


@dataclass
class Metric:
    name: str
    label: str
    unit: str
    baseline: float | None  # mean over the baseline days with data
    recent: float | None  # mean over the recent days with data
    change: float | None  # recent - baseline
    baseline_days: int
    recent_days: int
    recent_slope_per_week: float | None = None  # least-squares trend over the recent days


@dataclass
class AgentContext:
    version: int
    participant: dict
    question: str
    windows: dict
    metrics: dict[str, dict]
    sleep_timing: dict
    measurements: dict[str, dict]
    norms: dict
    red_flags: list[dict]
    data_quality: dict
    # Filled by later stages (foundation-model predictions, sensor captions, digital-twin effects).
    predictions: list[dict] = field(default_factory=list)
    captions: list[dict] = field(default_factory=list)
    simulated_effects: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _round(value: float | None, decimals: int) -> float | None:
    if value is None:
        return None
    return round(value, decimals) if decimals else float(round(value))


def recent_window_days(minute_days: int) -> int:
    return max(1, min(14, minute_days // 2))


def agent_windows(participant: Participant) -> dict:
    """The days the agent's averages come from, in wearable-day numbers: all of the participant's
    wearable days (``first_day``-``last_day``), the last ``recent_days`` of them being the recent window."""
    recent_days = recent_window_days(participant.minute_days)
    return {
        "numbering": DAY_NUMBERING,
        "minute_days": participant.minute_days,
        "first_day": 1,
        "last_day": participant.minute_days,
        "recent_days": recent_days,
        "recent_first_day": participant.minute_days - recent_days + 1,
        "baseline_days": participant.minute_days - recent_days,
    }


def _metric(
    summaries: Sequence[Mapping[str, Any]], field_name: str, label: str, unit: str, decimals: int, recent_start: int
) -> Metric:
    baseline = [s[field_name] for s in summaries if s["day_index"] < recent_start and s[field_name] is not None]
    recent_rows = [
        (s["day_index"], s[field_name])
        for s in summaries
        if s["day_index"] >= recent_start and s[field_name] is not None
    ]
    recent = [value for _, value in recent_rows]
    baseline_mean, recent_mean = _round(_mean(baseline), decimals), _round(_mean(recent), decimals)
    change = (
        _round(recent_mean - baseline_mean, decimals) if baseline_mean is not None and recent_mean is not None else None
    )
    slope = None
    if len(recent_rows) >= 4:
        days, values = np.array(recent_rows, dtype=float).T
        slope = _round(float(np.polyfit(days, values, 1)[0]) * 7.0, decimals)
    return Metric(field_name, label, unit, baseline_mean, recent_mean, change, len(baseline), len(recent), slope)


def sleep_midpoints(participant: Participant) -> list[float | None]:
    """Per minute-level day, the mean clock time (minutes after midnight, may be negative) of the
    minutes asleep in the night ending that day (18:00 the evening before to noon); None if no sleep."""
    values, mask = read_window(
        path=trajectory_root() / participant.trajectory_path,
        start_day=0,
        end_day=participant.minute_days,
        channels=["sleep_stage"],
    )
    asleep = (mask[:, 0] & (values[:, 0] >= 1)).ravel()
    midpoints = []
    for day in range(participant.minute_days):
        start = day * MINUTES_PER_DAY - 6 * 60
        window = np.flatnonzero(asleep[max(start, 0) : day * MINUTES_PER_DAY + 12 * 60]) + max(start, 0)
        midpoints.append(float(window.mean() - day * MINUTES_PER_DAY) if window.size >= 60 else None)
    return midpoints


def _clock(minutes_after_midnight: float) -> str:
    minutes = round(minutes_after_midnight) % MINUTES_PER_DAY
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def norms_for(age_band: str, sex: str) -> dict:
    """Reference values for adults of the participant's age band (published guideline ranges)."""
    low = int(age_band.split("-")[0].rstrip("+")) if age_band[0].isdigit() else None
    older = low is not None and low >= 65
    sixty_plus = low is not None and low >= 60
    return {
        "sleep_hours": {"low": 7, "high": 8 if older else 9, "source": "AASM/NSF adult sleep duration recommendation"},
        "daily_steps": {
            "target": 6000 if sixty_plus else 8000,
            "source": "step-count meta-analysis (Paluch et al., 2022)",
        },
        "active_minutes_per_week": {"target": 150, "source": "WHO physical activity guideline (moderate intensity)"},
        "resting_heart_rate_bpm": {"low": 50, "high": 100, "source": "adult resting heart rate range"},
        "blood_pressure_mmhg": {
            "normal_below": [120, 80],
            "stage_1": [130, 80],
            "stage_2": [140, 90],
            "crisis": [180, 120],
            "source": "ACC/AHA 2017 categories",
        },
        "hba1c_pct": {"prediabetes": 5.7, "diabetes": 6.5, "source": "ADA diagnostic thresholds"},
        "ldl_mg_dl": {
            "optimal_below": 100,
            "borderline_high": 130,
            "high": 160,
            "very_high": 190,
            "source": "NCEP ATP III",
        },
        "spo2_pct": {"normal_at_least": 95, "low_below": 90},
        "sex": sex,
    }


# A foundation-model estimate reaches the agent only if its probe did this well on held-out participants.
PREDICTION_QUALITY = {"auroc": 0.7, "pearson_r": 0.5}
PREDICTION_FAMILIES_LEFT_OUT = ("demographics",)  # the agent already knows age band and sex


def _predictions(participant: Participant) -> list[dict]:
    """The latest foundation model's estimates for ``participant`` that passed the quality bar, with their intervals."""
    from modeling.models import Prediction

    stored = list(
        Prediction.objects.filter(participant=participant)
        .select_related("checkpoint")
        .order_by("-checkpoint__created_at", "-checkpoint_id", "task")
    )
    if not stored:
        return []
    latest = stored[0].checkpoint
    entries = []
    for prediction in (p for p in stored if p.checkpoint_id == latest.pk):
        details = prediction.details
        quality = details.get("quality", {})
        if details.get("family") in PREDICTION_FAMILIES_LEFT_OUT or not any(
            (quality.get(metric) or 0) >= bar for metric, bar in PREDICTION_QUALITY.items()
        ):
            continue
        decimals = 2 if prediction.kind != "regression" else 1
        entries.append(
            {
                "task": prediction.task,
                "description": details.get("description", ""),
                "kind": prediction.kind,
                "label": prediction.label or None,
                "estimate": round(prediction.estimate, decimals),
                "interval_90": [round(prediction.low, decimals), round(prediction.high, decimals)],
                "unit": details.get("unit", ""),
                "held_out_quality": {
                    key: round(value, 2) for key, value in quality.items() if key in PREDICTION_QUALITY
                },
                "model": f"{latest.family}-{latest.size} #{latest.pk}",
            }
        )
    return entries


def _simulated_effects(participant: Participant) -> list[dict]:
    """The digital twin's predicted effects of the interventions last simulated for ``participant``."""
    from healthagent.agent.simulations import simulated_effects

    return simulated_effects(participant=participant)


def _red_flags(summaries: Sequence[Mapping[str, Any]], recent_start: int, measurements: dict[str, dict]) -> list[dict]:
    flags = []
    high_rest = [s for s in summaries if s["day_index"] >= recent_start and (s["resting_heart_rate_bpm"] or 0) >= 100]
    if len(high_rest) >= 3:
        flags.append(
            {
                "code": "sustained_high_resting_heart_rate",
                "detail": f"resting heart rate at or above 100 bpm on {len(high_rest)} recent days",
                "action": "Seek care: a resting heart rate this high for several days should be checked by a clinician soon.",
            }
        )
    low_oxygen = [s for s in summaries if s["spo2_mean_pct"] is not None and s["spo2_mean_pct"] < 90]
    if low_oxygen:
        flags.append(
            {
                "code": "low_oxygen_saturation",
                "detail": f"night-time SpO2 averaged under 90 % on {len(low_oxygen)} night(s)",
                "action": "Seek care: oxygen saturation under 90 % needs prompt medical assessment.",
            }
        )
    systolic, diastolic = measurements.get("systolic_bp"), measurements.get("diastolic_bp")
    if (systolic and systolic["value"] >= 180) or (diastolic and diastolic["value"] >= 120):
        flags.append(
            {
                "code": "hypertensive_crisis_range",
                "detail": "the latest blood pressure is in the crisis range (180/120 mmHg or above)",
                "action": "Seek care today: blood pressure this high needs urgent medical attention, at once if you have chest pain, breathlessness, weakness or vision changes.",
            }
        )
    return flags


def participant_context(*, participant: Participant, question: str = "") -> dict:
    """Everything the agent may use about ``participant``, as JSON-ready data."""
    summaries = list(participant.daily_summaries.order_by("day_index").values())
    last_day = participant.minute_start_day + participant.minute_days  # exclusive
    recent_days = recent_window_days(participant.minute_days)
    recent_start = last_day - recent_days
    metrics = {
        name: _metric(summaries, name, label, unit, decimals, recent_start)
        for name, label, unit, decimals in DAILY_METRICS
    }

    midpoints = sleep_midpoints(participant) if participant.trajectory_path else []
    observed = [m for m in midpoints if m is not None]
    sleep_timing = {
        "nights": len(observed),
        "midpoint_clock": _clock(statistics.fmean(observed)) if observed else None,
        "midpoint_sd_min": _round(statistics.pstdev(observed), 0) if len(observed) >= 3 else None,
    }

    latest: dict[str, dict] = {}
    for measurement in Measurement.objects.filter(participant=participant, name__in=LATEST_MEASUREMENTS).order_by(
        "name", "-day_index"
    ):
        entry = latest.get(measurement.name)
        if entry is None:
            latest[measurement.name] = {
                "value": round(measurement.value, 1),
                "unit": measurement.unit,
                "day": wearable_day(participant, measurement.day_index),
                "days_ago": days_before_last(participant, measurement.day_index),
                "previous": None,
            }
        elif entry["previous"] is None:
            entry["previous"] = {
                "value": round(measurement.value, 1),
                "day": wearable_day(participant, measurement.day_index),
                "days_ago": days_before_last(participant, measurement.day_index),
            }

    wear = [s["wear_minutes"] for s in summaries]
    context = AgentContext(
        version=CONTEXT_VERSION,
        participant={"pseudonym": participant.pseudonym, "age_band": participant.age_band, "sex": participant.sex},
        question=question.strip(),
        windows=agent_windows(participant),
        metrics={name: asdict(metric) for name, metric in metrics.items()},
        sleep_timing=sleep_timing,
        measurements=latest,
        norms=norms_for(participant.age_band, participant.sex),
        red_flags=_red_flags(summaries, recent_start, latest),
        data_quality={
            "days_with_data": sum(1 for w in wear if w > 0),
            "mean_wear_hours": _round(statistics.fmean(wear) / 60 if wear else None, 1),
            "units": {name: BIOMARKER_BY_NAME[name].unit for name in latest},
        },
        predictions=_predictions(participant),
        simulated_effects=_simulated_effects(participant),
    )
    return context.as_dict()
