"""The minute-level feature set: the single source of truth for channels everywhere.

Channel order here is the order of the last axis of every minute array, of the Parquet columns
and of the models' input. ``valid_range`` is what importers accept (values outside are dropped
as implausible) and what standardization clips to.
"""

from dataclasses import dataclass

MINUTES_PER_DAY = 1440


@dataclass(frozen=True)
class Feature:
    name: str
    unit: str
    valid_range: tuple[float, float]
    family: str
    description: str
    categorical: bool = False


FEATURES: tuple[Feature, ...] = (
    # Heart rate and heart-rate variability (PPG)
    Feature("heart_rate", "bpm", (25, 230), "cardio", "heart rate"),
    Feature("rr_median", "ms", (260, 2400), "cardio", "median beat-to-beat interval"),
    Feature("rr_p20", "ms", (250, 2400), "cardio", "20th percentile of beat-to-beat intervals"),
    Feature("rr_p80", "ms", (260, 2500), "cardio", "80th percentile of beat-to-beat intervals"),
    Feature("rmssd", "ms", (1, 300), "cardio", "root mean square of successive RR differences"),
    Feature("sdnn", "ms", (1, 350), "cardio", "standard deviation of RR intervals"),
    # Activity (accelerometer)
    Feature("steps", "steps/min", (0, 250), "activity", "step count"),
    Feature("activity_counts", "counts/min", (0, 20000), "activity", "accelerometer activity counts"),
    Feature("accel_magnitude", "mg", (0, 4000), "activity", "mean acceleration magnitude above gravity"),
    Feature("accel_jerk", "g/s", (0, 50), "activity", "mean absolute jerk"),
    Feature("accel_log_energy", "log g^2", (-12, 6), "activity", "log energy of acceleration"),
    Feature("zero_crossing_rate", "1/s", (0, 10), "activity", "zero-crossing rate of the vertical axis"),
    Feature("met", "MET", (0.8, 20), "activity", "metabolic equivalent of the minute"),
    Feature("energy_expenditure", "kcal/min", (0.5, 30), "activity", "energy expenditure"),
    # Electrodermal activity
    Feature("skin_conductance", "uS", (0.01, 60), "eda", "skin conductance level"),
    Feature("skin_conductance_slope", "uS/min", (-10, 10), "eda", "slope of the skin conductance level"),
    Feature("eda_lability", "responses/min", (0, 30), "eda", "skin conductance responses per minute"),
    # Skin temperature
    Feature("skin_temperature", "degC", (20, 42), "temperature", "wrist skin temperature"),
    Feature("skin_temperature_slope", "degC/min", (-2, 2), "temperature", "slope of the wrist skin temperature"),
    # Respiration and oxygen saturation
    Feature("spo2", "%", (60, 100), "respiratory", "peripheral oxygen saturation"),
    Feature("respiration_rate", "breaths/min", (4, 60), "respiratory", "respiration rate"),
    # Sleep
    Feature("sleep_stage", "stage", (0, 3), "sleep", "0 wake, 1 light, 2 deep, 3 REM", categorical=True),
    Feature("sleep_probability", "probability", (0, 1), "sleep", "probability of being asleep"),
    # Altimeter
    Feature("altitude_gain", "m/min", (0, 60), "altimeter", "altitude climbed"),
    Feature("floors", "floors/min", (0, 20), "altimeter", "floors climbed"),
    Feature("altimeter_std", "m", (0, 20), "altimeter", "standard deviation of barometric altitude"),
    # Derived state
    Feature("stress_score", "0-100", (0, 100), "stress", "stress score from HRV relative to the personal baseline"),
)

FEATURE_NAMES: tuple[str, ...] = tuple(feature.name for feature in FEATURES)
FEATURE_INDEX: dict[str, int] = {name: index for index, name in enumerate(FEATURE_NAMES)}
NUM_FEATURES = len(FEATURES)
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(feature.family for feature in FEATURES))
SLEEP_STAGES = ("wake", "light", "deep", "rem")


# Units as people write them, for pages and charts only: ``Feature.unit`` stays ASCII because
# importers match the unit columns of uploaded files against it.
UNIT_LABELS = {
    "degC": "°C",
    "degC/min": "°C/min",
    "uS": "µS",
    "uS/min": "µS/min",
    "log g^2": "log g²",
    "mL/min/1.73m2": "mL/min/1.73 m²",
}


def unit_label(unit: str) -> str:
    """``unit`` as a page shows it ("°C" for "degC", "µS" for "uS"); other units unchanged."""
    return UNIT_LABELS.get(unit, unit)


def feature(name: str) -> Feature:
    return FEATURES[FEATURE_INDEX[name]]


def channels_of_family(family: str) -> list[int]:
    return [index for index, feature in enumerate(FEATURES) if feature.family == family]
