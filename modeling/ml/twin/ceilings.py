"""What any model of a participant's history could reach in the twin's report tables: the bars of issue 25 read
against the simulated world's own limits.

- ``trait_ceiling``: a trial participant's true change at a personal response of 1, from their exact traits. The
  simulator scales every effect by a responsiveness drawn for the trial, independent of the history, so its Pearson r
  with the true changes is, in expectation, the best any prediction can reach.
- ``true_state_hazard``: a hard endpoint's hazard on the true values at the prediction day: near the best ranking any
  model of the history can make, beside which the clinical scores are read.
"""

from collections.abc import Sequence

import numpy as np

from modeling.ml.data.clinical import hard_endpoint_daily_hazard, individual_effect
from modeling.ml.data.traits import Traits
from modeling.ml.twin.data import SimulatedRecords


def trait_ceiling(traits: Traits, intervention: str, biomarker: str, days: int) -> np.ndarray:
    """Each participant's change ``days`` after starting ``intervention`` at a personal response of 1, from their
    exact traits: proportional to the expected change given everything about them (the mean response is about 1.03),
    so its Pearson r with the true changes is what, in expectation, no model of their history can pass. The simulator
    multiplies every effect by a responsiveness it draws afresh for each trial (``sample_response``), independent of
    anything before the trial."""
    return individual_effect(traits, intervention, np.ones(len(traits)), days).get(biomarker, np.zeros(len(traits)))


def true_state_hazard(simulated: SimulatedRecords, kept: Sequence[int], endpoint: str) -> np.ndarray:
    """The simulator's own daily hazard of a hard endpoint for the participants ``kept``, on their true values on the
    day ``simulated`` kept them (``simulated_records(latent_on_day=...)``; the risk cohort keeps the prediction day's):
    what a predictor that saw through every measurement's noise would rank by. Near the best any model of the history
    can do, not above it: the values keep moving over the horizon (a 30-day memory, usual care starting treatment, the
    HbA1c step at 6.5 %). The risk table scores it beside the clinical score, to say how much room the score leaves."""
    if simulated.latent_day is None:
        raise ValueError("the cohort kept no true values: simulate it with simulated_records(latent_on_day=...)")
    traits = simulated.traits
    return np.array(
        [
            hard_endpoint_daily_hazard(
                endpoint, traits, i, traits.age_years[i] + simulated.latent_day / 365.0, simulated.latent[i]
            )
            for i in kept
        ]
    )
