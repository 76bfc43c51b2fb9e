"""Per-participant latent traits: the causes behind every signal, label and biomarker.

Traits are sampled causally (age and sex first, then lifestyle, then physiology), so that the
simulated world has the correlations a model must learn: fitness lowers resting heart rate and
blood pressure, BMI raises glycaemia and apnea, stress lowers heart-rate variability, and so on.
All arrays have shape ``(participants,)``.
"""

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt


def _sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    result: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-x))
    return result


@dataclass
class Traits:
    age_years: np.ndarray
    female: np.ndarray  # bool
    height_m: np.ndarray
    bmi: np.ndarray
    activity_propensity: np.ndarray  # z-score: how much the person moves
    fitness: np.ndarray  # z-score: cardiorespiratory fitness
    vo2max: np.ndarray  # ml/kg/min
    resting_heart_rate_bpm: np.ndarray
    rmssd_baseline_ms: np.ndarray
    systolic_bp_mmhg: np.ndarray
    diastolic_bp_mmhg: np.ndarray
    insulin_resistance: np.ndarray  # z-score
    fasting_glucose_mg_dl: np.ndarray
    hba1c_pct: np.ndarray
    ldl_mg_dl: np.ndarray
    hdl_mg_dl: np.ndarray
    triglycerides_mg_dl: np.ndarray
    crp_mg_l: np.ndarray
    egfr_ml_min: np.ndarray
    sleep_quality: np.ndarray  # z-score; low means fragmented, short sleep
    sleep_need_h: np.ndarray
    chronotype_midsleep_h: np.ndarray  # clock hour of mid-sleep on free days
    stress: np.ndarray  # z-score
    anxiety: np.ndarray  # z-score
    depression: np.ndarray  # z-score
    smoker: np.ndarray  # bool
    alcohol_drinks_per_week: np.ndarray
    apnea_hypopnea_index: np.ndarray  # events per hour of sleep
    atrial_fibrillation: np.ndarray  # bool
    wear_compliance: np.ndarray  # 0..1: how reliably the device is worn
    device_has_eda: np.ndarray  # bool: some device models lack the EDA sensor
    device_has_spo2: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.age_years)

    @property
    def weight_kg(self) -> npt.NDArray[np.float64]:
        weight: npt.NDArray[np.float64] = self.bmi * self.height_m**2
        return weight

    @property
    def max_heart_rate_bpm(self) -> np.ndarray:
        return 208.0 - 0.7 * self.age_years

    def row(self, index: int) -> dict[str, float]:
        """One participant's traits as plain Python numbers."""
        return {field.name: getattr(self, field.name)[index].item() for field in fields(self)}

    @classmethod
    def concatenate(cls, parts: list["Traits"]) -> "Traits":
        return cls(
            **{field.name: np.concatenate([getattr(part, field.name) for part in parts]) for field in fields(cls)}
        )

    def subset(self, indices: np.ndarray | list[int]) -> "Traits":
        return Traits(**{field.name: getattr(self, field.name)[indices] for field in fields(self)})


def sample_traits(participants: int, rng: np.random.Generator) -> Traits:
    """Sample ``participants`` people from the synthetic population."""
    n = participants

    def normal(scale: float = 1.0) -> npt.NDArray[np.float64]:  # a local shorthand
        return rng.normal(0.0, scale, n)

    age = np.clip(rng.triangular(18, 45, 85, n), 18, 85)
    female = rng.random(n) < 0.5
    height = np.where(female, 1.63, 1.77) + normal(0.07)
    age_c = (age - 50.0) / 15.0

    smoker = rng.random(n) < _sigmoid(-1.6 - 0.3 * age_c)
    alcohol = np.clip(np.exp(rng.normal(np.log(4.0), 0.9, n)) * np.where(rng.random(n) < 0.25, 0.0, 1.0), 0, 60)
    alcohol_z = (np.log1p(alcohol) - 1.4) / 0.9
    stress = normal()
    activity = normal() - 0.25 * age_c - 0.2 * smoker
    fitness = 0.65 * activity - 0.25 * age_c - 0.3 * smoker + normal(0.7)
    bmi = np.clip(26.5 + 1.0 * age_c - 1.6 * activity + 0.5 * stress + normal(3.8), 16.5, 52.0)
    bmi_c = (bmi - 26.0) / 4.5

    vo2max = np.clip(np.where(female, 34.0, 41.0) - 4.5 * age_c + 5.0 * fitness - 2.5 * bmi_c + normal(3.0), 12, 75)
    resting_hr = np.clip(
        66.0 - 4.5 * fitness + 1.5 * bmi_c + 3.0 * smoker + 2.0 * stress + 2.0 * female + normal(4.0), 38, 110
    )
    rmssd = np.exp(
        np.log(38.0) - 0.28 * age_c + 0.18 * fitness - 0.12 * stress - 0.08 * alcohol_z - 0.1 * smoker + normal(0.25)
    )

    bp_genetic = normal(8.0)
    systolic = np.clip(
        121.0
        + 7.5 * age_c
        + 4.5 * bmi_c
        - 2.0 * fitness
        + 3.0 * smoker
        + 2.0 * alcohol_z
        + 2.5 * stress
        + bp_genetic
        - 5.0 * female,
        88,
        210,
    )
    diastolic = np.clip(77.0 + 1.5 * age_c + 3.0 * bmi_c + 0.35 * bp_genetic + 1.0 * stress + normal(4.0), 50, 130)

    insulin_resistance = 0.6 * bmi_c + 0.25 * age_c - 0.35 * fitness + normal(0.75)
    hba1c = np.clip(
        5.35 + 0.42 * insulin_resistance + 0.35 * np.maximum(insulin_resistance - 1.0, 0) ** 2 + normal(0.18), 4.2, 13.0
    )
    fasting_glucose = np.clip(28.7 * hba1c - 46.7 + normal(7.0), 60, 350)  # ADAG relation plus noise
    ldl = np.clip(118.0 + 9.0 * age_c + 7.0 * bmi_c + normal(28.0), 40, 260)
    hdl = np.clip(
        np.where(female, 60.0, 49.0) - 5.0 * bmi_c + 3.0 * fitness - 4.0 * smoker + 2.0 * alcohol_z + normal(9.0),
        20,
        110,
    )
    triglycerides = np.clip(
        np.exp(np.log(115.0) + 0.25 * insulin_resistance + 0.08 * alcohol_z + normal(0.35)), 30, 900
    )
    crp = np.clip(np.exp(np.log(1.4) + 0.35 * bmi_c + 0.35 * smoker - 0.15 * fitness + normal(0.6)), 0.1, 40)
    egfr = np.clip(
        100.0 - 12.0 * age_c - 3.0 * (systolic - 120) / 15 - 4.0 * np.maximum(insulin_resistance, 0) + normal(10.0),
        8,
        140,
    )

    anxiety = 0.6 * stress + normal(0.8)
    sleep_quality = -0.35 * stress - 0.25 * anxiety - 0.15 * alcohol_z + 0.15 * activity + normal(0.85)
    depression = 0.45 * stress + 0.3 * anxiety - 0.25 * sleep_quality - 0.2 * activity + normal(0.75)
    sleep_need = np.clip(7.9 - 0.15 * age_c + normal(0.45), 5.5, 9.5)
    chronotype = np.clip(3.6 - 0.35 * age_c + normal(0.9), 1.0, 7.0)
    ahi = np.clip(
        np.exp(np.log(4.0) + 0.55 * bmi_c + 0.3 * age_c + 0.35 * (~female) + 0.1 * alcohol_z + normal(0.7)), 0.2, 90
    )
    afib = rng.random(n) < _sigmoid(-5.2 + 1.1 * age_c + 0.3 * bmi_c + 0.2 * alcohol_z)

    return Traits(
        age_years=age,
        female=female,
        height_m=height,
        bmi=bmi,
        activity_propensity=activity,
        fitness=fitness,
        vo2max=vo2max,
        resting_heart_rate_bpm=resting_hr,
        rmssd_baseline_ms=rmssd,
        systolic_bp_mmhg=systolic,
        diastolic_bp_mmhg=diastolic,
        insulin_resistance=insulin_resistance,
        fasting_glucose_mg_dl=fasting_glucose,
        hba1c_pct=hba1c,
        ldl_mg_dl=ldl,
        hdl_mg_dl=hdl,
        triglycerides_mg_dl=triglycerides,
        crp_mg_l=crp,
        egfr_ml_min=egfr,
        sleep_quality=sleep_quality,
        sleep_need_h=sleep_need,
        chronotype_midsleep_h=chronotype,
        stress=stress,
        anxiety=anxiety,
        depression=depression,
        smoker=smoker,
        alcohol_drinks_per_week=alcohol,
        apnea_hypopnea_index=ahi,
        atrial_fibrillation=afib,
        wear_compliance=rng.beta(9.0, 1.6, n),
        device_has_eda=rng.random(n) < 0.7,
        device_has_spo2=rng.random(n) < 0.85,
    )
