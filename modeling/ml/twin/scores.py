"""Published clinical risk scores, computed from the same history records the twin reads.

Each score takes the record up to the prediction day (latest measurements, diagnoses, treatments,
age, sex, smoking) plus height, which the scores need for BMI and the twin does not get. Scores
rank participants; only their order matters for AUROC, so logistic or survival forms are kept
as their linear predictors where the baseline survival would not change the ranking.
"""

import math
from typing import Any

import numpy as np

from modeling.ml.twin.tokens import ParticipantRecord


def latest(record: ParticipantRecord, name: str, *, count: int = 1) -> float | None:
    """Mean of the latest ``count`` measurements of ``name`` (None if never measured)."""
    values = [m["value"] for m in sorted(record.measurements, key=lambda m: m["day"]) if m["name"] == name]
    return float(np.mean(values[-count:])) if values else None


def has_event(record: ParticipantRecord, *names: str) -> bool:
    return any(event["name"] in names for event in record.events)


def _inputs(record: ParticipantRecord, height_m: float) -> dict[str, Any]:
    fill = {
        "systolic_bp": 125.0,
        "diastolic_bp": 78.0,
        "ldl": 120.0,
        "hdl": 52.0,
        "triglycerides": 130.0,
        "hba1c": 5.5,
        "fasting_glucose": 100.0,
        "weight": 78.0,
        "egfr": 90.0,
    }  # population-typical values when never measured
    measured = {name: latest(record, name, count=3 if name in ("systolic_bp", "diastolic_bp") else 1) for name in fill}
    values = {name: fill[name] if value is None else value for name, value in measured.items()}
    age = (record.age_years or 50.0) + record.last_day / 365.25
    return {
        **values,
        "age": age,
        "female": record.sex == "female",
        "smoker": bool(record.smoker),
        "bmi": values["weight"] / height_m**2,
        "height_cm": 100 * height_m,
        "total_cholesterol": values["ldl"] + values["hdl"] + values["triglycerides"] / 5.0,  # Friedewald, rearranged
        "treated_bp": has_event(record, "antihypertensive"),
        "diabetes": has_event(record, "incident_diabetes") or values["hba1c"] >= 6.5,
        "steps": latest(record, "daily_steps", count=4),
        # FINDRISC's "found to have high blood glucose", from the latest measured values only, never the fill.
        "high_glucose": _at_least(latest(record, "hba1c"), 5.7) or _at_least(latest(record, "fasting_glucose"), 100.0),
    }


def _at_least(value: float | None, threshold: float) -> bool:
    return value is not None and value >= threshold


def pooled_cohort_equations(x: dict[str, Any]) -> float:
    """ACC/AHA 2013 pooled cohort equations (white women / white men), 10-year ASCVD risk."""
    ln_age, ln_tc, ln_hdl, ln_sbp = (
        math.log(x["age"]),
        math.log(x["total_cholesterol"]),
        math.log(x["hdl"]),
        math.log(x["systolic_bp"]),
    )
    smoker, diabetes = float(x["smoker"]), float(x["diabetes"])
    if x["female"]:
        total = (
            -29.799 * ln_age
            + 4.884 * ln_age**2
            + 13.540 * ln_tc
            - 3.114 * ln_age * ln_tc
            - 13.578 * ln_hdl
            + 3.149 * ln_age * ln_hdl
            + (2.019 if x["treated_bp"] else 1.957) * ln_sbp
            + 7.574 * smoker
            - 1.665 * ln_age * smoker
            + 0.661 * diabetes
        )
        return float(1 - 0.9665 ** math.exp(total + 29.18))
    total = (
        12.344 * ln_age
        + 11.853 * ln_tc
        - 2.664 * ln_age * ln_tc
        - 7.990 * ln_hdl
        + 1.769 * ln_age * ln_hdl
        + (1.797 if x["treated_bp"] else 1.764) * ln_sbp
        + 7.837 * smoker
        - 1.795 * ln_age * smoker
        + 0.658 * diabetes
    )
    return float(1 - 0.9144 ** math.exp(total - 61.18))


def framingham_general_cvd(x: dict[str, Any]) -> float:
    """D'Agostino et al. 2008 general cardiovascular risk (laboratory version), 10-year risk."""
    ln_age, ln_tc, ln_hdl, ln_sbp = (
        math.log(x["age"]),
        math.log(x["total_cholesterol"]),
        math.log(x["hdl"]),
        math.log(x["systolic_bp"]),
    )
    if x["female"]:
        total = (
            2.32888 * ln_age
            + 1.20904 * ln_tc
            - 0.70833 * ln_hdl
            + (2.82263 if x["treated_bp"] else 2.76157) * ln_sbp
            + 0.52873 * x["smoker"]
            + 0.69154 * x["diabetes"]
        )
        return float(1 - 0.95012 ** math.exp(total - 26.1931))
    total = (
        3.06117 * ln_age
        + 1.12370 * ln_tc
        - 0.93263 * ln_hdl
        + (1.99881 if x["treated_bp"] else 1.93303) * ln_sbp
        + 0.65451 * x["smoker"]
        + 0.57367 * x["diabetes"]
    )
    return float(1 - 0.88936 ** math.exp(total - 23.9802))


def findrisc(x: dict[str, Any]) -> float:
    """FINDRISC points from what the record holds: age, BMI, physical activity (daily steps as the
    proxy for 30 min/day), antihypertensive treatment and high glucose (the latest measured HbA1c at
    least 5.7 % or fasting glucose at least 100 mg/dL; never measured scores 0, as a person never
    told of high glucose would answer). FINDRISC asks whether glucose was *ever* found high; the
    latest values rank incident diabetes a little better on the report's risk cohort (AUROC 0.81
    against 0.79 for "ever", whose noisy old readings cross the threshold), and the baseline should be
    the strongest fair reading.
    Waist, diet and family history are not recorded and score 0."""
    age, bmi = x["age"], x["bmi"]
    points = 0 if age < 45 else 2 if age < 55 else 3 if age < 65 else 4
    points += 0 if bmi < 25 else 1 if bmi <= 30 else 3
    points += 2 if x["steps"] is not None and x["steps"] < 7500 else 0
    points += 2 if x["treated_bp"] else 0
    points += 5 if x["high_glucose"] else 0
    return float(points)


def framingham_hypertension(x: dict[str, Any]) -> float:
    """Parikh et al. 2008 Framingham hypertension risk (Weibull linear predictor; parental history unknown)."""
    linear = (
        22.949536
        - 0.156412 * x["age"]
        - 0.202933 * x["female"]
        - 0.033881 * x["bmi"]
        - 0.05933 * x["systolic_bp"]
        - 0.128468 * x["diastolic_bp"]
        - 0.190731 * x["smoker"]
        + 0.001624 * x["age"] * x["diastolic_bp"]
    )
    return 1 - math.exp(-math.exp((math.log(4.0) - linear) / 0.876925))


def charge_af(x: dict[str, Any]) -> float:
    """CHARGE-AF simple model (Alonso et al. 2013) linear predictor; race and myocardial infarction
    history are not recorded (a cardiovascular event stands in for the latter)."""
    return float(
        0.508 * x["age"] / 5
        + 0.248 * x["height_cm"] / 10
        + 0.115 * x["weight"] / 15
        + 0.197 * x["systolic_bp"] / 20
        - 0.101 * x["diastolic_bp"] / 10
        + 0.359 * x["smoker"]
        + 0.349 * x["treated_bp"]
        + 0.237 * x["diabetes"]
    )


# endpoint: (score name, function of the inputs); higher = riskier.
ENDPOINT_SCORES = {
    "incident_diabetes": ("FINDRISC (points)", findrisc),
    "hypertension": ("Framingham hypertension risk (Parikh 2008)", framingham_hypertension),
    "dyslipidaemia": ("latest LDL (NCEP ATP III category)", lambda x: x["ldl"]),
    "chronic_kidney_disease": ("latest eGFR, lower = riskier (KDIGO G stage)", lambda x: -x["egfr"]),
    "obesity": ("BMI (WHO category)", lambda x: x["bmi"]),
    "cardiovascular_event": ("ASCVD pooled cohort equations", pooled_cohort_equations),
    "stroke": ("ASCVD pooled cohort equations", pooled_cohort_equations),
    "heart_failure": ("Framingham general CVD (D'Agostino 2008)", framingham_general_cvd),
    "atrial_fibrillation": ("CHARGE-AF (simple model)", charge_af),
    "death": ("Framingham general CVD (D'Agostino 2008)", framingham_general_cvd),
}


def clinical_scores(record: ParticipantRecord, *, height_m: float) -> dict[str, float]:
    """Every endpoint's clinical score for one participant at the record's last day."""
    inputs = _inputs(record, height_m)
    return {endpoint: float(function(inputs)) for endpoint, (_, function) in ENDPOINT_SCORES.items()}
