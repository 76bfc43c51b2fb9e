"""The measurements a cohort keeps (``Measurement.name``): the simulator's biomarkers, which the agent and the twin
read, and the height, which no model reads as a value. The twin reads obesity against it, a BMI of 30 at the
participant's height (``modeling.ml.twin.risk.WeightLimits``), as the simulator diagnoses it; without one it reads the
diagnosis instead. A height is kept as any measurement is: top- and bottom-coded at import
(healthagent.cohort.import_anonymity), so that the tallest participant is not singled out."""

from modeling.ml.data.clinical import BIOMARKER_BY_NAME

HEIGHT = "height"
# An adult's height; a value outside is refused, not stored: most likely metres or inches written as centimetres,
# which would move the participant's obesity limit by a factor of a hundred.
HEIGHT_PLAUSIBLE_CM = (100.0, 250.0)
UNITS_AND_MODALITIES: dict[str, tuple[str, str]] = {
    **{name: (biomarker.unit, biomarker.modality) for name, biomarker in BIOMARKER_BY_NAME.items()},
    HEIGHT: ("cm", "body_composition"),
}


def height_problem(value_cm: float, as_given: str) -> str | None:
    """Why ``value_cm`` (the file's ``as_given``, e.g. "175 m") cannot be a height, or None when it can."""
    low, high = HEIGHT_PLAUSIBLE_CM
    if low <= value_cm <= high:
        return None
    converted = "" if as_given.endswith(" cm") else f" is {value_cm:g} cm,"
    return f"height {as_given}{converted} outside {low:g}-{high:g} cm: is its unit right?"
