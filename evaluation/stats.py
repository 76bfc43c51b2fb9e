"""The statistics researchers read, computed from a table of ratings with vectorised numpy/scipy.

Input is a long table (one row per rating and dimension): ``item``, ``rater``, ``variant``,
``participant``, ``dimension``, ``score`` (absolute studies), plus per-rating ``time_spent_s``.
Pairwise studies use ``winner`` per item and dimension. No function loops over ratings in Python.

Every result says how many items and raters it rests on; below the minimum it returns
``{"enough": False, "reason": ...}`` instead of a number, so pages never show NaN.
"""

from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from evaluation.quality import alpha_without_each_rater

BOOTSTRAP_SAMPLES = 2000
MAX_BOOTSTRAP_CLUSTERS = 3000
MIN_RATINGS_FOR_MEAN = 2
MIN_ITEMS_FOR_AGREEMENT = 3


def not_enough(reason: str) -> dict:
    return {"enough": False, "reason": reason}


# --- Means with bootstrap confidence intervals -------------------------------------------------


def bootstrap_mean_ci(
    values: np.ndarray, clusters: np.ndarray, *, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES
) -> tuple[float, float]:
    """95 % CI of the mean that treats the ratings of one item (cluster) as dependent.

    Up to ``MAX_BOOTSTRAP_CLUSTERS`` items: percentile bootstrap resampling whole items. Beyond,
    the bootstrap costs samples × items and its distribution is normal anyway, so the cluster-robust
    (linearized ratio-estimator) normal interval is used; the tests check the two agree.
    """
    cluster_ids, inverse = np.unique(clusters, return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse).astype(float)
    if len(cluster_ids) > MAX_BOOTSTRAP_CLUSTERS:
        return cluster_normal_ci(sums, counts)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(cluster_ids), size=(samples, len(cluster_ids)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def cluster_normal_ci(sums: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    """Normal 95 % CI of sum(sums)/sum(counts) with the cluster-robust linearized variance."""
    n = len(sums)
    mean = sums.sum() / counts.sum()
    residuals = sums - mean * counts
    standard_error = np.sqrt(n / (n - 1) * (residuals**2).sum()) / counts.sum()
    return float(mean - 1.96 * standard_error), float(mean + 1.96 * standard_error)


def dimension_means(ratings: pd.DataFrame, points: dict[str, list[int]]) -> list[dict]:
    """Per variant × dimension: mean, bootstrap 95 % CI over items, the score distribution, n."""
    rows = []
    for (variant, dimension), group in ratings.groupby(["variant", "dimension"], sort=True):
        scores = group["score"].to_numpy(dtype=float)
        distribution = {
            str(point): int((scores == point).sum()) for point in points.get(dimension, sorted(set(scores.astype(int))))
        }
        row = {
            "variant": variant,
            "dimension": dimension,
            "n_ratings": len(scores),
            "n_items": int(group["item"].nunique()),
            "distribution": distribution,
        }
        if len(scores) < MIN_RATINGS_FOR_MEAN:
            row.update(not_enough(f"{len(scores)} rating(s)"))
        else:
            low, high = bootstrap_mean_ci(scores, group["item"].to_numpy())
            row.update({"enough": True, "mean": float(scores.mean()), "ci_low": low, "ci_high": high})
        rows.append(row)
    return rows


# --- Agreement -------------------------------------------------------------------------------


def krippendorff_alpha(
    ratings: pd.DataFrame,
    *,
    level: Literal["nominal", "ordinal", "interval", "ratio"] = "ordinal",
    value_domain: list[int] | None = None,
) -> dict:
    """Krippendorff's α of one dimension, with what it rests on. Computed from the coincidence matrix by
    :func:`evaluation.quality.alpha_without_each_rater` (equal to the ``krippendorff`` package's value to 1e-12,
    tests/evaluation/test_quality.py, and 15 times faster on 100,000 ratings, which the 2-s dashboard needs)."""
    paired = ratings.groupby("item")["rater"].transform("nunique") >= 2
    usable = ratings[paired]
    if usable["item"].nunique() < MIN_ITEMS_FOR_AGREEMENT:
        return not_enough(
            f"{usable['item'].nunique()} item(s) rated by two or more raters; at least {MIN_ITEMS_FOR_AGREEMENT} needed"
        )
    if usable["score"].nunique() < 2:
        return not_enough("every rating has the same value, so agreement is undefined")
    alpha, _ = alpha_without_each_rater(usable, level=level, values=value_domain, each_rater=False)
    if alpha is None:
        return not_enough("no disagreement can be expected from these values")
    return {
        "enough": True,
        "alpha": float(alpha),
        "n_items": int(usable["item"].nunique()),
        "n_raters": int(usable["rater"].nunique()),
    }


def icc(ratings: pd.DataFrame) -> dict:
    """Intraclass correlations of one dimension with 95 % CIs (Shrout & Fleiss; McGraw & Wong).

    Raters differ between items in these studies, so each item's ratings are laid out by rating
    order (the first, second, ... rating of the item) and items with fewer than the modal number of
    ratings are left out. ICC1 (one-way random) is the one that matches that design; ICC2 (two-way
    random, absolute agreement) is reported beside it. Checked against pingouin in the tests.
    """
    counts = ratings.groupby("item")["score"].transform("size")
    k = int(counts.mode().iloc[0]) if len(counts) else 0
    if k < 2:
        return not_enough("items have fewer than two ratings each")
    complete = ratings[counts == k].sort_values(["item", "rater"])
    n = complete["item"].nunique()
    if n < MIN_ITEMS_FOR_AGREEMENT:
        return not_enough(f"{n} item(s) with {k} ratings; at least {MIN_ITEMS_FOR_AGREEMENT} needed")
    matrix = complete["score"].to_numpy(dtype=float).reshape(n, k)
    return {"enough": True, "n_items": n, "ratings_per_item": k, **icc_from_matrix(matrix)}


def icc_from_matrix(matrix: np.ndarray) -> dict:
    """ICC1, ICC2 and their CIs for an items × raters matrix without missing values.

    With no disagreement at all the F ratios are infinite: the ICCs are 1 and the CI bounds that
    cannot be computed are None.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return _icc_terms(matrix)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _icc_terms(matrix: np.ndarray) -> dict:
    n, k = matrix.shape
    grand = matrix.mean()
    ss_rows = k * ((matrix.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((matrix.mean(axis=0) - grand) ** 2).sum()
    ss_total = ((matrix - grand) ** 2).sum()
    ss_within = ss_total - ss_rows
    ss_error = ss_total - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msw = ss_within / (n * (k - 1))
    msc = ss_cols / (k - 1)
    mse = ss_error / ((n - 1) * (k - 1))
    icc1 = (msr - msw) / (msr + (k - 1) * msw)
    icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    # ICC1 CI from the F distribution.
    f1 = msr / msw
    f1_low, f1_high = f1 / stats.f.ppf(0.975, n - 1, n * (k - 1)), f1 * stats.f.ppf(0.975, n * (k - 1), n - 1)
    icc1_ci = ((f1_low - 1) / (f1_low + k - 1), (f1_high - 1) / (f1_high + k - 1))
    # ICC2 CI with Satterthwaite's degrees of freedom (McGraw & Wong 1996), as pingouin computes it.
    a = k * icc2 / (n * (1 - icc2))
    b = 1 + k * icc2 * (n - 1) / (n * (1 - icc2))
    v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
    f_star_high = stats.f.ppf(0.975, n - 1, v)
    f_star_low = stats.f.ppf(0.975, v, n - 1)
    icc2_low = n * (msr - f_star_high * mse) / (f_star_high * (k * msc + (k * n - k - n) * mse) + n * msr)
    icc2_high = n * (f_star_low * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_star_low * msr)
    return {
        "icc1": _finite(icc1),
        "icc1_ci": [_finite(icc1_ci[0]), _finite(icc1_ci[1])],
        "icc2": _finite(icc2),
        "icc2_ci": [_finite(icc2_low), _finite(icc2_high)],
    }


# --- Variant comparisons ---------------------------------------------------------------------


def paired_comparison(
    ratings: pd.DataFrame, variant_a: str, variant_b: str, *, test: str = "wilcoxon", alternative: str = "two-sided"
) -> dict:
    """Wilcoxon signed-rank (or, with ``test="paired_t"``, a paired t-test) on participants rated for both variants
    (their mean scores), with the matched-pairs rank-biserial correlation as effect size (positive: A scores higher).
    ``alternative``: two-sided, greater (A higher) or less. The pre-registered analysis and its power simulation
    (evaluation/protocol.py) call this same function."""
    # Each participant's mean score per variant, with numpy (a power analysis calls this thousands of times).
    variants = ratings["variant"].to_numpy()
    side = np.where(variants == variant_a, 0, np.where(variants == variant_b, 1, -1))
    if not (side == 0).any() or not (side == 1).any():
        return not_enough("one of the variants has no ratings")
    kept = side >= 0
    participant, _ = pd.factorize(ratings["participant"].to_numpy()[kept])
    sums = np.zeros((participant.max() + 1, 2))
    counts = np.zeros_like(sums)
    np.add.at(sums, (participant, side[kept]), ratings["score"].to_numpy(dtype=float)[kept])
    np.add.at(counts, (participant, side[kept]), 1.0)
    both = (counts > 0).all(axis=1)
    first, second = sums[both, 0] / counts[both, 0], sums[both, 1] / counts[both, 1]
    differences = first - second
    nonzero = differences[differences != 0]
    if len(differences) < 5 or len(nonzero) < 1:
        return not_enough(
            f"{len(differences)} participant(s) rated for both variants; at least 5 with a difference needed"
        )
    if test == "paired_t":
        result = stats.ttest_rel(first, second, alternative=alternative)
    else:
        result = wilcoxon(differences, alternative=alternative)
    ranks = stats.rankdata(np.abs(nonzero))
    rank_biserial = float((ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum()) / ranks.sum())
    return {
        "enough": True,
        "n_pairs": len(differences),
        "mean_difference": float(differences.mean()),
        "statistic": float(result.statistic),
        "p_value": float(result.pvalue),
        "rank_biserial": rank_biserial,
    }


PERMUTATION_MAX_PAIRS = 13  # scipy's wilcoxon enumerates every sign pattern up to here when there are ties or zeros


def wilcoxon(differences: np.ndarray, *, alternative: str = "two-sided") -> Any:
    """``scipy.stats.wilcoxon(differences, zero_method="wilcox", alternative=alternative)``, with the same statistic
    and p-value, in microseconds rather than a fifth of a second where scipy would run its permutation test (at most
    13 pairs, with ties or zeros, as Likert means have): there scipy evaluates the statistic once per sign pattern in
    Python; here the exact null distribution of the signed-rank sum over all 2^m sign patterns of the m nonzero
    differences is one matrix product (the power analysis simulates thousands of such studies in one request).
    Everywhere else, scipy itself. Checked against scipy in tests/evaluation/test_stats.py."""
    nonzero = differences[differences != 0]
    magnitudes = np.abs(nonzero)
    ties_or_zeros = len(nonzero) < len(differences) or len(np.unique(magnitudes)) < len(magnitudes)
    if not (ties_or_zeros and 0 < len(differences) <= PERMUTATION_MAX_PAIRS):
        return stats.wilcoxon(differences, zero_method="wilcox", alternative=alternative)
    ranks = stats.rankdata(magnitudes)
    r_plus, r_minus = float(ranks[nonzero > 0].sum()), float(ranks[nonzero < 0].sum())
    patterns = (np.arange(2 ** len(nonzero))[:, None] >> np.arange(len(nonzero))) & 1  # every sign pattern
    null = patterns @ ranks  # its signed-rank sum r+
    gamma = abs(np.finfo(float).eps * 100 * r_plus)  # scipy's tolerance for ties of the statistic
    less, greater = np.mean(null <= r_plus + gamma), np.mean(null >= r_plus - gamma)
    p_value = {"less": less, "greater": greater}.get(alternative, min(1.0, 2 * min(less, greater)))
    statistic = min(r_plus, r_minus) if alternative == "two-sided" else r_plus
    return SimpleNamespace(statistic=statistic, pvalue=float(p_value))


def adjust_p_values(p_values: list[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (scipy)."""
    if not p_values:
        return []
    return [float(value) for value in stats.false_discovery_control(np.asarray(p_values), method="bh")]


# --- Pairwise studies ------------------------------------------------------------------------


def bradley_terry(wins: np.ndarray, *, iterations: int = 200) -> np.ndarray:
    """Strengths (log scale, mean zero) from a matrix ``wins[i, j]`` of i beating j (ties count a half).

    Hunter's MM algorithm; a tiny prior win each way keeps strengths finite when one side always wins.
    """
    wins = wins + 0.1 * (1 - np.eye(len(wins)))
    totals = wins + wins.T
    strength = np.ones(len(wins))
    for _ in range(iterations):
        denominator = (totals / (strength[:, None] + strength[None, :])).sum(axis=1)
        strength = wins.sum(axis=1) / denominator
        strength /= np.exp(np.log(strength).mean())
    return np.log(strength)


def _win_matrix(
    variants: int, first: np.ndarray, second: np.ndarray, score_first: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """(variants, variants): the wins of each row's variant over each column's, over the judgements ``rows``."""
    matrix = np.zeros((variants, variants))
    np.add.at(matrix, (first[rows], second[rows]), score_first[rows])
    np.add.at(matrix, (second[rows], first[rows]), 1.0 - score_first[rows])
    return matrix


def pairwise_summary(outcomes: pd.DataFrame, *, seed: int = 0) -> list[dict]:
    """Per dimension: win / tie / loss rates of variant A against B, and Bradley–Terry strengths
    with bootstrap CIs over items. ``outcomes`` has ``item``, ``dimension``, ``variant_a``,
    ``variant_b``, ``winner`` ('a', 'b' or 'tie')."""
    results = []
    rng = np.random.default_rng(seed)
    for dimension, group in outcomes.groupby("dimension", sort=True):
        variants = sorted(set(group["variant_a"]) | set(group["variant_b"]))
        index = {variant: position for position, variant in enumerate(variants)}
        first = group["variant_a"].map(index).to_numpy()
        second = group["variant_b"].map(index).to_numpy()
        winner = group["winner"].to_numpy()
        score_first = np.where(winner == "a", 1.0, np.where(winner == "tie", 0.5, 0.0))

        everything = np.arange(len(group))
        strengths = bradley_terry(_win_matrix(len(variants), first, second, score_first, everything))
        items = group["item"].to_numpy()
        item_ids, item_index = np.unique(items, return_inverse=True)
        rows_by_item = [np.flatnonzero(item_index == i) for i in range(len(item_ids))]
        boot = []
        for _ in range(300):
            chosen = rng.integers(0, len(item_ids), len(item_ids))
            rows = np.concatenate([rows_by_item[i] for i in chosen])
            boot.append(bradley_terry(_win_matrix(len(variants), first, second, score_first, rows)))
        low, high = np.percentile(np.array(boot), [2.5, 97.5], axis=0)
        results.append(
            {
                "dimension": dimension,
                "n_judgements": len(group),
                "n_items": len(item_ids),
                "a_wins": float((winner == "a").mean()),
                "ties": float((winner == "tie").mean()),
                "b_wins": float((winner == "b").mean()),
                "strengths": [
                    {
                        "variant": variant,
                        "strength": float(strengths[i]),
                        "ci_low": float(low[i]),
                        "ci_high": float(high[i]),
                    }
                    for variant, i in index.items()
                ],
            }
        )
    return results


# --- Raters and disagreement -----------------------------------------------------------------


def rater_summary(ratings: pd.DataFrame, per_rating: pd.DataFrame) -> list[dict]:
    """Per rater: ratings, mean score, median time per item, and mean absolute difference from the
    other raters of the same items (high values point at an outlier rater)."""
    item_dimension = ratings.groupby(["item", "dimension"])["score"].agg(["sum", "count"])
    joined = ratings.join(item_dimension, on=["item", "dimension"])
    others = joined["count"] - 1
    joined["others_mean"] = np.where(
        others > 0, (joined["sum"] - joined["score"]) / others.where(others > 0, 1), np.nan
    )
    joined["difference"] = (joined["score"] - joined["others_mean"]).abs()
    by_rater = joined.groupby("rater").agg(mean_score=("score", "mean"), disagreement=("difference", "mean"))
    times = per_rating.groupby("rater").agg(ratings=("item", "size"), median_time_s=("time_spent_s", "median"))
    table = times.join(by_rater, how="left").reset_index()
    return [
        {
            "rater": row.rater,
            "ratings": int(row.ratings),
            "median_time_s": float(row.median_time_s),
            "mean_score": None if pd.isna(row.mean_score) else float(row.mean_score),
            "disagreement": None if pd.isna(row.disagreement) else float(row.disagreement),
        }
        for row in table.itertuples()
    ]


def adjudication_queue(ratings: pd.DataFrame, limit: int = 50) -> list[dict]:
    """Items whose raters disagree most (largest score range on any dimension), first."""
    extremes = ratings.groupby(["item", "dimension"])["score"].agg(["max", "min"])
    spread = (extremes["max"] - extremes["min"]).unstack("dimension")
    counts = ratings.groupby("item")["rater"].nunique()
    spread = spread[counts.reindex(spread.index) >= 2]
    if spread.empty:
        return []
    worst = spread.max(axis=1).sort_values(ascending=False).head(limit)
    return [
        {
            "item": int(item),
            "largest_spread": float(value),
            "spreads": {k: float(v) for k, v in spread.loc[item].dropna().items()},
        }
        for item, value in worst.items()
        if value > 0
    ]
