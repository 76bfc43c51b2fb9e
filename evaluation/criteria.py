"""Per-item rubric criteria in the HealthBench style (issue 22): writing them, importing them as JSONL, grading them,
and the HealthBench score.

A criterion is a sentence, points (positive for what a good answer does, negative for a fault) and a category. A
rating grades each of its item's criteria met or not met (``Rating.criteria``: position -> bool). The item's score
from one rating is the points of the met criteria over the positive points possible, clipped to 0-1; a category's
score is the same over that category's criteria. Criteria change only while the study is a draft.
"""

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max

from evaluation.errors import EvaluationError
from evaluation.models import Criterion, Protocol, Rating, Study, StudyItem
from evaluation.selectors import study_changeable_by
from evaluation.stats import bootstrap_mean_ci
from healthagent.audit import Action, audit_record
from healthagent.jsonlimits import json_loads_bounded

MAX_TEXT = 400
MAX_PER_ITEM = 40
MAX_IMPORT_LINES = 20_000
MAX_LINE_CHARS = 10_000  # one criterion: an item, a sentence, points and a category
CATEGORIES = dict(Criterion.Category.choices)


def _check_changeable(study: Study, user: User) -> None:
    if not study_changeable_by(study=study, user=user):
        raise EvaluationError("only the study's owner or an admin may change its criteria")
    if study.status != Study.Status.DRAFT:
        raise EvaluationError("criteria can change only while the study is a draft")
    if Protocol.objects.filter(study=study, locked_at__isnull=False).exists():
        raise EvaluationError("the study's protocol is locked, and its criteria are part of it")
    if study.mode != Study.Mode.ABSOLUTE:
        raise EvaluationError("criteria are graded on one answer: absolute studies only")


def criteria_changeable(*, study: Study, user: User) -> bool:
    """Whether ``user`` may change the study's criteria now (the pages offer the forms only then)."""
    try:
        _check_changeable(study, user)
    except EvaluationError:
        return False
    return True


def criterion_clean(entry: dict[str, Any]) -> dict[str, Any]:
    """The text, points and category of one criterion, checked; EvaluationError says what is wrong."""
    text = entry.get("criterion", entry.get("text"))
    if not isinstance(text, str) or not text.strip():
        raise EvaluationError("write the criterion (a sentence)")
    if len(text.strip()) > MAX_TEXT:
        raise EvaluationError(f"the criterion is longer than {MAX_TEXT} characters")
    points = entry.get("points")
    if isinstance(points, bool) or not isinstance(points, int | str):
        raise EvaluationError("points must be a whole number from -10 to 10, not 0")
    try:
        points = int(points)
    except ValueError as error:
        raise EvaluationError("points must be a whole number from -10 to 10, not 0") from error
    if not -10 <= points <= 10 or points == 0:
        raise EvaluationError("points must be a whole number from -10 to 10, not 0")
    category = entry.get("category")
    if not isinstance(category, str) or category not in CATEGORIES:
        raise EvaluationError(f"the category must be one of {', '.join(CATEGORIES)}")
    return {"text": text.strip(), "points": points, "category": category}


def _append(item: StudyItem, cleaned: list[dict[str, Any]]) -> list[Criterion]:
    last = item.criteria.aggregate(last=Max("position"))["last"]
    start = 0 if last is None else last + 1
    if start + len(cleaned) > MAX_PER_ITEM:
        raise EvaluationError(f"item #{item.pk} would have more than {MAX_PER_ITEM} criteria")
    return Criterion.objects.bulk_create(
        [Criterion(item=item, position=start + offset, **entry) for offset, entry in enumerate(cleaned)]
    )


def criterion_add(*, study: Study, item_id: int, entry: dict[str, Any], user: User) -> Criterion:
    _check_changeable(study, user)
    cleaned = criterion_clean(entry)
    with transaction.atomic():
        item = StudyItem.objects.select_for_update().filter(pk=item_id, study=study).first()
        if item is None:
            raise EvaluationError("no such item in this study")
        (criterion,) = _append(item, [cleaned])
        audit_record(actor=user, action=Action.STUDY_CHANGED, target=study, details={"criterion_added": item.pk})
    return criterion


def criterion_delete(*, study: Study, item_id: int, criterion_id: int, user: User) -> None:
    """Delete one criterion (by its id: a second click deletes nothing more); the later ones move up, so positions
    stay 0, 1, 2..."""
    _check_changeable(study, user)
    with transaction.atomic():
        item = StudyItem.objects.select_for_update().filter(pk=item_id, study=study).first()
        criterion = None if item is None else item.criteria.filter(pk=criterion_id).first()
        if item is None or criterion is None:
            raise EvaluationError("no such criterion (deleted already?)")
        position = criterion.position
        criterion.delete()
        for criterion in item.criteria.filter(position__gt=position).order_by("position"):
            Criterion.objects.filter(pk=criterion.pk).update(position=criterion.position - 1)
        audit_record(actor=user, action=Action.STUDY_CHANGED, target=study, details={"criterion_deleted": item.pk})


def criteria_import(*, study: Study, text: str, user: User) -> int:
    """Import JSONL, one criterion per line: ``{"item": <item id>, "criterion": "...", "points": 5, "category":
    "safety"}``. All or nothing: the first bad line is refused with its number and nothing is written. Returns how
    many criteria were added (after those the items already have)."""
    _check_changeable(study, user)
    lines = text.splitlines()
    if len(lines) > MAX_IMPORT_LINES:
        raise EvaluationError(f"at most {MAX_IMPORT_LINES:,} lines per import")
    numbered: list[tuple[int, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            numbered.append((number, json_loads_bounded(line, max_chars=MAX_LINE_CHARS)))
        except ValueError as error:
            raise EvaluationError(f"line {number}: not JSON ({error.args[0].split(':')[0]})") from error
    return _criteria_write(study=study, numbered=numbered, user=user, unit="line")


def criteria_add(*, study: Study, entries: list[Any], user: User) -> int:
    """The same as an import, from a list of entries (the API): all or nothing, the first bad entry refused with its
    number (from 1). Returns how many criteria were added."""
    _check_changeable(study, user)
    if len(entries) > MAX_IMPORT_LINES:
        raise EvaluationError(f"at most {MAX_IMPORT_LINES:,} criteria per call")
    return _criteria_write(study=study, numbered=list(enumerate(entries, start=1)), user=user, unit="entry")


def _criteria_write(*, study: Study, numbered: list[tuple[int, Any]], user: User, unit: str) -> int:
    items = set(study.items.values_list("pk", flat=True))
    by_item: dict[int, list[dict[str, Any]]] = {}
    for number, entry in numbered:
        if not isinstance(entry, dict):
            raise EvaluationError(f"{unit} {number}: not a JSON object")
        item_id = entry.get("item")
        if isinstance(item_id, bool) or not isinstance(item_id, int) or item_id not in items:
            raise EvaluationError(f"{unit} {number}: item {item_id!r} is not an item of this study")
        try:
            by_item.setdefault(item_id, []).append(criterion_clean(entry))
        except EvaluationError as error:
            raise EvaluationError(f"{unit} {number}: {error}") from error
    if not by_item:
        raise EvaluationError("no criterion to import")
    with transaction.atomic():
        # Checked again under the study's lock: an opening (or a protocol lock) that committed meanwhile is seen.
        _check_changeable(Study.objects.select_for_update().get(pk=study.pk), user)
        for item_id, cleaned in by_item.items():
            _append(StudyItem.objects.select_for_update().get(pk=item_id), cleaned)
        count = sum(len(cleaned) for cleaned in by_item.values())
        audit_record(actor=user, action=Action.STUDY_CHANGED, target=study, details={"criteria_imported": count})
    return count


def grades_clean(criteria: Iterable[Criterion], posted: dict[str, Any]) -> dict[str, bool]:
    """A rating's grades: every criterion of the item met or not met (``"1"``/``true`` or ``"0"``/``false``)."""
    cleaned: dict[str, bool] = {}
    for criterion in criteria:
        value = posted.get(str(criterion.position))
        if value in (True, "1", 1, "true"):
            cleaned[str(criterion.position)] = True
        elif value in (False, "0", 0, "false"):
            cleaned[str(criterion.position)] = False
        else:
            raise EvaluationError(f"grade criterion {criterion.position + 1}: met or not met")
    unknown = set(posted) - set(cleaned)
    if unknown:
        raise EvaluationError(f"unknown criteria: {', '.join(sorted(unknown))}")
    return cleaned


# --- Scores --------------------------------------------------------------------------------------------------------


def healthbench_score(points: list[int], met: list[bool]) -> float | None:
    """Points met over positive points possible, clipped to 0-1; None without a positive criterion."""
    possible = sum(p for p in points if p > 0)
    if possible <= 0:
        return None
    achieved = sum(p for p, hit in zip(points, met, strict=True) if hit)
    return float(min(max(achieved / possible, 0.0), 1.0))


def rating_criterion_scores(criteria: list[Criterion], grades: dict[str, bool]) -> dict[str, float]:
    """One rating's overall score and each category's (categories without a positive criterion have none)."""
    scores: dict[str, float] = {}
    groups: dict[str, list[Criterion]] = {"overall": criteria}
    for criterion in criteria:
        groups.setdefault(criterion.category, []).append(criterion)
    for name, group in groups.items():
        graded = [c for c in group if str(c.position) in grades]
        if len(graded) != len(group) or not group:
            continue
        score = healthbench_score([c.points for c in group], [grades[str(c.position)] for c in group])
        if score is not None:
            scores[name] = score
    return scores


def item_criteria(study: Study) -> dict[int, list[Criterion]]:
    """Item id -> its criteria in order, for the items of ``study`` that have any (one query)."""
    criteria: dict[int, list[Criterion]] = {}
    for criterion in Criterion.objects.filter(item__study=study).order_by("item", "position"):
        criteria.setdefault(criterion.item_id, []).append(criterion)
    return criteria


def study_criterion_scores(study: Study, *, seed: int = 0, rating_ids: set[int] | None = None) -> list[dict[str, Any]]:
    """Per variant, overall and per category: the mean criterion score over ratings (main queue; only
    ``rating_ids`` when given: those the exclusion rules keep) with a 95 % bootstrap CI over items, and how many
    ratings and items it rests on."""
    criteria = item_criteria(study)
    if not criteria:
        return []
    rows = []
    queryset = Rating.objects.filter(
        assignment__study=study, assignment__purpose="main", assignment__item_id__in=list(criteria)
    )
    if rating_ids is not None:
        queryset = queryset.filter(pk__in=rating_ids)
    for item_id, variant, grades in queryset.values_list(
        "assignment__item_id", "assignment__item__variant_a__name", "criteria"
    ):
        for name, score in rating_criterion_scores(criteria[item_id], grades or {}).items():
            rows.append({"item": item_id, "variant": variant, "group": name, "score": score})
    if not rows:
        return []
    frame = pd.DataFrame(rows)
    order = {"overall": 0, **{key: index + 1 for index, key in enumerate(CATEGORIES)}}
    summary = []
    for (variant, group), cell in sorted(frame.groupby(["variant", "group"]), key=lambda x: (x[0][0], order[x[0][1]])):
        scores, items = cell["score"].to_numpy(), cell["item"].to_numpy()
        low, high = bootstrap_mean_ci(scores, items, seed=seed) if len(np.unique(items)) >= 2 else (None, None)
        summary.append(
            {
                "variant": variant,
                "group": group,
                "label": "Overall" if group == "overall" else CATEGORIES[group],
                "mean": float(scores.mean()),
                "ci_low": low,
                "ci_high": high,
                "ratings": len(scores),
                "items": len(np.unique(items)),
            }
        )
    return summary
