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
# ppi-python's interval is a normal one with the plain (n) variance: below a few dozen rated items it is too narrow
# (and the effective n flattering), so no prediction-powered interval is given on fewer.
MIN_RATED_PPI = 20


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
    if len(y) < MIN_RATED_PPI or len(yhat_unrated) < 1:
        return None
    from ppi_py import ppi_mean_ci, ppi_mean_pointestimate  # numba compiles on first import: only when needed

    # A judge that gives every item the same grade carries no information, and PPI++'s tuning divides 0 by 0: its
    # weight is then 0 (the clinicians' mean alone), set here rather than left to come back as NaN.
    lam = 0.0 if np.ptp(np.concatenate([yhat, yhat_unrated])) == 0 else None
    low, high = ppi_mean_ci(y, yhat, yhat_unrated, alpha=alpha, lam=lam)
    mean = ppi_mean_pointestimate(y, yhat, yhat_unrated, lam=lam)
    values = [float(np.ravel(value)[0]) for value in (mean, low, high)]
    if not all(np.isfinite(values)):
        return None
    return Estimate(values[0], values[1], values[2], len(y))


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
    # The clinician-only interval is a t interval, the powered one normal: compare them on the normal scale.
    normal_width = clinician.width * float(stats.norm.ppf(0.975) / stats.t.ppf(0.975, max(clinician.n - 1, 1)))
    return float(clinician.n * (normal_width / powered.width) ** 2)


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


def active_mean(
    judge_all: Any, clinician: Any, rated_mask: Any, probability: Any, *, alpha: float = ALPHA
) -> Estimate | None:
    """Active inference (Zrnic & Candès, ICML 2024): every item has a judge grade; item i was given to clinicians
    with a known probability ``probability[i]`` (chosen from its features before its rating, e.g. larger where the
    judge errs more) and was rated if ``rated_mask[i]``. Each item contributes ``judge + rated * (clinician - judge) /
    probability``: unbiased for the mean whatever the judge's bias, with a normal interval over items. ``clinician``
    holds the rated items' scores (any value elsewhere)."""
    judge, y = _array(judge_all), _array(clinician)
    rated, pi = np.asarray(rated_mask, dtype=bool).reshape(-1), _array(probability)
    if not (len(judge) == len(y) == len(rated) == len(pi)) or np.any(pi[rated] <= 0):
        raise ValueError("judge_all, clinician, rated_mask and probability must describe the same items")
    if rated.sum() < MIN_RATED_PPI:
        return None
    contribution = judge + np.where(rated, (np.where(rated, y, 0.0) - judge) / np.where(rated, pi, 1.0), 0.0)
    mean = float(contribution.mean())
    half = float(stats.norm.ppf(1 - alpha / 2)) * float(contribution.std(ddof=1) / np.sqrt(len(contribution)))
    return Estimate(mean, mean - half, mean + half, int(rated.sum()))
