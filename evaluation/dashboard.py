"""The researcher's dashboard of a study: tables of ratings in, every section of the page out.

``study_ratings`` reads the study's ratings in one query; ``dashboard_from_frames`` computes every
number and figure from them (pure, so the benchmark can time it on synthetic data).
"""

import dataclasses
import itertools
import json
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from evaluation import quality, stats
from evaluation.criteria import study_criterion_scores
from evaluation.evidence import DIFFERENT_EVIDENCE_IOU, evidence_agreement
from evaluation.judge_report import judge_report
from evaluation.models import Assignment, Dimension, Incident, Protocol, Rating, Study
from evaluation.rater_report import (
    QualityInputs,
    alpha_over_time,
    flagged_raters,
    rater_quality,
    strata,
    study_quality_inputs,
)
from evaluation.selectors import ratings_needed
from evaluation.triage import TRIGGERS, item_variants, unresolved_by_variant

CAPTIONS = {
    "means": "Mean score per variant and dimension; bars are 95 % bootstrap confidence intervals that resample items.",
    "distribution": "How often each score was given, per variant and dimension.",
    "agreement": "Inter-rater reliability per dimension: Krippendorff's α (ordinal) on all items rated twice or more; "
    "ICC1 (one-way random) and ICC2 (two-way random, absolute agreement) on items with the usual number of ratings.",
    "comparisons": "Paired Wilcoxon signed-rank tests on participants rated for both variants (mean score per participant); "
    "effect size is the matched-pairs rank-biserial correlation (positive: the first variant scores higher); "
    "p-values adjusted by Benjamini–Hochberg across all tests shown.",
    "pairwise": "Share of judgements won by each side, and Bradley–Terry strengths (log scale) with 95 % bootstrap intervals over items.",
    "raters": "Per clinician: ratings, median seconds per item, mean score, and mean absolute difference from the other raters of the same items.",
    "completion": "Ratings submitted against the ratings the study needs (items × raters per item).",
    "unsafe": "Answers a clinician flagged as unsafe, with the reason they gave.",
    "skips": "Items a clinician skipped, with the reason they gave (a skip frees the item for another clinician).",
    "adjudication": "Items whose raters disagree most: the largest score range on any dimension.",
    "quality": "Per clinician: gold accuracy (share of gold items within the reference's tolerance) with a 95 % Wilson "
    "interval; mean absolute difference from the other raters of the same items; the change in Krippendorff's α "
    "(mean over dimensions) when the clinician is left out (positive: α rises without them); self-consistency on "
    "hidden repeats (share scored the same, mean absolute difference); median seconds per item and ratings faster "
    "than the study's minimum; ability (probability of the majority-consistent label) from a Dawid–Skene model "
    "(crowd-kit) of the ratings' rounded mean scores (pairwise: the overall choices), which also gives each item's "
    "difficulty (1 − the largest posterior of its label); and the clinician's state.",
    "over_time": "Krippendorff's α per dimension in each week of the study's calendar (weeks with at least 10 items "
    "rated twice or more); dotted lines mark changes of the study (opened, reopened, instructions changed).",
    "strata": "Mean score per variant within each group of the chosen background answer (95 % bootstrap intervals "
    "over items).",
}
COLUMNS = [
    "rating",
    "item",
    "rater",
    "variant_a",
    "variant_b",
    "participant",
    "scores",
    "preference",
    "time_spent_s",
    "unsafe",
    "unsafe_reason",
    "comment",
    "swapped",
    "revision",
    "rated_at",
    "revised_at",
    "harm",
    "evidence",
    "criteria",
]
SKIP_COLUMNS = [
    "assignment",
    "item",
    "rater",
    "variant_a",
    "variant_b",
    "participant",
    "skip_reason",
    "skipped_at",
    "time_spent_s",
]


def study_ratings(study: Study) -> pd.DataFrame:
    """One row per rating of a results item (main queue; never training, qualification, gold or repeats) with its
    item's variants (researchers see them), in one query."""
    rows = (
        Rating.objects.filter(assignment__study=study, assignment__purpose=Assignment.Purpose.MAIN)
        .order_by("pk")  # a stable order: "the first two raters of an item" stay the same (judge_report)
        .values_list(
            "pk",
            "assignment__item_id",
            "assignment__rater__username",
            "assignment__item__variant_a__name",
            "assignment__item__variant_b__name",
            "assignment__item__participant__pseudonym",
            "scores",
            "preference",
            "assignment__time_spent_s",
            "unsafe",
            "unsafe_reason",
            "comment",
            "assignment__swapped",
            "revision",
            "created_at",
            "updated_at",
            "harm",
            "evidence",
            "criteria",
        )
    )
    return pd.DataFrame(list(rows), columns=COLUMNS)


def study_skips(study: Study) -> pd.DataFrame:
    """One row per skipped assignment with the clinician's reason, in one query."""
    rows = (
        Assignment.objects.filter(study=study, state=Assignment.State.SKIPPED, purpose=Assignment.Purpose.MAIN)
        .order_by("completed_at", "pk")
        .values_list(
            "pk",
            "item_id",
            "rater__username",
            "item__variant_a__name",
            "item__variant_b__name",
            "item__participant__pseudonym",
            "skip_reason",
            "completed_at",
            "time_spent_s",
        )
    )
    return pd.DataFrame(list(rows), columns=SKIP_COLUMNS)


def long_scores(per_rating: pd.DataFrame) -> pd.DataFrame:
    """One row per rating and dimension: the table the statistics take."""
    if per_rating.empty:
        return pd.DataFrame(columns=["rating", "item", "rater", "variant", "participant", "dimension", "score"])
    scores = pd.DataFrame(per_rating["scores"].tolist(), index=per_rating.index)
    long = scores.stack().rename("value").reset_index(level=1).rename(columns={"level_1": "dimension"})
    long = long.join(per_rating[["rating", "item", "rater", "variant_a", "variant_b", "participant"]])
    return long.rename(columns={"variant_a": "variant"})


def _figure_json(figure: go.Figure) -> str:
    return figure.to_json()


def _means_figure(means: list[dict]) -> str | None:
    usable = [row for row in means if row.get("enough")]
    if not usable:
        return None
    figure = go.Figure()
    for variant in sorted({row["variant"] for row in usable}):
        rows = [row for row in usable if row["variant"] == variant]
        figure.add_trace(
            go.Bar(
                name=variant,
                x=[row["dimension"] for row in rows],
                y=[row["mean"] for row in rows],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [row["ci_high"] - row["mean"] for row in rows],
                    "arrayminus": [row["mean"] - row["ci_low"] for row in rows],
                },
                hovertemplate="%{x}: %{y:.2f}<extra>" + variant + "</extra>",
            )
        )
    figure.update_layout(
        barmode="group",
        height=320,
        margin={"l": 50, "r": 20, "t": 20, "b": 40},
        template="plotly_white",
        yaxis={"title": "mean score", "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.2},
    )
    return _figure_json(figure)


def _distribution_figure(means: list[dict]) -> str | None:
    if not means:
        return None
    figure = go.Figure()
    points = sorted({point for row in means for point in row["distribution"]}, key=int)
    labels = [f"{row['variant']} · {row['dimension']}" for row in means]
    for point in points:
        figure.add_trace(
            go.Bar(
                name=f"score {point}", y=labels, x=[row["distribution"].get(point, 0) for row in means], orientation="h"
            )
        )
    figure.update_layout(
        barmode="stack",
        height=60 + 28 * len(labels),
        margin={"l": 220, "r": 20, "t": 10, "b": 30},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.15},
    )
    return _figure_json(figure)


def _pairwise_figure(summary: list[dict], first: str, second: str) -> str | None:
    if not summary:
        return None
    figure = go.Figure()
    dimensions = [row["dimension"] for row in summary]
    for key, label in (("a_wins", f"{first} wins"), ("ties", "tie"), ("b_wins", f"{second} wins")):
        figure.add_trace(go.Bar(name=label, y=dimensions, x=[row[key] for row in summary], orientation="h"))
    figure.update_layout(
        barmode="stack",
        height=80 + 40 * len(dimensions),
        margin={"l": 120, "r": 20, "t": 10, "b": 30},
        template="plotly_white",
        xaxis={"tickformat": ".0%"},
        legend={"orientation": "h", "y": -0.2},
    )
    return _figure_json(figure)


def _pairwise_outcomes(per_rating: pd.DataFrame) -> pd.DataFrame:
    long = long_scores(per_rating).rename(columns={"value": "winner"})
    overall = (
        per_rating[["item", "variant_a", "variant_b", "preference"]]
        .rename(columns={"preference": "winner"})
        .assign(dimension="overall")
    )
    return pd.concat([long.rename(columns={"variant": "variant_a"}), overall], ignore_index=True)


def dashboard_from_frames(
    *,
    mode: str,
    per_rating: pd.DataFrame,
    points: dict[str, list[int]],
    ratings_needed: int,
    quality_inputs: QualityInputs | None = None,
    exclude: frozenset[str] = frozenset(),
    stratify: str = "",
) -> dict:
    """Every section of the dashboard, from the ratings table. Sections without enough data say so. With
    ``quality_inputs``, the rater-quality table, agreement over time and the exclusions: the ratings the rules in
    ``exclude`` flag are kept in the table and left out of every statistic, which says how many it used."""
    result: dict[str, Any] = {
        "n_ratings": len(per_rating),
        "n_raters": int(per_rating["rater"].nunique()) if len(per_rating) else 0,
        "completion": {"done": len(per_rating), "needed": ratings_needed},
        "captions": CAPTIONS,
    }
    if per_rating.empty:
        result["empty"] = "Not enough ratings yet: the dashboard fills in as clinicians submit."
        return result
    if quality_inputs is not None:
        pairwise = mode == Study.Mode.PAIRWISE
        all_long = long_scores(per_rating.head(0) if pairwise else per_rating).rename(columns={"value": "score"})
        all_long["score"] = all_long["score"].astype(float)
        rows, below_gold, paused, hardest = rater_quality(
            per_rating=per_rating, long=all_long, inputs=quality_inputs, points=points, pairwise=pairwise
        )
        result["quality"], result["hardest_items"] = rows, hardest
        if not pairwise:
            result["over_time"] = alpha_over_time(all_long, per_rating, points, quality_inputs.changes)
            result["over_time_figure"] = result["over_time"].pop("figure")
        flagged = quality.exclusions(
            per_rating,
            below_gold=below_gold,
            paused=paused,
            min_seconds=quality_inputs.min_seconds,
        )
        result["exclusion_counts"] = {rule: int(flagged.str.contains(rule).sum()) for rule in quality.EXCLUSION_RULES}
        chosen = flagged.map(lambda reasons: bool(set(reasons.split(",")) & exclude) if reasons else False)
        result["used"] = {"ratings": int((~chosen).sum()), "excluded": int(chosen.sum()), "rules": sorted(exclude)}
        per_rating = per_rating[~chosen]
        result["used_ids"] = frozenset(per_rating["rating"])  # study_dashboard passes them on, then drops them
        if per_rating.empty:
            result["empty"] = "Every rating is excluded by the rules chosen: switch one off to see results."
            return result
    result["unsafe"] = per_rating.loc[
        per_rating["unsafe"], ["item", "rater", "variant_a", "participant", "unsafe_reason", "comment"]
    ].to_dict("records")
    if mode == Study.Mode.PAIRWISE:
        summary = stats.pairwise_summary(_pairwise_outcomes(per_rating))
        # A pairwise study compares one pair of variants on every item: name them wherever wins are counted.
        first, second = per_rating["variant_a"].iloc[0], per_rating["variant_b"].iloc[0]
        result["pairwise"] = summary
        result["pairwise_variants"] = {"first": first, "second": second}
        result["pairwise_figure"] = _pairwise_figure(summary, first, second)
        return result

    long = long_scores(per_rating).rename(columns={"value": "score"})
    long["score"] = long["score"].astype(float)
    means = stats.dimension_means(long, points)
    result["means"] = means
    result["means_figure"] = _means_figure(means)
    result["distribution_figure"] = _distribution_figure(means)
    result["agreement"] = []
    for dimension, group in long.groupby("dimension", sort=True):
        result["agreement"].append(
            {
                "dimension": dimension,
                "alpha": stats.krippendorff_alpha(group, value_domain=points.get(dimension)),
                "icc": stats.icc(group),
            }
        )
    comparisons = []
    variants = sorted(long["variant"].unique())
    for first, second in itertools.combinations(variants, 2):
        for dimension, group in long.groupby("dimension", sort=True):
            comparisons.append(
                {
                    "first": first,
                    "second": second,
                    "dimension": dimension,
                    **stats.paired_comparison(group, first, second),
                }
            )
    tested = [row for row in comparisons if row.get("enough")]
    for row, adjusted in zip(tested, stats.adjust_p_values([row["p_value"] for row in tested]), strict=True):
        row["p_adjusted"] = adjusted
    result["comparisons"] = comparisons
    result["raters"] = stats.rater_summary(long, per_rating)
    result["adjudication"] = stats.adjudication_queue(long)
    if stratify and quality_inputs is not None:
        result["strata"] = strata(long, quality_inputs, stratify, points)
        result["stratify"] = stratify
    return result


def study_dashboard(study: Study, *, exclude: frozenset[str] = frozenset(), stratify: str = "") -> dict:
    per_rating = study_ratings(study)
    dimensions = [dimension for dimension in study.rubric.dimensions.all() if dimension.is_scored]
    points = {dimension.key: dimension.points for dimension in dimensions}
    background_keys = [field["key"] for field in study.background_fields]
    dashboard = dashboard_from_frames(
        mode=study.mode,
        per_rating=per_rating,
        points=points,
        ratings_needed=ratings_needed(study),
        quality_inputs=study_quality_inputs(study),
        exclude=exclude & set(quality.EXCLUSION_RULES),
        stratify=stratify if stratify in background_keys else "",
    )
    protocol = Protocol.objects.filter(study=study).select_related("primary_variant_a", "primary_variant_b").first()
    if protocol is not None:
        dashboard["protocol"] = primary_analysis(
            protocol=protocol, per_rating=per_rating, quality_inputs=study_quality_inputs(study), mode=study.mode
        )
    dashboard["background_fields"] = study.background_fields
    for row in dashboard.get("quality", []):
        row["background_values"] = [row["background"].get(key, "—") for key in background_keys]
    dashboard["exclusion_rules"] = quality.EXCLUSION_RULES
    dashboard["in_progress"] = Assignment.objects.filter(study=study, state=Assignment.State.IN_PROGRESS).count()
    dashboard["skips"] = study_skips(study).to_dict("records")
    # Yes/no checklist items read as the share of "yes", not as a mean score.
    dashboard["binary_dimensions"] = [
        dimension.key for dimension in dimensions if dimension.scale == Dimension.Scale.BINARY
    ]
    # The safety triage (issue 21): the variants with unresolved incidents (the banner), and every incident.
    dashboard["unresolved_incidents"] = unresolved_by_variant(study)
    dashboard["incidents"] = [
        {
            "pk": incident.pk,
            "item": incident.item_id,
            "variants": item_variants(incident),
            "reasons": [TRIGGERS[reason] for reason in incident.reasons],
            "decision": incident.get_decision_display(),
            "open": not incident.decision,
            "opened_at": incident.opened_at,
        }
        for incident in Incident.objects.filter(study=study).select_related("item__variant_a", "item__variant_b")
    ]
    # Evidence: how often raters tie a dimension to windows of the data, and how much their windows agree.
    labels = {dimension.key: dimension.label for dimension in study.rubric.dimensions.all()}
    dashboard["evidence"] = evidence_agreement(per_rating, labels, seed=study.seed) if len(per_rating) else []
    dashboard["different_evidence_iou"] = DIFFERENT_EVIDENCE_IOU
    dashboard["different_evidence_any"] = any(row["different_evidence"] for row in dashboard["evidence"])
    # Per-item criteria and the judge (issue 22) use the ratings the exclusion switches keep, like every statistic.
    used_ids = dashboard.pop("used_ids", None)
    used = per_rating if used_ids is None else per_rating[per_rating["rating"].isin(used_ids)]
    dashboard["criterion_scores"] = study_criterion_scores(study, seed=study.seed, rating_ids=set(used["rating"]))
    dashboard["judge"] = judge_report(study, used) if study.mode == Study.Mode.ABSOLUTE else None
    return dashboard


def primary_analysis(
    *, protocol: Protocol, per_rating: pd.DataFrame, quality_inputs: QualityInputs, mode: str
) -> dict[str, Any]:
    """The pre-registered primary analysis, exactly as the protocol fixed it: its exclusion rules, its dimension, its
    two variants, its test and sides. Absolute studies: ``stats.paired_comparison`` (as the power analysis);
    pairwise: a binomial test of the first variant's wins among decided judgements on the dimension."""
    first, second = protocol.primary_variant_a.name, protocol.primary_variant_b.name
    if protocol.locked_at is not None:  # the rater rules as locked, whatever the study says now
        rules_locked = protocol.manifest.get("rater_rules", {})
        quality_inputs = dataclasses.replace(
            quality_inputs,
            threshold=rules_locked.get("pass_threshold", quality_inputs.threshold),
            gold_minimum=rules_locked.get("gold_minimum", quality_inputs.gold_minimum),
            min_seconds=rules_locked.get("min_seconds_per_item", quality_inputs.min_seconds),
        )
    below_gold, paused = flagged_raters(quality_inputs)
    rules = set(protocol.exclusion_rules)
    used = per_rating
    if len(per_rating) and rules:
        flagged = quality.exclusions(
            per_rating, below_gold=below_gold, paused=paused, min_seconds=quality_inputs.min_seconds, rules=rules
        )
        used = per_rating[flagged == ""]
    result: dict[str, Any] = {
        "locked": protocol.locked_at is not None,
        "sha256": protocol.manifest_sha256,
        "dimension": protocol.primary_dimension,
        "variants": [first, second],
        "test": protocol.get_primary_test_display() if mode != Study.Mode.PAIRWISE else "Binomial test of wins",
        "sided": protocol.sided,
        "alpha": protocol.alpha,
        "exclusion_rules": sorted(rules),
        "ratings_used": len(used),
        "ratings_excluded": len(per_rating) - len(used),
        "deviations": list(protocol.deviations.values("field", "before", "after", "reason", "created_at")),
    }
    if used.empty:
        return result | not_enough_yet("no ratings yet")
    if mode == Study.Mode.PAIRWISE:
        from scipy.stats import binomtest

        choices = used["scores"].map(lambda scores: scores.get(protocol.primary_dimension))
        forward = used["variant_a"] == first  # the item's A is the protocol's first variant
        wins_first = int(((choices == "a") & forward).sum() + ((choices == "b") & ~forward).sum())
        wins_second = int(((choices == "b") & forward).sum() + ((choices == "a") & ~forward).sum())
        if wins_first + wins_second < 5:
            return result | not_enough_yet(f"{wins_first + wins_second} decided judgement(s); at least 5 needed")
        test = binomtest(wins_first, wins_first + wins_second, 0.5, alternative=protocol.sided)
        return result | {
            "enough": True,
            "estimate": wins_first / (wins_first + wins_second),
            "estimate_words": f"{first} wins {wins_first} of {wins_first + wins_second} decided judgements",
            "p_value": float(test.pvalue),
            "significant": float(test.pvalue) < protocol.alpha,
        }
    long = long_scores(used).rename(columns={"value": "score"})
    group = long[long["dimension"] == protocol.primary_dimension].assign(
        score=lambda frame: frame["score"].astype(float)
    )
    comparison = stats.paired_comparison(group, first, second, test=protocol.primary_test, alternative=protocol.sided)
    if not comparison.get("enough"):
        return result | not_enough_yet(comparison.get("reason", "not enough ratings"))
    return result | {
        "enough": True,
        "estimate": comparison["mean_difference"],
        "estimate_words": f"mean difference {comparison['mean_difference']:+.2f} points over {comparison['n_pairs']} participants",
        "p_value": comparison["p_value"],
        "significant": comparison["p_value"] < protocol.alpha,
    }


def not_enough_yet(reason: str) -> dict[str, Any]:
    return {"enough": False, "reason": reason}


def figures_as_data(dashboard: dict) -> dict:
    """The figures as parsed JSON, for json_script in the template."""
    return {key: json.loads(value) for key, value in dashboard.items() if key.endswith("_figure") and value}
