"""Rater quality, computed (pure functions of tables, so the dashboard, the exports and the benchmark share them).

- :func:`reference_match`: whether a rating of a gold, qualification or training item is within tolerance of the
  researcher's reference;
- :func:`wilson_interval`: a 95 % interval for a share (gold accuracy) that behaves at 0/n and n/n;
- :func:`alpha_without_each_rater`: Krippendorff's α of a dimension with each rater left out, for every rater at
  once from the coincidence counts (one pass, not one α per rater);
- :func:`self_consistency`: agreement of each rater with their own earlier rating of a hidden repeat;
- :func:`exclusions`: which rule (below gold threshold, too fast, paused) excludes each rating.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import sparse

DEFAULT_LIKERT_TOLERANCE = 1
EXCLUSION_RULES = {
    "gold": "rater below the gold-accuracy threshold",
    "fast": "rating faster than the study's minimum time per item",
    "paused": "rater paused by quality control",
}


def reference_match(
    *,
    reference: Mapping[str, Any],
    tolerance: Mapping[str, Any],
    scores: Mapping[str, Any],
    preference: str = "",
    binary: frozenset[str] = frozenset(),
) -> bool:
    """True when every dimension the reference scores is matched: a Likert score within its tolerance (default 1
    point), a yes/no or a pairwise choice exactly; a reference ``preference`` (pairwise) must be matched too."""
    for key, expected in reference.items():
        given = preference if key == "preference" else scores.get(key)
        if given is None or given == "":
            return False
        if isinstance(expected, str) or isinstance(given, str):
            if str(given) != str(expected):
                return False
            continue
        allowed = tolerance.get(key, 0 if key in binary else DEFAULT_LIKERT_TOLERANCE)
        if abs(float(given) - float(expected)) > float(allowed):
            return False
    return True


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float] | None:
    """Wilson score interval of a proportion; None without trials."""
    if trials <= 0:
        return None
    share = successes / trials
    denominator = 1 + z * z / trials
    centre = (share + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _distances(domain: npt.NDArray[np.float64], totals: npt.NDArray[np.float64], level: str) -> npt.NDArray[np.float64]:
    """δ² between the values, for each row of value totals (rows, values) -> (rows, values, values): nominal
    (c ≠ k), interval (c − k)², ratio ((c − k)/(c + k))², or ordinal (Σ_{g=c..k} n_g − (n_c + n_k)/2)² from the
    totals (Krippendorff's metrics, as the ``krippendorff`` package computes them)."""
    size = len(domain)
    fixed = {
        "interval": (domain[:, None] - domain[None, :]) ** 2,
        "nominal": (domain[:, None] != domain[None, :]).astype(float),
        "ratio": (
            (domain[:, None] - domain[None, :])
            / np.where(domain[:, None] + domain[None, :] == 0, 1.0, domain[:, None] + domain[None, :])
        )
        ** 2,
    }
    if level in fixed:
        return np.broadcast_to(fixed[level], (len(totals), size, size))
    cumulative = np.concatenate([np.zeros((len(totals), 1)), np.cumsum(totals, axis=1)], axis=1)
    low = np.minimum.outer(np.arange(size), np.arange(size))
    high = np.maximum.outer(np.arange(size), np.arange(size))
    spans = cumulative[:, high + 1] - cumulative[:, low] - (totals[:, low] + totals[:, high]) / 2
    return np.asarray(np.where(low == high, 0.0, spans**2), dtype=float)


def _coincidences(counts: npt.NDArray[np.float64], pairable: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per row, a unit's coincidence matrix (n nᵀ − diag n)/(m − 1), zero when the unit has fewer than two values."""
    outer = np.einsum("rc,rk->rck", counts, counts)
    outer[:, np.arange(counts.shape[1]), np.arange(counts.shape[1])] -= counts
    scale = np.where(pairable >= 2, 1.0 / np.maximum(pairable - 1, 1), 0.0)
    return np.asarray(outer * scale[:, None, None], dtype=float)


def _alphas(coincidences: npt.NDArray[np.float64], domain: npt.NDArray[np.float64], level: str) -> list[float | None]:
    """α of each coincidence matrix (rows, values, values)."""
    totals = coincidences.sum(axis=2)
    n = totals.sum(axis=1)
    delta = _distances(domain, totals, level)
    expected = np.einsum("rc,rck,rk->r", totals, delta, totals)
    observed = (coincidences * delta).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1 - (n - 1) * observed / expected
    return [float(value) if ok else None for value, ok in zip(alpha, (n >= 2) & (expected > 0), strict=True)]


def alpha_without_each_rater(
    ratings: pd.DataFrame,
    *,
    level: str = "ordinal",
    values: Sequence[float] | None = None,
    each_rater: bool = True,
) -> tuple[float | None, dict[Any, float | None]]:
    """Krippendorff's α of ``ratings`` (columns item, rater, score) and, per rater, α with that rater's ratings left
    out (``level`` ordinal or interval). Exact, and for every rater in one pass: α depends on the data only through
    the coincidence matrix, a sum over units; leaving a rater out changes only the terms of the units they rated,
    so each rater's matrix is the whole one plus the change of those terms. ``each_rater=False``: α alone."""
    frame = ratings[["item", "rater", "score"]].dropna()
    if frame.empty:
        return None, {}
    domain = np.array(sorted(set(values or []) | set(frame["score"].astype(float))), dtype=float)
    size = len(domain)
    column = np.searchsorted(domain, frame["score"].astype(float).to_numpy())
    unit, _ = pd.factorize(frame["item"])  # hashing: sorting 100,000 names costs more than all the rest
    per_unit = np.zeros((unit.max() + 1, size))
    np.add.at(per_unit, (unit, column), 1.0)
    pairable = per_unit.sum(axis=1)
    whole = _coincidences(per_unit, pairable).sum(axis=0)
    overall = _alphas(whole[None], domain, level)[0]
    if not each_rater:
        return overall, {}
    # Per rating: the change of its unit's term when the rating is left out; summed per rater by a sparse product.
    before = per_unit[unit]
    after = before.copy()
    after[np.arange(len(after)), column] -= 1.0
    change = (_coincidences(after, pairable[unit] - 1) - _coincidences(before, pairable[unit])).reshape(-1, size * size)
    rater_code, raters = pd.factorize(frame["rater"])
    membership = sparse.csr_matrix((np.ones(len(rater_code)), (rater_code, np.arange(len(rater_code)))))
    per_rater = np.asarray(membership @ change).reshape(len(raters), size, size)
    alphas = _alphas(whole[None] + per_rater, domain, level)
    return overall, dict(zip(raters, alphas, strict=True))


def self_consistency(repeats: pd.DataFrame) -> dict[Any, dict[str, float | int]]:
    """Per rater, from rows (rater, first, second) of mean scores of an item and its hidden repeat: the number of
    repeats, the share given the same score and the mean absolute difference."""
    difference = (repeats["first"].astype(float) - repeats["second"].astype(float)).abs()
    table = (
        pd.DataFrame({"rater": repeats["rater"], "difference": difference, "same": difference == 0})
        .groupby("rater", sort=False)
        .agg(repeats=("difference", "size"), same=("same", "mean"), mean_abs_difference=("difference", "mean"))
    )
    return {
        rater: {
            "repeats": int(row.repeats),
            "same": float(row.same),
            "mean_abs_difference": float(row.mean_abs_difference),
        }
        for rater, row in zip(table.index, table.itertuples(), strict=True)
    }


def exclusions(
    per_rating: pd.DataFrame,
    *,
    below_gold: set[Any],
    paused: set[Any],
    min_seconds: float,
    rules: set[str] | frozenset[str] = frozenset(EXCLUSION_RULES),
) -> pd.Series:
    """Per rating (rows with rater and time_spent_s), the rules of ``rules`` that exclude it, comma-separated ("" when
    none). Ratings are flagged, never dropped: a statistic keeps the rows whose value is ""."""
    reasons = []
    for rater, seconds in zip(per_rating["rater"], per_rating["time_spent_s"], strict=True):
        found = []
        if "gold" in rules and rater in below_gold:
            found.append("gold")
        if "fast" in rules and min_seconds > 0 and float(seconds or 0.0) < min_seconds:
            found.append("fast")
        if "paused" in rules and rater in paused:
            found.append("paused")
        reasons.append(",".join(found))
    return pd.Series(reasons, index=per_rating.index, dtype=object)
