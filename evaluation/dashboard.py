"""The researcher's dashboard of a study: tables of ratings in, every section of the page out.

``study_ratings`` reads the study's ratings in one query; ``dashboard_from_frames`` computes every
number and figure from them (pure, so the benchmark can time it on synthetic data).
"""

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from evaluation import quality, stats
from evaluation.models import Assignment, Dimension, Protocol, Rating, Study, StudyRater
from evaluation.selectors import ratings_needed
from healthagent.audit import Action
from healthagent.models import AuditEntry

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
    rows = Rating.objects.filter(assignment__study=study, assignment__purpose=Assignment.Purpose.MAIN).values_list(
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


@dataclass
class QualityInputs:
    """What rater quality needs beyond the results ratings: gold grades, repeats, standings and the study's rules."""

    gold: pd.DataFrame  # rater, matches
    repeats: pd.DataFrame  # rater, first, second: mean scores of an item and of its hidden repeat
    standings: dict[str, dict[str, Any]]  # username -> state, background
    threshold: float = 0.8
    gold_minimum: int = 5
    min_seconds: float = 0.0
    changes: list[tuple[Any, str]] = field(default_factory=list)  # (when, what) marked on the α-over-time chart


def _mean_score(scores: dict) -> float | None:
    numbers = [value for value in scores.values() if isinstance(value, int | float)]
    return sum(numbers) / len(numbers) if numbers else None


def _change_words(action: str, details: dict[str, Any]) -> str:
    if action == Action.STUDY_CHANGED:
        fields = [str(name).lower() for name in details.get("changed_fields", [])]
        return "changed: " + ", ".join(fields) if fields else "changed"
    words: dict[str, str] = {Action.STUDY_OPENED.value: "opened", Action.STUDY_REOPENED.value: "reopened"}
    return words.get(action, action)


def study_quality_inputs(study: Study) -> QualityInputs:
    """Gold grades, repeat pairs, standings and the study's marked changes, in four queries."""
    gold = pd.DataFrame(
        list(
            Assignment.objects.filter(
                study=study, purpose=Assignment.Purpose.GOLD, matches_reference__isnull=False
            ).values_list("rater__username", "matches_reference")
        ),
        columns=["rater", "matches"],
    )
    pairs = Assignment.objects.filter(
        study=study, purpose=Assignment.Purpose.REPEAT, state=Assignment.State.DONE, repeat_of__state="done"
    ).values_list("rater__username", "repeat_of__rating__scores", "rating__scores")
    repeats = pd.DataFrame(
        [(rater, _mean_score(first or {}), _mean_score(second or {})) for rater, first, second in pairs],
        columns=["rater", "first", "second"],
    ).dropna()
    standings = {
        username: {"state": state, "background": background or {}}
        for username, state, background in StudyRater.objects.filter(study=study).values_list(
            "rater__username", "state", "background"
        )
    }
    changes = [
        (when, _change_words(action, details or {}))
        for when, action, details in AuditEntry.objects.filter(
            object_type="evaluation.study",
            object_id=str(study.pk),
            action__in=[Action.STUDY_OPENED, Action.STUDY_REOPENED, Action.STUDY_CHANGED],
        ).values_list("created_at", "action", "details")
    ]
    return QualityInputs(
        gold=gold,
        repeats=repeats,
        standings=standings,
        threshold=study.pass_threshold,
        gold_minimum=study.gold_minimum,
        min_seconds=study.min_seconds_per_item,
        changes=changes,
    )


def _ability(
    per_rating: pd.DataFrame, *, pairwise: bool, mean_scores: pd.Series | None = None
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """A Dawid–Skene model (crowd-kit) of the ratings, five EM steps from majority vote (0.5 s on 100,000 ratings):
    per rater the probability of giving the label the model believes (ability), and the items it is least sure of
    (difficulty = 1 − the largest posterior of the item's label). Labels: each rating's rounded mean score, or the
    pairwise overall choice."""
    from crowdkit.aggregation import DawidSkene

    if pairwise:
        labels = per_rating["preference"].where(per_rating["preference"] != "")
    else:
        labels = per_rating["rating"].map(mean_scores).round() if mean_scores is not None else None
        if labels is None:
            labels = per_rating["scores"].map(_mean_score).round()
    frame = pd.DataFrame({"task": per_rating["item"], "worker": per_rating["rater"], "label": labels}).dropna()
    if not pairwise:
        frame["label"] = frame["label"].astype(int)
    if frame["task"].duplicated().sum() < 2 or frame["label"].nunique() < 2:
        return {}, []
    model = DawidSkene(n_iter=5).fit(frame)
    # errors_: rows (worker, given label), columns the true label: P(given | true). Ability = Σ prior · P(right).
    errors, priors, probabilities = model.errors_, model.priors_, model.probas_
    assert errors is not None and priors is not None and probabilities is not None  # fitted
    given = errors.index.get_level_values(1)
    ability = pd.Series(0.0, index=errors.index.get_level_values(0).unique())
    for label, prior in priors.items():
        if label in errors.columns:
            right = errors.loc[given == label, label]
            ability = ability.add(right.droplevel(1) * float(prior), fill_value=0.0)
    rated = frame.groupby("task")["worker"].size()
    difficulty = (1 - probabilities.max(axis=1))[rated.reindex(probabilities.index).fillna(0) >= 2]
    hardest = [
        {"item": item, "difficulty": float(value), "label": str(probabilities.loc[item].idxmax())}
        for item, value in difficulty.sort_values(ascending=False).head(20).items()
        if value > 0
    ]
    return {str(worker): float(value) for worker, value in ability.items()}, hardest


def _gold_counts(inputs: QualityInputs) -> pd.DataFrame:
    return inputs.gold.groupby("rater")["matches"].agg(["sum", "count"]) if len(inputs.gold) else pd.DataFrame()


def flagged_raters(inputs: QualityInputs) -> tuple[set[str], set[str]]:
    """The raters below the gold threshold (accuracy under it after at least the study's minimum of gold items, the
    rule that pauses) and the paused raters."""
    gold = _gold_counts(inputs)
    below_gold = {
        rater
        for rater, row in gold.iterrows()
        if row["count"] >= max(inputs.gold_minimum, 1) and row["sum"] / row["count"] < inputs.threshold
    }
    paused = {rater for rater, standing in inputs.standings.items() if standing["state"] == StudyRater.State.PAUSED}
    return below_gold, paused


def rater_quality(
    *,
    per_rating: pd.DataFrame,
    long: pd.DataFrame,
    inputs: QualityInputs,
    points: dict[str, list[int]],
    pairwise: bool = False,
) -> tuple[list[dict], set[str], set[str], list[dict]]:
    """The per-rater quality table, the raters below the gold threshold, the paused raters and the items a rater
    model finds hardest. Pairwise, the score-based columns (α, difference from others) stay empty."""
    gold = _gold_counts(inputs)
    below_gold, paused = flagged_raters(inputs)
    summary = {row["rater"]: row for row in stats.rater_summary(long, per_rating)} if len(long) else {}
    alpha_change: dict[str, list[float]] = {}
    for dimension, group in long.groupby("dimension", sort=True):
        overall, without = quality.alpha_without_each_rater(
            group.rename(columns={"value": "score"}) if "score" not in group else group, values=points.get(dimension)
        )
        for rater, value in without.items():
            if overall is not None and value is not None:
                alpha_change.setdefault(rater, []).append(value - overall)
    consistency = quality.self_consistency(inputs.repeats) if len(inputs.repeats) else {}
    mean_scores = long.groupby("rating")["score"].mean() if len(long) else None  # each rating's mean over dimensions
    ability, hardest = _ability(per_rating, pairwise=pairwise, mean_scores=mean_scores) if len(per_rating) else ({}, [])
    fast = (
        per_rating.assign(fast=per_rating["time_spent_s"].astype(float) < inputs.min_seconds)
        .groupby("rater")["fast"]
        .sum()
        if inputs.min_seconds > 0 and len(per_rating)
        else pd.Series(dtype=int)
    )
    # Plain dicts: 1,860 raters read from pandas one at a time cost a quarter of a second.
    counts = per_rating.groupby("rater").size().to_dict()
    median_time = per_rating.groupby("rater")["time_spent_s"].median().to_dict()
    fast_counts = fast.to_dict()
    gold_graded = gold["count"].to_dict() if len(gold) else {}
    gold_matched = gold["sum"].to_dict() if len(gold) else {}
    raters = sorted(set(counts) | set(inputs.standings) | set(gold_graded))
    rows = []
    for rater in raters:
        graded, matched = int(gold_graded.get(rater, 0)), int(gold_matched.get(rater, 0))
        interval = quality.wilson_interval(matched, graded)
        changes = alpha_change.get(rater)
        state = inputs.standings.get(rater, {}).get("state", StudyRater.State.ACTIVE)
        rows.append(
            {
                "rater": rater,
                "ratings": int(counts.get(rater, 0)),
                "gold_matched": matched,
                "gold_graded": graded,
                "gold_accuracy": matched / graded if graded else None,
                "gold_ci": interval,
                "disagreement": summary.get(rater, {}).get("disagreement"),
                "alpha_change": float(np.mean(changes)) if changes else None,
                "repeats": consistency.get(rater),
                "median_time_s": float(median_time[rater]) if rater in median_time else None,
                "too_fast": int(fast_counts.get(rater, 0)),
                "ability": ability.get(rater),
                "state": "paused" if rater in paused else ("below gold threshold" if rater in below_gold else state),
                "background": inputs.standings.get(rater, {}).get("background", {}),
            }
        )
    return rows, below_gold, paused, hardest


def _alpha_over_time(long: pd.DataFrame, per_rating: pd.DataFrame, points: dict[str, list[int]], changes) -> dict:
    """α per dimension and calendar week, and the figure with the study's changes marked."""
    when = pd.to_datetime(per_rating.set_index("rating")["rated_at"], utc=True)
    if when.empty:
        return {"rows": [], "figure": None}
    weeks = (when - pd.to_timedelta(when.dt.weekday, unit="D")).dt.normalize()  # each rating's Monday
    frame = long.assign(week=long["rating"].map(weeks))
    rows = []
    for (dimension, week), group in frame.groupby(["dimension", "week"], sort=True):
        paired = group.groupby("item")["rater"].transform("nunique") >= 2
        if group.loc[paired, "item"].nunique() < 10:
            continue
        value, _ = quality.alpha_without_each_rater(group[paired], values=points.get(dimension), each_rater=False)
        if value is not None:
            rows.append({"dimension": dimension, "week": week.date().isoformat(), "alpha": value})
    if not rows:
        return {"rows": [], "figure": None}
    figure = go.Figure()
    for dimension in sorted({row["dimension"] for row in rows}):
        mine = [row for row in rows if row["dimension"] == dimension]
        figure.add_trace(
            go.Scatter(
                name=dimension, x=[row["week"] for row in mine], y=[row["alpha"] for row in mine], mode="lines+markers"
            )
        )
    for moment, label in changes:
        figure.add_vline(x=pd.Timestamp(moment).isoformat(), line_dash="dot", line_color="#888")
        figure.add_annotation(x=pd.Timestamp(moment).isoformat(), y=1, yref="paper", text=str(label), showarrow=False)
    figure.update_layout(
        height=300, margin={"l": 50, "r": 20, "t": 20, "b": 40}, template="plotly_white", yaxis={"title": "α"}
    )
    return {"rows": rows, "figure": _figure_json(figure)}


def _strata(long: pd.DataFrame, inputs: QualityInputs, key: str, points: dict[str, list[int]]) -> list[dict]:
    """Mean score per variant and dimension within each answer to the background question ``key``."""
    answers = {rater: str(standing["background"].get(key, "not given")) for rater, standing in inputs.standings.items()}
    grouped = long.assign(stratum=long["rater"].map(lambda rater: answers.get(rater, "not given")))
    rows = []
    for stratum, group in grouped.groupby("stratum", sort=True):
        for row in stats.dimension_means(group, points):
            rows.append({"stratum": stratum, **row})
    return rows


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
            result["over_time"] = _alpha_over_time(all_long, per_rating, points, quality_inputs.changes)
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
        result["strata"] = _strata(long, quality_inputs, stratify, points)
        result["stratify"] = stratify
    return result


def study_dashboard(study: Study, *, exclude: frozenset[str] = frozenset(), stratify: str = "") -> dict:
    per_rating = study_ratings(study)
    dimensions = list(study.rubric.dimensions.all())
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
    return dashboard


def primary_analysis(
    *, protocol: Protocol, per_rating: pd.DataFrame, quality_inputs: QualityInputs, mode: str
) -> dict[str, Any]:
    """The pre-registered primary analysis, exactly as the protocol fixed it: its exclusion rules, its dimension, its
    two variants, its test and sides. Absolute studies: ``stats.paired_comparison`` (as the power analysis);
    pairwise: a binomial test of the first variant's wins among decided judgements on the dimension."""
    first, second = protocol.primary_variant_a.name, protocol.primary_variant_b.name
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
