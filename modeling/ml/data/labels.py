"""Downstream tasks: labels generated causally from the latent traits, with measurement noise.

The signals are generated from the same traits, so a model must read the signals to predict
the labels; no label is a copy of a signal. Each task says its family (as in the published
wearable benchmarks), its type and, for classification, its classes.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from modeling.ml.data.traits import Traits


@dataclass(frozen=True)
class Task:
    name: str
    family: str  # cardiovascular, metabolic, sleep, mental_health, lifestyle, demographics
    kind: str  # binary, multiclass, regression
    description: str
    classes: tuple[str, ...] = ()
    unit: str = ""


TASKS: tuple[Task, ...] = (
    # Cardiovascular
    Task("hypertension", "cardiovascular", "binary", "office blood pressure >= 130/80 mmHg", ("no", "yes")),
    Task("systolic_bp", "cardiovascular", "regression", "office systolic blood pressure", unit="mmHg"),
    Task("diastolic_bp", "cardiovascular", "regression", "office diastolic blood pressure", unit="mmHg"),
    Task("vo2max", "cardiovascular", "regression", "cardiorespiratory fitness from a treadmill test", unit="ml/kg/min"),
    Task("atrial_fibrillation", "cardiovascular", "binary", "atrial fibrillation on a 12-lead ECG", ("no", "yes")),
    Task("high_ldl", "cardiovascular", "binary", "LDL cholesterol >= 160 mg/dL", ("no", "yes")),
    Task(
        "cardiovascular_risk",
        "cardiovascular",
        "multiclass",
        "10-year risk band from a pooled-cohort style score",
        ("low", "borderline", "high"),
    ),
    # Metabolic
    Task("diabetes", "metabolic", "binary", "HbA1c >= 6.5 %", ("no", "yes")),
    Task(
        "glycaemic_status",
        "metabolic",
        "multiclass",
        "normal (< 5.7 %), prediabetes, diabetes (>= 6.5 %)",
        ("normal", "prediabetes", "diabetes"),
    ),
    Task("hba1c", "metabolic", "regression", "glycated haemoglobin", unit="%"),
    Task("fasting_glucose", "metabolic", "regression", "fasting plasma glucose", unit="mg/dL"),
    Task("bmi", "metabolic", "regression", "body-mass index", unit="kg/m2"),
    Task("obesity", "metabolic", "binary", "BMI >= 30", ("no", "yes")),
    Task("insulin_resistance", "metabolic", "binary", "HOMA-IR above 2.9", ("no", "yes")),
    Task("high_triglycerides", "metabolic", "binary", "triglycerides >= 150 mg/dL", ("no", "yes")),
    # Sleep
    Task("insomnia", "sleep", "binary", "insomnia severity index >= 15", ("no", "yes")),
    Task("sleep_apnea", "sleep", "binary", "apnea-hypopnea index >= 15 per hour on a sleep study", ("no", "yes")),
    Task(
        "sleep_quality_psqi",
        "sleep",
        "regression",
        "Pittsburgh sleep quality index (0-21, higher is worse)",
        unit="points",
    ),
    Task(
        "chronotype",
        "sleep",
        "multiclass",
        "morningness-eveningness questionnaire",
        ("morning", "intermediate", "evening"),
    ),
    Task("short_sleeper", "sleep", "binary", "self-reported habitual sleep under 6 hours", ("no", "yes")),
    # Mental health
    Task("anxiety_gad7", "mental_health", "regression", "GAD-7 score (0-21)", unit="points"),
    Task("depression_phq9", "mental_health", "regression", "PHQ-9 score (0-27)", unit="points"),
    Task("anxiety", "mental_health", "binary", "GAD-7 >= 10", ("no", "yes")),
    Task("depression", "mental_health", "binary", "PHQ-9 >= 10", ("no", "yes")),
    Task("perceived_stress", "mental_health", "regression", "perceived stress scale (0-40)", unit="points"),
    # Lifestyle
    Task("smoker", "lifestyle", "binary", "current smoker", ("no", "yes")),
    Task(
        "alcohol_use",
        "lifestyle",
        "multiclass",
        "drinks per week: none, moderate (1-14), heavy (> 14)",
        ("none", "moderate", "heavy"),
    ),
    Task(
        "meets_activity_guidelines",
        "lifestyle",
        "binary",
        "self-reported >= 150 min of moderate activity a week",
        ("no", "yes"),
    ),
    Task("fitness_level", "lifestyle", "multiclass", "VO2max tertile for age and sex", ("low", "average", "high")),
    # Demographics
    Task("age", "demographics", "regression", "age", unit="years"),
    Task("age_group", "demographics", "multiclass", "age band", ("18-39", "40-59", "60+")),
    Task("sex", "demographics", "binary", "sex recorded at enrolment", ("male", "female")),
)

TASK_BY_NAME: dict[str, Task] = {task.name: task for task in TASKS}


def compute_labels(traits: Traits, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Labels of every task for every participant: ints for classes, floats for regression."""
    n = len(traits)

    def noise(scale: float) -> npt.NDArray[np.float64]:  # a local shorthand
        return rng.normal(0.0, scale, n)

    systolic = traits.systolic_bp_mmhg + noise(6.0)  # one office visit, not the true mean
    diastolic = traits.diastolic_bp_mmhg + noise(4.0)
    hba1c = traits.hba1c_pct + noise(0.12)
    ldl = traits.ldl_mg_dl + noise(8.0)
    age = traits.age_years
    risk_score = (
        0.055 * (age - 50)
        + 0.018 * (systolic - 120)
        + 0.006 * (ldl - 120)
        - 0.015 * (traits.hdl_mg_dl - 50)
        + 0.7 * traits.smoker
        + 0.9 * (hba1c >= 6.5)
        - 0.4 * traits.female
        + noise(0.25)
    )
    homa_ir = np.exp(0.55 + 0.6 * traits.insulin_resistance + noise(0.3))
    insomnia_index = np.clip(8.0 - 4.5 * traits.sleep_quality + 1.5 * traits.anxiety + noise(2.5), 0, 28)
    psqi = np.clip(5.5 - 2.5 * traits.sleep_quality + 0.6 * traits.depression + noise(1.5), 0, 21)
    gad7 = np.clip(5.0 + 3.5 * traits.anxiety + noise(2.0), 0, 21)
    phq9 = np.clip(5.0 + 4.0 * traits.depression + noise(2.2), 0, 27)
    perceived_stress = np.clip(16.0 + 5.5 * traits.stress + noise(3.0), 0, 40)
    habitual_sleep_h = traits.sleep_need_h - 0.5 * np.maximum(-traits.sleep_quality, 0) - 0.3 + noise(0.5)
    weekly_active_min = np.exp(np.log(120.0) + 0.6 * traits.activity_propensity + noise(0.4))
    fitness_residual = traits.fitness + noise(0.3)  # relative to age and sex peers

    def band(values: npt.NDArray[np.float64], edges: tuple[float, ...]) -> npt.NDArray[np.int64]:
        banded: npt.NDArray[np.int64] = np.digitize(values, edges).astype(np.int64)
        return banded

    return {
        "hypertension": ((systolic >= 130) | (diastolic >= 80)).astype(np.int64),
        "systolic_bp": systolic,
        "diastolic_bp": diastolic,
        "vo2max": traits.vo2max + noise(2.0),
        "atrial_fibrillation": traits.atrial_fibrillation.astype(np.int64),
        "high_ldl": (ldl >= 160).astype(np.int64),
        "cardiovascular_risk": band(risk_score, (0.0, 1.0)),
        "diabetes": (hba1c >= 6.5).astype(np.int64),
        "glycaemic_status": band(hba1c, (5.7, 6.5)),
        "hba1c": hba1c,
        "fasting_glucose": traits.fasting_glucose_mg_dl + noise(5.0),
        "bmi": traits.bmi + noise(0.4),
        "obesity": (traits.bmi >= 30).astype(np.int64),
        "insulin_resistance": (homa_ir > 2.9).astype(np.int64),
        "high_triglycerides": (traits.triglycerides_mg_dl + noise(15.0) >= 150).astype(np.int64),
        "insomnia": (insomnia_index >= 15).astype(np.int64),
        "sleep_apnea": (traits.apnea_hypopnea_index * np.exp(noise(0.15)) >= 15).astype(np.int64),
        "sleep_quality_psqi": psqi,
        "chronotype": band(traits.chronotype_midsleep_h + noise(0.4), (3.0, 4.5)),
        "short_sleeper": (habitual_sleep_h < 6.0).astype(np.int64),
        "anxiety_gad7": gad7,
        "depression_phq9": phq9,
        "anxiety": (gad7 >= 10).astype(np.int64),
        "depression": (phq9 >= 10).astype(np.int64),
        "perceived_stress": perceived_stress,
        "smoker": traits.smoker.astype(np.int64),
        "alcohol_use": band(traits.alcohol_drinks_per_week, (0.5, 14.5)),
        "meets_activity_guidelines": (weekly_active_min >= 150).astype(np.int64),
        "fitness_level": band(fitness_residual, (-0.45, 0.45)),
        "age": age.copy(),
        "age_group": band(age, (40.0, 60.0)),
        "sex": traits.female.astype(np.int64),
    }
