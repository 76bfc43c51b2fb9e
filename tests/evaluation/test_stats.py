"""The statistics against reference implementations and hand-computed cases."""

import numpy as np
import pandas as pd
import pingouin
import pytest
from scipy import stats as scipy_stats

from evaluation import stats


def long_table(matrix: np.ndarray) -> pd.DataFrame:
    """items × raters matrix -> the long table stats uses (NaN cells are absent ratings)."""
    items, raters = np.nonzero(~np.isnan(matrix))
    return pd.DataFrame(
        {
            "item": items,
            "rater": raters,
            "score": matrix[items, raters],
            "dimension": "safety",
            "variant": "v",
            "participant": items,
        }
    )


@pytest.mark.parametrize("seed", range(5))
def test_icc_matches_pingouin_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    truth = rng.normal(3, 1, size=(30, 1))
    matrix = np.clip(np.round(truth + rng.normal(0, 0.8, size=(30, 4)) + rng.normal(0, 0.3, size=(1, 4))), 1, 5)
    ours = stats.icc_from_matrix(matrix)
    frame = pd.DataFrame(
        {"item": np.repeat(np.arange(30), 4), "rater": np.tile(np.arange(4), 30), "score": matrix.ravel()}
    )
    reference = pingouin.intraclass_corr(data=frame, targets="item", raters="rater", ratings="score").set_index("Type")
    assert ours["icc1"] == pytest.approx(reference.loc["ICC(1,1)", "ICC"], abs=1e-9)
    assert ours["icc2"] == pytest.approx(reference.loc["ICC(A,1)", "ICC"], abs=1e-9)
    assert ours["icc1_ci"] == pytest.approx(
        list(reference.loc["ICC(1,1)", "CI95"]), abs=0.006
    )  # pingouin rounds its CIs to 2 decimals
    assert ours["icc2_ci"] == pytest.approx(list(reference.loc["ICC(A,1)", "CI95"]), abs=0.006)


def test_icc_hand_computed_case():
    # Perfect agreement gives 1; rows identical across raters.
    matrix = np.array([[1, 1], [3, 3], [5, 5], [2, 2]], dtype=float)
    assert stats.icc_from_matrix(matrix)["icc1"] == pytest.approx(1.0)
    # Shrout & Fleiss (1979) table 2 data: ICC(1,1) = 0.17, ICC(2,1) = 0.29.
    shrout = np.array(
        [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], dtype=float
    )
    result = stats.icc_from_matrix(shrout)
    assert result["icc1"] == pytest.approx(0.17, abs=0.005) and result["icc2"] == pytest.approx(0.29, abs=0.005)


@pytest.mark.parametrize("seed", range(5))
def test_alpha_matches_the_krippendorff_package_with_missing_ratings(seed):
    import krippendorff

    rng = np.random.default_rng(seed)
    matrix = np.clip(np.round(rng.normal(3, 1, size=(40, 1)) + rng.normal(0, 0.7, size=(40, 6))), 1, 5)
    matrix[rng.random(matrix.shape) < 0.5] = np.nan  # each item rated by a random subset
    table = long_table(matrix)
    ours = stats.krippendorff_alpha(table, value_domain=[1, 2, 3, 4, 5])
    reference = krippendorff.alpha(
        reliability_data=matrix.T, level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5]
    )
    assert ours["alpha"] == pytest.approx(reference, abs=1e-9)


def test_alpha_hand_computed_case():
    # Krippendorff's example (Computing Krippendorff's Alpha-Reliability, 2011, section C): nominal alpha = 0.743.
    n = np.nan
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    table = long_table(np.array(data).T)
    assert stats.krippendorff_alpha(table, level="nominal")["alpha"] == pytest.approx(0.743, abs=0.001)


def test_wilcoxon_matches_scipy_and_the_effect_size_sign():
    rng = np.random.default_rng(7)
    participants = np.arange(40)
    a = np.clip(np.round(rng.normal(4, 0.8, 40)), 1, 5)
    b = np.clip(np.round(a - rng.integers(0, 3, 40) + rng.normal(0, 0.4, 40)), 1, 5)
    table = pd.concat(
        [
            pd.DataFrame({"participant": participants, "variant": "A", "score": a}),
            pd.DataFrame({"participant": participants, "variant": "B", "score": b}),
        ]
    )
    result = stats.paired_comparison(table, "A", "B")
    reference = scipy_stats.wilcoxon(a, b, zero_method="wilcox")
    assert result["p_value"] == pytest.approx(reference.pvalue, abs=1e-12) and result["statistic"] == pytest.approx(
        reference.statistic
    )
    assert result["rank_biserial"] > 0.5 and result["mean_difference"] > 0


def test_bootstrap_ci_covers_the_mean_and_shrinks_with_more_items():
    rng = np.random.default_rng(3)
    small = rng.integers(1, 6, 20).astype(float)
    large = rng.integers(1, 6, 2000).astype(float)
    low_s, high_s = stats.bootstrap_mean_ci(small, np.arange(20))
    low_l, high_l = stats.bootstrap_mean_ci(large, np.arange(2000))
    assert low_s <= small.mean() <= high_s and low_l <= large.mean() <= high_l
    assert (high_l - low_l) < (high_s - low_s) / 5


def test_bradley_terry_orders_variants_and_has_cis():
    outcomes = pd.DataFrame(
        {
            "item": np.arange(60),
            "dimension": "overall",
            "variant_a": "grounded",
            "variant_b": "llm",
            "winner": ["a"] * 45 + ["tie"] * 5 + ["b"] * 10,
        }
    )
    result = stats.pairwise_summary(outcomes)[0]
    strengths = {row["variant"]: row for row in result["strengths"]}
    assert strengths["grounded"]["strength"] > strengths["llm"]["strength"]
    assert strengths["grounded"]["ci_low"] > 0 > strengths["llm"]["ci_high"]
    assert (result["a_wins"], result["ties"], result["b_wins"]) == pytest.approx((0.75, 5 / 60, 10 / 60))


def test_tiny_inputs_say_not_enough_instead_of_nan():
    table = long_table(np.array([[3.0, 4.0]]))
    assert stats.krippendorff_alpha(table)["enough"] is False
    assert stats.icc(table)["enough"] is False
    assert stats.paired_comparison(table, "v", "w")["enough"] is False
    means = stats.dimension_means(table.iloc[:1], {"safety": [1, 2, 3, 4, 5]})
    assert means[0]["enough"] is False and "mean" not in means[0]


def test_the_large_sample_interval_agrees_with_the_bootstrap():
    rng = np.random.default_rng(5)
    clusters = np.repeat(np.arange(2500), 3)
    values = np.clip(np.round(rng.normal(3, 1, 2500).repeat(3) + rng.normal(0, 0.7, 7500)), 1, 5)
    boot = stats.bootstrap_mean_ci(values, clusters)  # 2,500 items: bootstrapped
    sums, counts = np.bincount(clusters, weights=values), np.bincount(clusters).astype(float)
    normal = stats.cluster_normal_ci(sums, counts)
    assert normal == pytest.approx(boot, abs=0.01)


@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
def test_the_fast_wilcoxon_gives_scipys_statistic_and_p_value(alternative):
    """Means of Likert ratings (ties, zeros) for 5 to 20 pairs: scipy's permutation test below 14, its normal
    approximation above; the fast path must agree with scipy wherever it is taken."""
    from scipy import stats as scipy_stats

    from evaluation.stats import wilcoxon

    rng = np.random.default_rng(7)
    for _ in range(50):  # scipy's permutation path takes ~0.2 s a sample: 50 keep this test a few seconds
        n = int(rng.integers(5, 21))
        raters = int(rng.integers(1, 4))
        differences = rng.integers(1, 6, (n, raters)).mean(axis=1) - rng.integers(1, 6, (n, raters)).mean(axis=1)
        if not differences.any():
            continue
        ours = wilcoxon(differences, alternative=alternative)
        theirs = scipy_stats.wilcoxon(differences, zero_method="wilcox", alternative=alternative)
        assert ours.statistic == pytest.approx(float(theirs.statistic))
        assert ours.pvalue == pytest.approx(float(theirs.pvalue), abs=1e-12), differences
