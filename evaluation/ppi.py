"""Prediction-powered estimates (Angelopoulos et al., Science 2023; PPI++, Angelopoulos et al. 2024): a mean score
from a judge's grades of every item plus the clinicians' ratings of a rated subset, with a valid confidence
interval whatever the judge's bias. ``ppi-python`` computes the estimate and its interval; this module puts the
clinician-only and judge-only estimates beside it, variant differences, and the effective sample size: how many
clinician ratings the judge is worth for the same interval width.

Inputs per cell (a variant × a dimension or criterion category): ``clinician`` (each rated item's mean clinician
score), ``judge_rated`` (the judge's grade of the same items, same order) and ``judge_unrated`` (its grades of the
items no clinician rated). Django-free: the dashboard and ``python -m bench judge`` call it alike.
"""

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

ALPHA = 0.05
MIN_RATED = 2  # an interval needs at least two rated items


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float
    n: int  # items whose clinician ratings (or, judge-only, grades) it uses

    @property
    def width(self) -> float:
        return self.high - self.low

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "width": self.width}


def _array(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def clinician_only(clinician: Any, *, alpha: float = ALPHA) -> Estimate | None:
    """The mean of the rated items' clinician scores with its t interval: what the study has without a judge."""
    y = _array(clinician)
    if len(y) < MIN_RATED:
        return None
    mean, sem = float(y.mean()), float(y.std(ddof=1) / np.sqrt(len(y)))
    half = float(stats.t.ppf(1 - alpha / 2, len(y) - 1)) * sem
    return Estimate(mean, mean - half, mean + half, len(y))


def judge_only(judge_rated: Any, judge_unrated: Any, *, alpha: float = ALPHA) -> Estimate | None:
    """The judge's mean over every item with its interval, as if the judge were a clinician: narrow, and wrong by
    whatever bias the judge has (shown to say so)."""
    grades = np.concatenate([_array(judge_rated), _array(judge_unrated)])
    if len(grades) < MIN_RATED:
        return None
    mean, sem = float(grades.mean()), float(grades.std(ddof=1) / np.sqrt(len(grades)))
    half = float(stats.norm.ppf(1 - alpha / 2)) * sem
    return Estimate(mean, mean - half, mean + half, len(grades))


def prediction_powered(
    clinician: Any, judge_rated: Any, judge_unrated: Any, *, alpha: float = ALPHA
) -> Estimate | None:
    """The prediction-powered (PPI++, power-tuned) mean and interval of ``ppi_py``; None without two rated items
    and one unrated one."""
    y, yhat, yhat_unrated = _array(clinician), _array(judge_rated), _array(judge_unrated)
    if len(y) != len(yhat):
        raise ValueError("clinician and judge_rated must describe the same items")
    if len(y) < MIN_RATED or len(yhat_unrated) < 1:
        return None
    from ppi_py import ppi_mean_ci, ppi_mean_pointestimate  # numba compiles on first import: only when needed

    low, high = ppi_mean_ci(y, yhat, yhat_unrated, alpha=alpha)
    mean = ppi_mean_pointestimate(y, yhat, yhat_unrated)
    return Estimate(float(np.ravel(mean)[0]), float(np.ravel(low)[0]), float(np.ravel(high)[0]), len(y))


def difference(first: Estimate | None, second: Estimate | None, *, alpha: float = ALPHA) -> Estimate | None:
    """``first - second`` of two estimates on disjoint items (two variants), with the normal interval of the
    difference from each interval's standard error."""
    if first is None or second is None:
        return None
    z = float(stats.norm.ppf(1 - alpha / 2))
    se = np.hypot(first.width / (2 * z), second.width / (2 * z))
    mean = first.mean - second.mean
    return Estimate(mean, float(mean - z * se), float(mean + z * se), first.n + second.n)


def effective_sample_size(clinician: Estimate | None, powered: Estimate | None) -> float | None:
    """How many clinician-rated items the clinician-only interval would need to be as narrow as the prediction-
    powered one (widths shrink as 1/sqrt(n)): the clinician ratings the judge is worth, plus those it has."""
    if clinician is None or powered is None or powered.width <= 0:
        return None
    return float(clinician.n * (clinician.width / powered.width) ** 2)


def estimates(clinician: Any, judge_rated: Any, judge_unrated: Any, *, alpha: float = ALPHA) -> dict[str, Any]:
    """The three estimates of one cell, side by side, with the effective sample size."""
    alone = clinician_only(clinician, alpha=alpha)
    powered = prediction_powered(clinician, judge_rated, judge_unrated, alpha=alpha)
    judge = judge_only(judge_rated, judge_unrated, alpha=alpha)
    return {
        "clinician": alone.as_dict() if alone else None,
        "judge": judge.as_dict() if judge else None,
        "ppi": powered.as_dict() if powered else None,
        "effective_n": effective_sample_size(alone, powered),
    }
