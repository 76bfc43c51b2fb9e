"""What the agent says of a participant's digital-twin simulation: which intervention to suggest, for which biomarker,
in plain words (every number it writes is cited). It reads the stored simulations through ``modeling.selectors``."""

from healthagent.models import Participant
from modeling.ml.data.clinical import BIOMARKER_BY_NAME
from modeling.selectors import BIOMARKER_LABELS, HIGHER_IS_BETTER, MEANINGFUL_CHANGE, simulation_latest

# How the agent names each intervention: plain words, no numbers (every number it writes is cited).
INTERVENTION_TEXT = {
    "diet_change": (
        "Try a Mediterranean-style diet",
        "A Mediterranean-style diet with a modest daily calorie deficit",
        ("diet", "weight", "food", "eat"),
    ),
    "exercise_programme": (
        "Add regular aerobic exercise",
        "Regular moderate aerobic exercise such as brisk walking",
        ("exercise", "activity", "walk", "fitness"),
    ),
    "sleep_extension": ("Go to bed earlier, regularly", "A regular, earlier bedtime", ("sleep", "tired", "bed")),
    "statin": ("Ask about a statin", "A daily statin, if your clinician agrees,", ("cholesterol", "heart", "statin")),
    "antihypertensive": (
        "Ask about blood-pressure treatment",
        "Blood-pressure medicine, if your clinician agrees,",
        ("blood pressure", "heart"),
    ),
}


def simulated_effects(*, participant: Participant) -> list[dict]:
    """For the agent: per intervention of the latest simulation, the biomarker it is predicted to improve
    most (relative to a meaningful change of that biomarker). Only improvements count, and only when the
    whole 90 % interval is on the side of improvement and the mean is at least half a meaningful change:
    the agent never recommends an intervention for a change the twin predicts for the worse."""
    run = simulation_latest(participant=participant)
    if run is None:
        return []
    effects = []
    for intervention, by_biomarker in run.results.get("effects", {}).items():
        candidates = []
        for name, summary in by_biomarker.items():
            better = 1.0 if name in HIGHER_IS_BETTER else -1.0
            improvement = better * summary["mean"] / MEANINGFUL_CHANGE[name]
            if better * summary["low"] > 0 and better * summary["high"] > 0 and improvement >= 0.5:
                candidates.append((improvement, name, summary))
        if not candidates:
            continue
        _, biomarker, summary = max(candidates)
        title, description, topics = INTERVENTION_TEXT[intervention]
        decimals = 0 if BIOMARKER_BY_NAME[biomarker].unit in ("steps", "min", "mg/dL") else 1
        effects.append(
            {
                "intervention": intervention,
                "title": title,
                "description": description,
                "topics": topics,
                "biomarker": biomarker,
                "biomarker_label": BIOMARKER_LABELS[biomarker],
                "unit": BIOMARKER_BY_NAME[biomarker].unit,
                "mean": round(summary["mean"], decimals),
                "low": round(summary["low"], decimals),
                "high": round(summary["high"], decimals),
                "interval": "90 %",
                "horizon_days": run.horizon_days,
                "scale": MEANINGFUL_CHANGE[biomarker],
                "model": f"{run.checkpoint.family}-{run.checkpoint.size} #{run.checkpoint_id}",
                "simulation": run.pk,
            }
        )
    return effects
