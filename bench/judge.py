"""``python -m bench judge``: does a judge calibrated against clinicians by prediction-powered inference give valid,
narrower intervals? A simulation with known truth (issue 22).

Each repetition draws 2,000 items of three variants, each item in one of five criterion categories, with a true
score (the mean a clinician would give). Clinicians rate a random 300 of them, two per item, with noise; a judge
grades every item with noise and a bias that depends on the category (HealthBench's audit found model graders off by
category even when the overall mean was calibrated). Per category, 95 % intervals of the mean true score from:
the clinicians alone (300 items), the judge alone (2,000 items), the judge calibrated by one overall offset
(the overall-mean fix that leaves categories wrong), and prediction-powered inference (evaluation.ppi, ``ppi-python``).
Over 500 repetitions: each interval's coverage of the truth and its width.

Nothing here is tuned to make an estimator win: the numbers below are set once, before any run.
"""

from typing import Any

import numpy as np

from evaluation import ppi

ITEMS = 2000
RATED = 300
REPETITIONS = 500
CLINICIANS_PER_ITEM = 2
CATEGORIES = ("accuracy", "completeness", "context_awareness", "communication", "safety")
VARIANT_MEANS = np.array([3.6, 3.2, 2.8])  # on a 1-5 scale
CATEGORY_OFFSETS = np.array([0.2, -0.1, -0.3, 0.3, 0.0])
JUDGE_BIAS = np.array([0.3, -0.25, 0.6, 0.05, -0.5])  # by category
ITEM_SD = 0.8  # items of one variant and category differ
CLINICIAN_SD = 0.7  # one clinician's rating around the item's true score
JUDGE_SD = 0.5  # the judge's noise around its biased grade
SEED = 22


def _repetition(rng: np.random.Generator) -> dict[str, list[dict[str, Any]]]:
    variant = rng.integers(0, len(VARIANT_MEANS), ITEMS)
    category = rng.integers(0, len(CATEGORIES), ITEMS)
    truth = VARIANT_MEANS[variant] + CATEGORY_OFFSETS[category] + rng.normal(0, ITEM_SD, ITEMS)
    judge = truth + JUDGE_BIAS[category] + rng.normal(0, JUDGE_SD, ITEMS)
    rated = np.zeros(ITEMS, dtype=bool)
    rated[rng.choice(ITEMS, RATED, replace=False)] = True
    clinician = truth + rng.normal(0, CLINICIAN_SD, (CLINICIANS_PER_ITEM, ITEMS)).mean(axis=0)
    offset = float(np.mean(judge[rated] - clinician[rated]))  # one calibration of the overall mean
    rows = []
    for index in range(len(CATEGORIES)):
        cell = category == index
        target = float(VARIANT_MEANS.mean() + CATEGORY_OFFSETS[index])  # items are drawn evenly over variants
        y, yhat, unrated = clinician[cell & rated], judge[cell & rated], judge[cell & ~rated]
        estimates = {
            "clinician": ppi.clinician_only(y),
            "judge": ppi.judge_only(yhat, unrated),
            "ppi": ppi.prediction_powered(y, yhat, unrated),
        }
        judge_estimate = estimates["judge"]
        assert judge_estimate is not None
        estimates["judge_calibrated_overall"] = ppi.Estimate(
            judge_estimate.mean - offset, judge_estimate.low - offset, judge_estimate.high - offset, judge_estimate.n
        )
        rows.append(
            {
                "category": CATEGORIES[index],
                "rated": len(y),
                "effective_n": ppi.effective_sample_size(estimates["clinician"], estimates["ppi"]),
                **{
                    name: {"covered": estimate.low <= target <= estimate.high, "width": estimate.width}
                    for name, estimate in estimates.items()
                    if estimate is not None
                },
            }
        )
    return {"categories": rows}


PILOT = 60  # of the 300 clinician ratings: a uniform pilot that estimates where the judge errs, before choosing


def _active_repetition(rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    """The whole study's mean (every category) from 300 clinician-rated items chosen two ways: uniformly at random,
    or actively (a uniform pilot of 60, then 240 drawn with probability rising with the judge's mean squared error in
    the item's category, measured on the pilot; half uniform, half proportional, as Zrnic & Candès advise). Both
    estimated by the same inverse-probability-weighted estimator (ppi.active_mean)."""
    variant = rng.integers(0, len(VARIANT_MEANS), ITEMS)
    category = rng.integers(0, len(CATEGORIES), ITEMS)
    truth = VARIANT_MEANS[variant] + CATEGORY_OFFSETS[category] + rng.normal(0, ITEM_SD, ITEMS)
    judge = truth + JUDGE_BIAS[category] + rng.normal(0, JUDGE_SD, ITEMS)
    clinician = truth + rng.normal(0, CLINICIAN_SD, (CLINICIANS_PER_ITEM, ITEMS)).mean(axis=0)
    target = float(VARIANT_MEANS.mean() + CATEGORY_OFFSETS.mean())
    results = {}
    uniform = np.full(ITEMS, RATED / ITEMS)
    results["random"] = ppi.active_mean(judge, clinician, rng.random(ITEMS) < uniform, uniform)
    pilot_probability = PILOT / ITEMS
    pilot = rng.random(ITEMS) < pilot_probability
    error = np.array(
        [
            np.mean((clinician[pilot & (category == c)] - judge[pilot & (category == c)]) ** 2)
            if np.any(pilot & (category == c))
            else np.mean((clinician[pilot] - judge[pilot]) ** 2)
            for c in range(len(CATEGORIES))
        ]
    )
    weight = np.sqrt(error[category])  # sampling proportional to the error's RMS minimises the variance
    budget = RATED - PILOT
    chosen = np.minimum(0.5 * budget / ITEMS + 0.5 * budget * weight / weight.sum(), 1.0)
    second = rng.random(ITEMS) < chosen
    # An item is rated if the pilot or the second draw took it; its probability of that is known in advance.
    probability = 1 - (1 - pilot_probability) * (1 - chosen)
    results["active"] = ppi.active_mean(judge, clinician, pilot | second, probability)
    return {
        name: {"covered": e.low <= target <= e.high, "width": e.width, "rated": e.n}
        for name, e in results.items()
        if e is not None
    }


def run() -> dict[str, Any]:
    rng = np.random.default_rng(SEED)
    repetitions = [_repetition(rng) for _ in range(REPETITIONS)]
    methods = ("clinician", "judge", "judge_calibrated_overall", "ppi")
    per_category = []
    for index, name in enumerate(CATEGORIES):
        rows = [repetition["categories"][index] for repetition in repetitions]
        entry: dict[str, Any] = {"category": name, "judge_bias": float(JUDGE_BIAS[index])}
        for method in methods:
            covered = np.array([row[method]["covered"] for row in rows], dtype=float)
            entry[f"{method}_coverage"] = round(float(covered.mean()), 4)
            # Monte Carlo error of a coverage near 0.95 over 500 repetitions: about 0.01.
            entry[f"{method}_coverage_se"] = round(float(np.sqrt(covered.mean() * (1 - covered.mean()) / len(rows))), 4)
            entry[f"{method}_width"] = round(float(np.mean([row[method]["width"] for row in rows])), 4)
        entry["width_ratio_ppi_to_clinician"] = round(
            float(np.mean([row["ppi"]["width"] / row["clinician"]["width"] for row in rows])), 4
        )
        entry["rated_items"] = round(float(np.mean([row["rated"] for row in rows])), 1)
        entry["effective_n"] = round(float(np.mean([row["effective_n"] for row in rows])), 1)
        per_category.append(entry)
    active_rng = np.random.default_rng(SEED + 1)
    active = [_active_repetition(active_rng) for _ in range(REPETITIONS)]
    selection = {
        name: {
            "coverage": round(float(np.mean([row[name]["covered"] for row in active])), 4),
            "width": round(float(np.mean([row[name]["width"] for row in active])), 4),
            "rated_items": round(float(np.mean([row[name]["rated"] for row in active])), 1),
        }
        for name in ("random", "active")
    }
    selection["width_ratio_active_to_random"] = round(selection["active"]["width"] / selection["random"]["width"], 4)
    return {
        "selection": selection,
        "setup": {
            "items": ITEMS,
            "rated_items": RATED,
            "clinicians_per_rated_item": CLINICIANS_PER_ITEM,
            "repetitions": REPETITIONS,
            "variant_means": VARIANT_MEANS.tolist(),
            "category_offsets": dict(zip(CATEGORIES, CATEGORY_OFFSETS.tolist(), strict=True)),
            "judge_bias": dict(zip(CATEGORIES, JUDGE_BIAS.tolist(), strict=True)),
            "sd": {"item": ITEM_SD, "clinician": CLINICIAN_SD, "judge": JUDGE_SD},
            "nominal_coverage": 1 - ppi.ALPHA,
            "seed": SEED,
        },
        "ppi_coverage_min": min(entry["ppi_coverage"] for entry in per_category),
        "judge_only_coverage_min": min(entry["judge_coverage"] for entry in per_category),
        "judge_calibrated_overall_coverage_min": min(
            entry["judge_calibrated_overall_coverage"] for entry in per_category
        ),
        "clinician_coverage_min": min(entry["clinician_coverage"] for entry in per_category),
        "width_ratio_ppi_to_clinician": round(
            float(np.mean([entry["width_ratio_ppi_to_clinician"] for entry in per_category])), 4
        ),
        "effective_n_per_rated_item": round(
            float(np.mean([entry["effective_n"] / entry["rated_items"] for entry in per_category])), 3
        ),
        "categories": per_category,
    }
