"""The judge against the clinicians, and what it buys (issue 22): per dimension and per criterion category, the
agreement of the judge with a clinician beside the agreement of two clinicians on the same items (the ceiling a judge
is read against), and per variant the prediction-powered estimates (evaluation.ppi) beside the clinician-only and
judge-only ones. Reads the study's latest finished judge run; researchers only."""

import itertools
from typing import Any

import krippendorff
import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import cohen_kappa_score

from evaluation import ppi
from evaluation.criteria import CATEGORIES, healthbench_score, item_criteria
from evaluation.models import JudgeGrade, JudgeRun, Study

MIN_PAIRS = 5


def latest_run(study: Study) -> JudgeRun | None:
    """The latest finished run that graded something (a run whose backend was down does not hide a good one)."""
    return (
        JudgeRun.objects.filter(study=study, finished_at__isnull=False, graded__gt=0)
        .order_by("-finished_at", "-pk")
        .first()
    )


def _kappa(first: list[Any], second: list[Any], *, weights: str | None, labels: list[Any]) -> float | None:
    """κ with the scale's labels (so 2 and 4 are two points apart even when no one chose 3, and the judge's κ and the
    ceiling weigh alike)."""
    if len(first) < MIN_PAIRS or len(set(first) | set(second)) < 2:
        return None
    value = cohen_kappa_score(first, second, weights=weights, labels=labels)
    return None if np.isnan(value) else float(value)


def _spearman(first: list[float], second: list[float]) -> float | None:
    if len(first) < MIN_PAIRS or len(set(first)) < 2 or len(set(second)) < 2:
        return None
    return float(stats.spearmanr(first, second).statistic)


def _alpha(first: list[float], second: list[float]) -> float | None:
    if len(first) < MIN_PAIRS or len(set(first) | set(second)) < 2:
        return None
    return float(
        krippendorff.alpha(reliability_data=np.array([first, second], dtype=float), level_of_measurement="interval")
    )


def _agreement(
    judge: dict[Any, Any], clinicians: dict[Any, list[Any]], *, weights: str | None, labels: list[Any]
) -> dict[str, Any]:
    """Judge against one clinician, and one clinician against another, on the items two clinicians rated (the same
    items for both, so the ceiling is comparable): κ, Spearman and α. The first two raters of each item, in order."""
    judge_pairs: tuple[list[Any], list[Any]] = ([], [])
    ceiling_pairs: tuple[list[Any], list[Any]] = ([], [])
    for item, given in clinicians.items():
        if item in judge and len(given) >= 2:
            judge_pairs[0].append(judge[item])
            judge_pairs[1].append(given[0])
            ceiling_pairs[0].append(given[0])
            ceiling_pairs[1].append(given[1])
    numeric = weights is not None
    return {
        "items": len(judge_pairs[0]),
        "judge_kappa": _kappa(*judge_pairs, weights=weights, labels=labels),
        "ceiling_kappa": _kappa(*ceiling_pairs, weights=weights, labels=labels),
        "judge_spearman": _spearman(*judge_pairs) if numeric else None,
        "ceiling_spearman": _spearman(*ceiling_pairs) if numeric else None,
        "judge_alpha": _alpha(*judge_pairs) if numeric else None,
        "ceiling_alpha": _alpha(*ceiling_pairs) if numeric else None,
    }


def expected_calibration_error(
    probabilities: dict[Any, float], clinicians: dict[Any, list[Any]], *, bins: int = 10
) -> dict[str, Any]:
    """The judge's calibration on criteria met: on the criteria a clinician graded, the judge's probability against
    the share of clinicians who found it met, in ``bins`` equal-width bins; ECE is the items-weighted mean gap (0 =
    calibrated), Brier the mean squared gap. None below MIN_PAIRS graded criteria."""
    pairs = [
        (probabilities[key], float(np.mean([bool(g) for g in given if g is not None])))
        for key, given in clinicians.items()
        if key in probabilities and any(g is not None for g in given)
    ]
    if len(pairs) < MIN_PAIRS:
        return {"calibration_items": len(pairs), "ece": None, "brier": None}
    predicted, observed = np.array(pairs).T
    which = np.minimum((predicted * bins).astype(int), bins - 1)
    ece = sum(
        abs(predicted[which == b].mean() - observed[which == b].mean()) * (which == b).sum()
        for b in range(bins)
        if (which == b).any()
    ) / len(pairs)
    return {
        "calibration_items": len(pairs),
        "ece": float(ece),
        "brier": float(np.mean((predicted - observed) ** 2)),
    }


def judge_report(study: Study, per_rating: pd.DataFrame) -> dict[str, Any] | None:
    """None without a finished judge run. ``per_rating`` is study_ratings(study) (main-queue ratings)."""
    run = latest_run(study)
    if run is None:
        return None
    grades = list(
        JudgeGrade.objects.filter(run=run, status=JudgeGrade.Status.GRADED).values_list(
            "item_id", "item__variant_a__name", "scores", "criteria"
        )
    )
    probabilities_of = dict(
        JudgeGrade.objects.filter(run=run, status=JudgeGrade.Status.GRADED).values_list("item_id", "probabilities")
    )
    variant_of = {item: variant for item, variant, _, _ in grades}
    # Items the judge failed on stay in the population: they get the cell's mean judge grade as their prediction
    # (so the estimand stays "every item", not "items the judge could grade").
    failed_of = dict(
        JudgeGrade.objects.filter(run=run, status=JudgeGrade.Status.FAILED).values_list(
            "item_id", "item__variant_a__name"
        )
    )
    dimensions = [d for d in study.rubric.dimensions.all() if d.is_scored]
    clinician_scores: dict[str, dict[int, list[float]]] = {d.key: {} for d in dimensions}
    clinician_grades: dict[int, list[dict[str, bool]]] = {}
    for item, scores, criteria in per_rating[["item", "scores", "criteria"]].itertuples(index=False):
        for key, value in (scores or {}).items():
            if key in clinician_scores:
                clinician_scores[key].setdefault(int(item), []).append(float(value))
        if criteria:
            clinician_grades.setdefault(int(item), []).append(criteria)

    agreement = []
    for dimension in dimensions:
        judge = {item: scores[dimension.key] for item, _, scores, _ in grades if dimension.key in scores}
        agreement.append(
            {
                "dimension": dimension.key,
                "label": dimension.label,
                **_agreement(judge, clinician_scores[dimension.key], weights="quadratic", labels=dimension.points),
            }
        )
    criteria_by_item = item_criteria(study)
    for category, label in CATEGORIES.items():
        judge_met: dict[Any, Any] = {}
        judge_probability: dict[Any, float] = {}
        clinician_met: dict[Any, list[Any]] = {}
        for item, _, _, criteria in grades:
            for criterion in criteria_by_item.get(item, []):
                if criterion.category == category and str(criterion.position) in criteria:
                    judge_met[(item, criterion.position)] = criteria[str(criterion.position)]
                    probability = (probabilities_of.get(item) or {}).get(str(criterion.position))
                    if probability is not None:
                        judge_probability[(item, criterion.position)] = float(probability)
        for item, given in clinician_grades.items():
            for criterion in criteria_by_item.get(item, []):
                if criterion.category == category:
                    clinician_met[(item, criterion.position)] = [g.get(str(criterion.position)) for g in given]
        if judge_met:
            agreement.append(
                {
                    "dimension": f"criteria:{category}",
                    "label": f"Criteria: {label}",
                    **_agreement(judge_met, clinician_met, weights=None, labels=[False, True]),
                    **(expected_calibration_error(judge_probability, clinician_met) if judge_probability else {}),
                }
            )

    estimates = []
    for variant in sorted(set(variant_of.values())):
        cells: list[tuple[str, str, dict[int, float], dict[int, list[float]]]] = []
        for dimension in dimensions:
            judge = {
                item: float(scores[dimension.key])
                for item, v, scores, _ in grades
                if v == variant and dimension.key in scores
            }
            cells.append((dimension.key, dimension.label, judge, clinician_scores[dimension.key]))
        judge_criteria: dict[int, float] = {}
        clinician_criteria: dict[int, list[float]] = {}
        for item, v, _, criteria in grades:
            points = [c.points for c in criteria_by_item.get(item, [])]
            if v == variant and points and len(criteria) == len(points):
                score = healthbench_score(points, [criteria[str(c.position)] for c in criteria_by_item[item]])
                if score is not None:
                    judge_criteria[item] = score
        for item, given in clinician_grades.items():
            if variant_of.get(item) == variant and item in criteria_by_item:
                points = [c.points for c in criteria_by_item[item]]
                for graded in given:
                    if len(graded) == len(points):
                        score = healthbench_score(points, [graded[str(c.position)] for c in criteria_by_item[item]])
                        if score is not None:
                            clinician_criteria.setdefault(item, []).append(score)
        if judge_criteria:
            cells.append(("criterion_score", "Criterion score", judge_criteria, clinician_criteria))
        for key, label, judge, clinicians in cells:
            if not judge:
                continue
            stand_in = float(np.mean(list(judge.values())))
            predicted = {**{item: stand_in for item, v in failed_of.items() if v == variant}, **judge}
            rated = [item for item in predicted if item in clinicians]
            unrated = [item for item in predicted if item not in clinicians]
            cell = ppi.estimates(
                [float(np.mean(clinicians[item])) for item in rated],
                [predicted[item] for item in rated],
                [predicted[item] for item in unrated],
            )
            estimates.append({"variant": variant, "dimension": key, "label": label, "rated": len(rated), **cell})

    differences = []
    variants = sorted(set(variant_of.values()))
    for first, second in itertools.combinations(variants, 2):
        for key in [d.key for d in dimensions] + ["criterion_score"]:
            rows = {row["variant"]: row for row in estimates if row["dimension"] == key}
            if first in rows and second in rows and rows[first]["ppi"] and rows[second]["ppi"]:
                a, b = (
                    ppi.Estimate(**{k: rows[v]["ppi"][k] for k in ("mean", "low", "high", "n")})
                    for v in (first, second)
                )
                diff = ppi.difference(a, b)
                if diff is not None:
                    differences.append({"variants": [first, second], "dimension": key, **diff.as_dict()})
    return {
        "run": {
            "pk": run.pk,
            "model": run.model,
            "backend": run.backend,
            "prompt_version": run.prompt_version,
            "graded": run.graded,
            "failed": run.failed,
            "finished_at": run.finished_at,
        },
        "failures": list(
            JudgeGrade.objects.filter(run=run, status=JudgeGrade.Status.FAILED)
            .order_by("item__position")
            .values_list("item__position", "reason")[:10]
        ),
        "agreement": agreement,
        "paired_items": max((row["items"] for row in agreement), default=0),
        "estimates": estimates,
        "differences": differences,
    }
