"""Sparse multimodal measurements over months, diagnoses and endpoints, and interventions.

Biomarkers follow latent daily trajectories: the participant's baseline (from the traits), a slow
ageing drift, red noise, and the causal effect of any intervention started on a given day. An
intervention's effect on a participant is known exactly (:func:`individual_effect`), so randomized
trials run in this world have true effects to check a digital twin against.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modeling.ml.data.traits import Traits


@dataclass(frozen=True)
class Biomarker:
    name: str
    unit: str
    modality: str  # lab, blood_pressure, body_composition, cgm, wearable_daily
    measurement_sd: float  # noise of one measurement around the latent value
    drift_per_year: float
    day_to_day_sd: float  # red-noise amplitude of the latent value


BIOMARKERS: tuple[Biomarker, ...] = (
    Biomarker("hba1c", "%", "lab", 0.08, 0.03, 0.06),
    Biomarker("fasting_glucose", "mg/dL", "lab", 5.0, 0.8, 3.0),
    Biomarker("ldl", "mg/dL", "lab", 7.0, 1.0, 6.0),
    Biomarker("hdl", "mg/dL", "lab", 3.0, -0.2, 2.0),
    Biomarker("triglycerides", "mg/dL", "lab", 15.0, 1.0, 12.0),
    Biomarker("crp", "mg/L", "lab", 0.4, 0.02, 0.5),
    Biomarker("egfr", "mL/min/1.73m2", "lab", 4.0, -1.0, 2.0),
    Biomarker("systolic_bp", "mmHg", "blood_pressure", 6.0, 0.6, 3.0),
    Biomarker("diastolic_bp", "mmHg", "blood_pressure", 4.0, 0.2, 2.0),
    Biomarker("weight", "kg", "body_composition", 0.5, 0.3, 0.6),
    Biomarker("body_fat", "%", "body_composition", 1.0, 0.15, 0.3),
    Biomarker("cgm_mean_glucose", "mg/dL", "cgm", 4.0, 0.8, 4.0),
    Biomarker("cgm_time_in_range", "%", "cgm", 3.0, -0.3, 3.0),
    Biomarker("resting_heart_rate", "bpm", "wearable_daily", 1.5, 0.1, 1.0),
    Biomarker("daily_steps", "steps", "wearable_daily", 1500.0, -50.0, 800.0),
    Biomarker("sleep_minutes", "min", "wearable_daily", 40.0, -1.0, 15.0),
)
BIOMARKER_BY_NAME = {biomarker.name: biomarker for biomarker in BIOMARKERS}


def baseline_biomarkers(traits: Traits) -> dict[str, np.ndarray]:
    """Each participant's latent level of every biomarker at the start of the timeline."""
    body_fat = np.clip(1.2 * traits.bmi + 0.23 * traits.age_years - 10.8 * (~traits.female) - 5.4, 5, 60)
    cgm_mean = 28.7 * traits.hba1c_pct - 46.7
    return {
        "hba1c": traits.hba1c_pct,
        "fasting_glucose": traits.fasting_glucose_mg_dl,
        "ldl": traits.ldl_mg_dl,
        "hdl": traits.hdl_mg_dl,
        "triglycerides": traits.triglycerides_mg_dl,
        "crp": traits.crp_mg_l,
        "egfr": traits.egfr_ml_min,
        "systolic_bp": traits.systolic_bp_mmhg,
        "diastolic_bp": traits.diastolic_bp_mmhg,
        "weight": traits.weight_kg,
        "body_fat": body_fat,
        "cgm_mean_glucose": cgm_mean,
        "cgm_time_in_range": np.clip(100.0 - 0.9 * np.maximum(cgm_mean - 100.0, 0.0), 5, 100),
        "resting_heart_rate": traits.resting_heart_rate_bpm,
        "daily_steps": np.exp(np.log(7000.0) + 0.35 * traits.activity_propensity),
        "sleep_minutes": 60.0 * (traits.sleep_need_h - 0.4 + 0.3 * np.minimum(traits.sleep_quality, 0.0)),
    }


@dataclass(frozen=True)
class Intervention:
    name: str
    description: str
    onset_days: float  # time constant of the approach to the full effect
    kind: str  # lifestyle or medication


INTERVENTIONS: tuple[Intervention, ...] = (
    Intervention("diet_change", "Mediterranean-style diet with a 500 kcal/day deficit", 40.0, "lifestyle"),
    Intervention("exercise_programme", "150 min/week of moderate aerobic exercise", 45.0, "lifestyle"),
    Intervention("sleep_extension", "a 45-minute earlier, regular bedtime", 14.0, "lifestyle"),
    Intervention("statin", "atorvastatin 20 mg daily", 21.0, "medication"),
    Intervention("antihypertensive", "an ACE inhibitor at a standard dose", 14.0, "medication"),
)
INTERVENTION_BY_NAME = {intervention.name: intervention for intervention in INTERVENTIONS}


def steady_state_effects(traits: Traits, intervention: str, response: np.ndarray) -> dict[str, np.ndarray]:
    """The full (steady-state) change of each biomarker a participant would see, by cause.

    ``response`` is the participant's personal responsiveness (adherence x biology), ~1 on average.
    Effects depend on the baseline, as in real trials: the higher the LDL, the larger a statin's
    absolute reduction; the less fit, the larger the gain from exercise.
    """
    base = baseline_biomarkers(traits)
    zero = np.zeros(len(traits))
    high_glucose = np.clip((base["hba1c"] - 5.4) / 1.0, 0.0, 3.0)
    if intervention == "statin":
        effects = {
            "ldl": -0.42 * base["ldl"],
            "crp": -0.15 * base["crp"],
            "triglycerides": -0.1 * base["triglycerides"],
            "hdl": 0.03 * base["hdl"],
        }
    elif intervention == "antihypertensive":
        excess = np.maximum(base["systolic_bp"] - 120.0, 0.0)
        effects = {"systolic_bp": -(5.0 + 0.3 * excess), "diastolic_bp": -(3.0 + 0.15 * excess), "egfr": -1.0 + zero}
    elif intervention == "exercise_programme":
        unfit = np.clip(1.0 - 0.5 * traits.fitness, 0.3, 2.5)
        effects = {
            "systolic_bp": -4.0 * unfit,
            "diastolic_bp": -2.5 * unfit,
            "weight": -1.5 * unfit,
            "body_fat": -1.2 * unfit,
            "hba1c": -0.12 * unfit * (0.5 + high_glucose),
            "fasting_glucose": -3.0 * unfit * (0.5 + high_glucose),
            "hdl": 2.5 + zero,
            "triglycerides": -0.1 * base["triglycerides"],
            "resting_heart_rate": -3.0 * unfit,
            "daily_steps": 2500.0 + zero,
            "cgm_mean_glucose": -4.0 * unfit * (0.5 + high_glucose),
            "cgm_time_in_range": 3.0 * unfit * high_glucose,
        }
    elif intervention == "diet_change":
        heavy = np.clip(base["weight"] / 80.0, 0.6, 2.0)
        effects = {
            "weight": -3.5 * heavy,
            "body_fat": -2.0 * heavy,
            "ldl": -0.08 * base["ldl"],
            "systolic_bp": -3.0 * heavy,
            "diastolic_bp": -1.8 * heavy,
            "hba1c": -0.2 * (0.3 + high_glucose),
            "fasting_glucose": -5.0 * (0.3 + high_glucose),
            "triglycerides": -0.15 * base["triglycerides"],
            "cgm_mean_glucose": -6.0 * (0.3 + high_glucose),
            "cgm_time_in_range": 4.0 * high_glucose,
            "crp": -0.1 * base["crp"],
        }
    elif intervention == "sleep_extension":
        deficit = np.clip((8.0 * 60.0 - base["sleep_minutes"]) / 60.0, 0.2, 3.0)
        effects = {
            "sleep_minutes": 35.0 * deficit,
            "systolic_bp": -1.5 * deficit,
            "resting_heart_rate": -1.2 * deficit,
            "fasting_glucose": -1.5 * deficit,
            "hba1c": -0.03 * deficit,
        }
    else:
        raise ValueError(f"unknown intervention {intervention!r}; known: {sorted(INTERVENTION_BY_NAME)}")
    return {name: effect * response for name, effect in effects.items()}


def individual_effect(
    traits: Traits, intervention: str, response: np.ndarray, days_since_start: float
) -> dict[str, np.ndarray]:
    """The true causal change of each biomarker ``days_since_start`` days after starting."""
    ramp = 1.0 - np.exp(-max(days_since_start, 0.0) / INTERVENTION_BY_NAME[intervention].onset_days)
    return {name: effect * ramp for name, effect in steady_state_effects(traits, intervention, response).items()}


def sample_response(participants: int, rng: np.random.Generator) -> np.ndarray:
    """Personal responsiveness to an intervention: adherence times biological response."""
    return rng.beta(6.0, 2.0, participants) / 0.75 * np.exp(rng.normal(0.0, 0.25, participants))


# ---------------------------------------------------------------------------------------------
# One participant's timeline of sparse measurements, events, diagnoses and endpoints.

ENDPOINTS = (
    "incident_diabetes",
    "hypertension",
    "dyslipidaemia",
    "chronic_kidney_disease",
    "obesity",
    "cardiovascular_event",
    "stroke",
    "heart_failure",
    "atrial_fibrillation",
    "depression",
    "death",
)


# A diagnosis is made at a clinic visit where the (true, latent) value of one of its biomarkers meets the criterion:
# (biomarker, ">=" or "<", limit). Obesity (BMI >= 30) needs height as well and is checked beside them.
DIAGNOSTIC_CRITERIA: dict[str, tuple[tuple[str, str, float], ...]] = {
    "incident_diabetes": (("hba1c", ">=", 6.5),),
    "hypertension": (("systolic_bp", ">=", 140.0), ("diastolic_bp", ">=", 90.0)),
    "dyslipidaemia": (("ldl", ">=", 190.0),),
    "chronic_kidney_disease": (("egfr", "<", 60.0),),
}
OBESITY_BMI = 30.0  # kg/m²: obesity is diagnosed at a visit where the weight over the height squared reaches it
USUAL_CARE = {"hypertension": ("antihypertensive", 0.4), "dyslipidaemia": ("statin", 0.5)}  # started at diagnosis


HARD_ENDPOINT_YEARLY_RATES = {"cardiovascular_event": 0.008, "stroke": 0.003, "heart_failure": 0.003, "death": 0.004}


def hard_endpoint_daily_hazard(
    endpoint: str, traits: Traits, index: int, age_years: Any, latent: dict[str, Any]
) -> Any:
    """The daily hazard of a hard endpoint for participant ``index`` of ``traits``, at the given age(s) and latent
    (true, unmeasured) values: arrays over days, or numbers for one day. A pooled-cohort style linear predictor, so
    the published equations are near it; ``twin evaluate`` scores it on the values at the prediction day as the
    ceiling of the risk table's hard endpoints."""
    linear = (
        0.075 * (age_years - 55)
        + 0.018 * (latent["systolic_bp"] - 125)
        + 0.006 * (latent["ldl"] - 120)
        - 0.012 * (latent["hdl"] - 50)
        + 0.6 * traits.smoker[index]
        + 0.45 * (latent["hba1c"] >= 6.5)
        - 0.3 * traits.female[index]
    )
    atrial = 0.5 if endpoint == "heart_failure" and traits.atrial_fibrillation[index] else 0.0
    return HARD_ENDPOINT_YEARLY_RATES[endpoint] / 365.0 * np.exp(linear + atrial)


def meets(value: float, rule: str, limit: float) -> bool:
    return value >= limit if rule == ">=" else value < limit


@dataclass
class Timeline:
    """Everything sparse that happens to one participant, with days counted from day 0."""

    measurements: list[dict[str, Any]] = field(default_factory=list)  # {day, name, value, unit, modality}
    events: list[dict[str, Any]] = field(default_factory=list)  # diet, medication, intervention, diagnosis, endpoint
    latent: dict[str, np.ndarray] = field(default_factory=dict)  # biomarker -> (days,) true values


def _red_walk(rng: np.random.Generator, days: int, sd: float) -> np.ndarray:
    """Mean-reverting day-to-day variation (AR(1), 30-day memory) with stationary SD ``sd``."""
    from scipy.signal import lfilter

    phi = np.exp(-1.0 / 30.0)
    shocks = rng.normal(0.0, sd * np.sqrt(1 - phi**2), days)
    start = rng.normal(0.0, sd)
    walk: np.ndarray = lfilter([1.0], [1.0, -phi], shocks, zi=[phi * start])[0]
    return walk


def simulate_timeline(
    traits: Traits,
    index: int,
    days: int,
    rng: np.random.Generator,
    *,
    interventions: tuple[tuple[str, int], ...] = (),
    response: dict[str, float] | None = None,
) -> Timeline:
    """Simulate ``days`` days of sparse data for participant ``index`` of ``traits``.

    ``interventions`` are ``(name, start_day)`` pairs applied causally; ``response`` gives the
    participant's responsiveness per intervention (sampled when absent).
    """
    one = traits.subset([index])
    base = {name: float(value[0]) for name, value in baseline_biomarkers(one).items()}
    day = np.arange(days, dtype=float)
    latent = {
        biomarker.name: base[biomarker.name]
        + biomarker.drift_per_year * day / 365.0
        + _red_walk(rng, days, biomarker.day_to_day_sd)
        for biomarker in BIOMARKERS
    }
    timeline = Timeline(latent=latent)
    response = dict(response or {})

    def start(name: str, start_day: int, kind: str, detail: str) -> None:
        personal = np.array([response.setdefault(name, float(sample_response(1, rng)[0]))])
        ramp = np.where(day >= start_day, 1.0 - np.exp(-(day - start_day) / INTERVENTION_BY_NAME[name].onset_days), 0.0)
        for biomarker, steady in steady_state_effects(one, name, personal).items():
            latent[biomarker] = latent[biomarker] + steady[0] * ramp
        timeline.events.append({"day": int(start_day), "kind": kind, "name": name, "detail": detail})

    for name, start_day in interventions:
        start(name, start_day, "intervention", INTERVENTION_BY_NAME[name].description)

    def measure(name: str, on_day: int) -> None:
        biomarker = BIOMARKER_BY_NAME[name]
        value = latent[name][on_day] + rng.normal(0.0, biomarker.measurement_sd)
        timeline.measurements.append(
            {
                "day": int(on_day),
                "name": name,
                "value": round(float(value), 2),
                "unit": biomarker.unit,
                "modality": biomarker.modality,
            }
        )

    # Clinic visits about every three months: labs, office blood pressure, weight.
    visit_days = list(range(int(rng.integers(0, 45)), days, 90))
    for visit in visit_days:
        for name in (
            "hba1c",
            "fasting_glucose",
            "ldl",
            "hdl",
            "triglycerides",
            "crp",
            "egfr",
            "systolic_bp",
            "diastolic_bp",
            "weight",
            "body_fat",
        ):
            measure(name, visit)
    # Home blood pressure for a third of participants, weekly.
    if rng.random() < 0.35:
        for on_day in range(int(rng.integers(0, 7)), days, 7):
            measure("systolic_bp", on_day)
            measure("diastolic_bp", on_day)
    # CGM: two-week sensor wears for a quarter of participants, a daily summary each day.
    if rng.random() < 0.25:
        for wear_start in range(int(rng.integers(0, 60)), days - 14, 120):
            for on_day in range(wear_start, wear_start + 14):
                measure("cgm_mean_glucose", on_day)
                measure("cgm_time_in_range", on_day)
    # Diet logs: occasional days with a logged pattern.
    for diet_day in np.flatnonzero(rng.random(days) < 0.04):
        pattern = rng.choice(["high_sugar", "high_fat", "balanced", "high_fibre", "late_meal"])
        timeline.events.append({"day": int(diet_day), "kind": "diet", "name": str(pattern), "detail": ""})

    # Diagnoses follow measurements; usual care starts medication after some of them.
    diagnosed: set[str] = set()

    def diagnose(name: str, on_day: int) -> None:
        if name not in diagnosed:
            diagnosed.add(name)
            timeline.events.append({"day": int(on_day), "kind": "diagnosis", "name": name, "detail": ""})

    for visit in visit_days:
        for name, criteria in DIAGNOSTIC_CRITERIA.items():
            if any(meets(float(latent[biomarker][visit]), rule, limit) for biomarker, rule, limit in criteria):
                diagnose(name, visit)
                if name in USUAL_CARE:
                    medication, probability = USUAL_CARE[name]
                    if medication not in response and rng.random() < probability:
                        start(medication, visit, "medication", "started in usual care")
        if latent["weight"][visit] / one.height_m[0] ** 2 >= OBESITY_BMI:
            diagnose("obesity", visit)
    if one.atrial_fibrillation[0] and rng.random() < days / 730:
        diagnose("atrial_fibrillation", int(rng.integers(0, days)))
    if one.depression[0] > 1.2 and rng.random() < days / 730:
        diagnose("depression", int(rng.integers(0, days)))

    # Hard endpoints: daily hazards from a pooled-cohort style linear predictor, time-varying with
    # the latent blood pressure and lipids, so interventions change risk too.
    for endpoint in HARD_ENDPOINT_YEARLY_RATES:
        daily_hazard = hard_endpoint_daily_hazard(endpoint, one, 0, one.age_years[0] + day / 365.0, latent)
        hits = np.flatnonzero(rng.random(days) < daily_hazard)
        if hits.size:
            timeline.events.append({"day": int(hits[0]), "kind": "endpoint", "name": endpoint, "detail": ""})
    deaths = [event["day"] for event in timeline.events if event["name"] == "death"]
    if deaths:  # nothing is measured or happens after death
        timeline.measurements = [m for m in timeline.measurements if m["day"] <= deaths[0]]
        timeline.events = [e for e in timeline.events if e["day"] <= deaths[0]]
    timeline.measurements.sort(key=lambda m: (m["day"], m["name"]))
    timeline.events.sort(key=lambda e: (e["day"], e["kind"], e["name"]))
    return timeline


# ---------------------------------------------------------------------------------------------
# Randomized trials with known truth.


@dataclass
class TrialResult:
    intervention: str
    biomarker: str
    days: int
    treated: np.ndarray  # bool per participant
    observed_change: np.ndarray  # follow-up minus baseline measurement, per participant
    true_individual_effect: np.ndarray  # the causal effect on each participant (treated or not)
    estimated_effect: float  # difference in mean observed change, treated minus control
    ci95: tuple[float, float]
    true_average_effect: float


def simulate_trial(
    traits: Traits, intervention: str, biomarker: str, rng: np.random.Generator, *, days: int = 90
) -> TrialResult:
    """A two-arm randomized trial in the population ``traits``: half start ``intervention`` on day 0.

    Outcomes are measured at baseline and at ``days`` with measurement noise and natural variation;
    the estimate is a difference in mean change with a Welch 95 % CI.
    """
    from scipy import stats

    n = len(traits)
    treated = rng.permutation(np.arange(n) < n // 2)
    response = sample_response(n, rng)
    effect = individual_effect(traits, intervention, response, days).get(biomarker, np.zeros(n))
    spec = BIOMARKER_BY_NAME[biomarker]
    natural = rng.normal(
        spec.drift_per_year * days / 365.0, spec.day_to_day_sd * np.sqrt(2 * (1 - np.exp(-days / 30.0))), n
    )
    noise = rng.normal(0.0, spec.measurement_sd, (2, n))
    observed = natural + treated * effect + noise[1] - noise[0]
    treated_change, control_change = observed[treated], observed[~treated]
    estimate = treated_change.mean() - control_change.mean()
    test = stats.ttest_ind(treated_change, control_change, equal_var=False)
    interval = test.confidence_interval(0.95)
    return TrialResult(
        intervention,
        biomarker,
        days,
        treated,
        observed,
        effect,
        float(estimate),
        (float(interval.low), float(interval.high)),
        float(effect.mean()),
    )
