"""Paired bootstrap of two predictions scored on the same people: what the twin's risk table and the
head search's decision share.

People are resampled with replacement; with ``stratify``, within each value of ``truth`` separately
(each class keeps its count), so a rare class is never resampled away and every draw can be scored.
Dropping the draws without the rare class instead would bias the interval towards the draws that
happen to hold more of it.
"""

from collections.abc import Callable

import numpy as np


def paired_draws(
    metric: Callable[[np.ndarray, np.ndarray], float],
    truth: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    *,
    resamples: int,
    seed: int,
    stratify: bool,
) -> np.ndarray:
    """(draws, 3): metric of ``first``, of ``second`` and their difference per resample; draws the metric
    leaves undefined (NaN) are left out."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(truth == value) for value in np.unique(truth)] if stratify else [np.arange(len(truth))]
    draws = np.empty((resamples, 3))
    for draw in range(resamples):
        pick = np.concatenate([rng.choice(group, len(group)) for group in groups])
        a, b = metric(truth[pick], first[pick]), metric(truth[pick], second[pick])
        draws[draw] = (a, b, a - b)
    return draws[np.isfinite(draws).all(axis=1)]


def percentile_interval(values: np.ndarray) -> tuple[float | None, float | None]:
    """The 95 % percentile interval of ``values`` (None, None when there are none)."""
    if not len(values):
        return None, None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)
