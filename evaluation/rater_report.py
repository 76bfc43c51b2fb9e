"""The dashboard's rater-quality section (issue 20): what it reads from the database (:func:`study_quality_inputs`)
and what it computes from the ratings table: the per-rater table with gold accuracy, leave-one-out α, test-retest
and a Dawid–Skene ability, the raters the exclusion rules flag, α per calendar week, and strata by background."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from evaluation import quality, stats
from evaluation.models import Assignment, Study, StudyRater
from healthagent.audit import Action
from healthagent.models import AuditEntry


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


def alpha_over_time(long: pd.DataFrame, per_rating: pd.DataFrame, points: dict[str, list[int]], changes) -> dict:
    """α per dimension and calendar week, and the figure with the study's changes marked."""
    when = pd.to_datetime(per_rating.set_index("rating")["rated_at"], utc=True)
    if when.empty:
        return {"rows": [], "figure": None}
    weeks = (when - pd.to_timedelta(when.dt.day_of_week, unit="D")).dt.normalize()  # each rating's Monday
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
    return {"rows": rows, "figure": figure.to_json()}


def strata(long: pd.DataFrame, inputs: QualityInputs, key: str, points: dict[str, list[int]]) -> list[dict]:
    """Mean score per variant and dimension within each answer to the background question ``key``."""
    answers = {rater: str(standing["background"].get(key, "not given")) for rater, standing in inputs.standings.items()}
    grouped = long.assign(stratum=long["rater"].map(lambda rater: answers.get(rater, "not given")))
    rows = []
    for stratum, group in grouped.groupby("stratum", sort=True):
        for row in stats.dimension_means(group, points):
            rows.append({"stratum": stratum, **row})
    return rows
