"""Bootstrap intervals over people: of one metric (every family's evaluation tables), and paired, of two predictions
scored on the same people (the twin's risk table and the head search's decision).

People are resampled with replacement; with ``stratify``, within each value of ``truth`` separately
(each class keeps its count), so a rare class is never resampled away and every draw can be scored.
Dropping the draws without the rare class instead would bias the interval towards the draws that
happen to hold more of it.
"""

import warnings
from collections.abc import Callable

import numpy as np

BOOTSTRAP = 200  # resamples behind an evaluation table's intervals


def bootstrap_interval(
    metric: Callable[[np.ndarray, np.ndarray], float | None],
    truth: np.ndarray,
    predicted: np.ndarray,
    *,
    resamples: int = BOOTSTRAP,
    seed: int = 0,
) -> tuple[float, float, float] | None:
    """(estimate, 2.5th, 97.5th percentile over resampled people) of ``metric(truth, predicted)``; None where the metric
    is undefined on everyone. Resamples where it is undefined (a resample with one class has no AUROC) are left out."""
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny test sets: a resample with one class, a class never predicted
        value = metric(truth, predicted)
        if value is None:
            return None
        samples = []
        for _ in range(resamples):
            rows = rng.integers(0, len(truth), len(truth))
            try:
                sample = metric(truth[rows], predicted[rows])
            except ValueError:
                continue
            if sample is not None and np.isfinite(sample):
                samples.append(sample)
    low, high = np.percentile(samples, [2.5, 97.5]) if samples else (np.nan, np.nan)
    return float(value), float(low), float(high)


def paired_draws(
    metric: Callable[[np.ndarray, np.ndarray], float | None],
    truth: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    *,
    resamples: int,
    seed: int,
    stratify: bool,
) -> np.ndarray:
    """(draws, 3): metric of ``first``, of ``second`` and their difference per resample; draws the metric
    leaves undefined (None or NaN) are left out."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(truth == value) for value in np.unique(truth)] if stratify else [np.arange(len(truth))]
    draws = np.empty((resamples, 3))
    for draw in range(resamples):
        pick = np.concatenate([rng.choice(group, len(group)) for group in groups])
        a, b = metric(truth[pick], first[pick]), metric(truth[pick], second[pick])
        a, b = np.nan if a is None else a, np.nan if b is None else b
        draws[draw] = (a, b, a - b)
    return draws[np.isfinite(draws).all(axis=1)]


def percentile_interval(values: np.ndarray) -> tuple[float | None, float | None]:
    """The 95 % percentile interval of ``values`` (None, None when there are none)."""
    if not len(values):
        return None, None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)
