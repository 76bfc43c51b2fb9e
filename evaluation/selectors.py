"""Reads of the evaluation app for clinicians' and researchers' pages."""

import math
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Count, F, Q, QuerySet, Sum, Window
from django.db.models.functions import RowNumber
from django.http import Http404

from evaluation.access import study_counts_sql
from evaluation.assignment import has_available_item, items_waiting_for_answers, items_without_answers
from evaluation.models import Assignment, Dimension, Rubric, Study, StudyItem, StudyRater
from evaluation.quality import reference_match
from evaluation.raters import QUEUE_PURPOSES, gold_accuracy, rater_gates
from healthagent.joined import prepared_cursor
from healthagent.roles import Role, user_has_role


def rated_by(user: User) -> Q:
    """The studies ``user`` rates and that are not closed: their results (variants, other raters' scores) stay hidden
    from their own raters whatever other role they hold, or the study is unblinded (issue 23)."""
    rates = Study.clinicians.through.objects.filter(user_id=user.pk).values("study_id")
    return Q(pk__in=rates) & ~Q(status=Study.Status.CLOSED)


def studies_visible_to(*, user: User) -> QuerySet[Study]:
    """The studies ``user`` may read as a researcher: every one for admins; for researchers the
    unrestricted ones plus the restricted ones they own or are named on; none for anyone else; never one they rate
    while it is not closed."""
    if user_has_role(user, Role.ADMIN):
        return Study.objects.exclude(rated_by(user))
    if not user_has_role(user, Role.RESEARCHER):
        return Study.objects.none()
    named = Study.researchers.through.objects.filter(user_id=user.pk).values("study_id")
    return Study.objects.filter(Q(restricted=False) | Q(created_by=user) | Q(pk__in=named)).exclude(rated_by(user))


def access_study(*, user: User, study_id: int) -> Study:
    """The study if ``user`` may read it, else 404: a study one may not see is not confirmed to exist. Its own raters
    are told why (they know it exists: it is in their queue)."""
    study = studies_visible_to(user=user).select_related("rubric").filter(pk=study_id).first()
    if study is None:
        if Study.objects.filter(rated_by(user), pk=study_id).exists():
            raise PermissionDenied("you rate this study: its results are hidden from you until it is closed")
        raise Http404("no such study")
    return study


def study_changeable_by(*, study: Study, user: User) -> bool:
    """Opening, closing (and any other change of) a study is for its owner and admins only."""
    return user_has_role(user, Role.ADMIN) or (study.created_by_id is not None and study.created_by_id == user.pk)


def access_study_for_change(*, user: User, study_id: int) -> Study:
    """The study if ``user`` may change it; 404 if they may not even read it, 403 if they may only read it."""
    study = access_study(user=user, study_id=study_id)
    if not study_changeable_by(study=study, user=user):
        raise PermissionDenied("only the study's owner or an admin may change it")
    return study


def _progress_sql() -> str:
    """:func:`rater_progress`'s one statement, built once (it runs on every rating page): the rater's counts per state
    and the study's raters and results items. Raw SQL: the ORM's five correlated subqueries cost more to compile than
    to run."""
    assignment = connection.ops.quote_name(Assignment._meta.db_table)
    purposes = ", ".join(["%s"] * len(QUEUE_PURPOSES))
    raters, items = study_counts_sql("%s")
    return (
        "SELECT COALESCE(SUM(CASE WHEN a.state = %s THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN a.state = %s THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN a.state = %s THEN 1 ELSE 0 END), 0), "
        f"{raters}, {items} "
        f"FROM {assignment} a WHERE a.study_id = %s AND a.rater_id = %s AND a.purpose IN ({purposes})"
    )


_PROGRESS_SQL: str | None = None


_DIMENSIONS: dict[tuple[int, str], list[Dimension]] = {}


def rubric_dimensions(rubric: Rubric) -> list[Dimension]:
    """The rubric's dimensions in order, read once per web process for each version of the rubric (a new one whenever a
    dimension changes: evaluation.apps). Shared between requests: read them, never change them."""
    key = (rubric.pk, rubric.version)
    dimensions = _DIMENSIONS.get(key)
    if dimensions is None:
        if len(_DIMENSIONS) > 256:  # rubrics edited many times in one process's life: start again
            _DIMENSIONS.clear()
        dimensions = _DIMENSIONS[key] = list(rubric.dimensions.all())
    return list(dimensions)


def rubric_dimensions_forget() -> None:
    _DIMENSIONS.clear()


def rater_progress(*, study: Study, rater: User, counts: tuple[int, ...] | None = None) -> dict[str, Any]:
    """How far a clinician is: done, and their share of the study's ratings (at least what they did). One query, or
    none given ``counts`` (done, skipped, in progress, the study's raters and results items: read with the assignment,
    evaluation.access). Gold items and hidden repeats count like any item: progress must not tell them apart."""
    global _PROGRESS_SQL
    if counts is None:
        if _PROGRESS_SQL is None:
            _PROGRESS_SQL = _progress_sql()
        states = (Assignment.State.DONE, Assignment.State.SKIPPED, Assignment.State.IN_PROGRESS)
        params: list[str | int] = [*(str(state) for state in states), study.pk, study.pk]
        params += [study.pk, rater.pk, *(str(purpose) for purpose in QUEUE_PURPOSES)]
        with prepared_cursor(connection) as cursor:  # planned once per connection: every rating page runs it
            cursor.execute(_PROGRESS_SQL, params)
            counts = tuple(int(value or 0) for value in cursor.fetchone())
    done, skipped, in_progress, raters, item_count = counts
    raters = max(raters, 1)
    share = math.ceil(item_count * study.raters_per_item / raters)
    finished = done + skipped
    return {
        "done": done,
        "skipped": skipped,
        "in_progress": in_progress,  # not the study's raters or items
        "finished": finished,
        "total": max(share, finished + in_progress),
        "position": finished + (1 if in_progress else 0),
    }


def clinician_studies(*, rater: User) -> list[dict[str, Any]]:
    """Open and closed studies the clinician is enrolled in, with their progress, whether asking for the next item
    would give them one now (``ratable``), and if not, how many items still wait for the agent's answers."""
    studies = list(Study.objects.filter(clinicians=rater).exclude(status=Study.Status.DRAFT).order_by("-opened_at"))
    gates = rater_gates(studies=[study for study in studies if study.status == Study.Status.OPEN], rater=rater)
    entries = []
    for study in studies:
        progress = rater_progress(study=study, rater=rater)
        is_open = study.status == Study.Status.OPEN
        step = gates[study.pk].step if is_open else ""
        ratable = is_open and bool(
            progress["in_progress"]
            or step in ("consent", "training", "qualification")
            or (step == "main" and has_available_item(study, rater))
        )
        waiting = items_waiting_for_answers(study) if is_open and not ratable and step == "main" else 0
        entries.append({"study": study, "progress": progress, "ratable": ratable, "waiting": waiting, "step": step})
    return entries


PAIRWISE_CHOICE_WORDS = {"a": "A better", "b": "B better", "tie": "tie"}


BINARY_WORDS: dict[object, str] = {0: "no", 1: "yes"}


def _score_words(dimension: Dimension, value: object) -> str:
    return BINARY_WORDS.get(value, str(value)) if dimension.scale == Dimension.Scale.BINARY else str(value)


def _choice_words(choice: str, swapped: bool) -> str:
    """A pairwise choice stored in the item's terms, in the words of the sides the rater saw."""
    seen = {"a": "b", "b": "a"}.get(choice, choice) if swapped else choice
    return PAIRWISE_CHOICE_WORDS.get(seen, seen)


def rater_ratings(*, rater: User, study: Study | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """The clinician's own ratings, newest first, each as they gave it: the study, the item's number in it, the
    scores or choices (pairwise in the sides they saw), whether flagged unsafe, and when. Nothing of variants,
    participants or other raters."""
    # Numbered in the order the rater was given them, per study: an item's position would show a hidden repeat.
    assignments = (
        Assignment.objects.filter(rater=rater, state=Assignment.State.DONE, purpose__in=QUEUE_PURPOSES)
        .exclude(study__status=Study.Status.DRAFT)
        .select_related("rating", "study", "item")
        .prefetch_related("study__rubric__dimensions")
        .annotate(number=Window(RowNumber(), partition_by=[F("study_id")], order_by=[F("assigned_at"), F("pk")]))
        .order_by("-completed_at")
    )
    if study is not None:
        assignments = assignments.filter(study=study)
    entries = []
    for assignment in assignments[:limit]:
        rating = assignment.rating
        pairwise = assignment.study.mode == Study.Mode.PAIRWISE
        given = []
        for dimension in assignment.study.rubric.dimensions.all():
            if not dimension.is_scored:
                continue
            value = rating.scores.get(dimension.key)
            words = _choice_words(value, assignment.swapped) if pairwise else _score_words(dimension, value)
            given.append(f"{dimension.label}: {words}")
        if pairwise:
            given.append(f"Overall: {_choice_words(rating.preference, assignment.swapped)}")
        entries.append(
            {
                "assignment_id": assignment.pk,
                "study": assignment.study.name,
                "item_number": assignment.number,
                "given": given,
                "unsafe": rating.unsafe,
                "rated_at": assignment.completed_at,
                "revisions": rating.revision - 1,
            }
        )
    return entries


def _results_items(study: Study) -> QuerySet[StudyItem]:
    return study.items.filter(dropped_at__isnull=True, kind=StudyItem.Kind.RESULTS)


def ratings_needed(study: Study) -> int:
    """Ratings the study's results need: k per results item (dropped ones need none), plus any extra raters given
    to items whose raters disagreed."""
    counts = _results_items(study).aggregate(items=Count("pk"), extra=Sum("extra_raters"))
    return int(counts["items"] * study.raters_per_item + (counts["extra"] or 0))


def study_overview(*, study: Study) -> dict[str, Any]:
    """Ratings done and needed (dropped items need none), per clinician, and the items without an answer."""
    counts = _results_items(study).aggregate(items=Count("pk"), extra=Sum("extra_raters"))
    items, extra = counts["items"], counts["extra"] or 0
    assignments = Assignment.objects.filter(study=study, purpose=Assignment.Purpose.MAIN)
    per_rater = list(
        assignments.values("rater__username")
        .annotate(
            done=Count("pk", filter=Q(state=Assignment.State.DONE)),
            skipped=Count("pk", filter=Q(state=Assignment.State.SKIPPED)),
            in_progress=Count("pk", filter=Q(state=Assignment.State.IN_PROGRESS)),
        )
        .order_by("rater__username")
    )
    without_answers = items_without_answers(study)
    return {
        "items": items,
        "ratings_needed": items * study.raters_per_item + extra,
        "extra_raters": extra,
        "ratings_done": assignments.filter(state=Assignment.State.DONE).count(),
        "per_rater": per_rater,
        "waiting": [row for row in without_answers if row.waiting],
        "unanswerable": [row for row in without_answers if not row.waiting],
        "dropped": list(
            study.items.filter(dropped_at__isnull=False)
            .select_related("participant", "variant_a", "variant_b", "dropped_by")
            .order_by("position")
        ),
    }


def training_comparison(assignment: Assignment) -> list[dict[str, Any]]:
    """A training item's dimensions: the clinician's score (in the sides they saw) beside the reference."""
    rating = assignment.rating
    item, pairwise = assignment.item, assignment.study.mode == Study.Mode.PAIRWISE
    rows = []
    for dimension in [d for d in assignment.study.rubric.dimensions.all() if d.is_scored]:
        given, reference = rating.scores.get(dimension.key), item.reference.get(dimension.key)
        if pairwise:
            words = _choice_words(given, assignment.swapped), _choice_words(reference, assignment.swapped)
        else:
            words = _score_words(dimension, given), _score_words(dimension, reference)
        # "Same" as the grading reads it: within the item's tolerance (exact on yes/no and choices).
        within = reference is not None and reference_match(
            reference={dimension.key: reference},
            tolerance=item.tolerance,
            scores={dimension.key: given},
            binary=frozenset({dimension.key}) if dimension.scale == Dimension.Scale.BINARY else frozenset(),
        )
        rows.append(
            {
                "label": dimension.label,
                "given": words[0],
                "reference": words[1] if reference is not None else "—",
                "same": within,
            }
        )
    if pairwise:
        reference = item.reference.get("preference")
        rows.append(
            {
                "label": "Overall",
                "given": _choice_words(rating.preference, assignment.swapped),
                "reference": _choice_words(reference, assignment.swapped) if reference else "—",
                "same": reference is not None and rating.preference == reference,
            }
        )
    return rows


def study_raters(*, study: Study) -> list[dict[str, Any]]:
    """Every enrolled clinician's standing: consent, background, qualification attempts, gold accuracy and state."""
    standings = {
        standing.rater_id: standing
        for standing in StudyRater.objects.filter(study=study)
        .prefetch_related("attempts")
        .select_related("reinstated_by")
    }
    gold = {
        row["rater_id"]: row
        for row in Assignment.objects.filter(
            study=study, purpose=Assignment.Purpose.GOLD, matches_reference__isnull=False
        )
        .values("rater_id")
        .annotate(graded=Count("pk"), matched=Count("pk", filter=Q(matches_reference=True)))
    }
    given = dict(
        Assignment.objects.filter(study=study)
        .values("rater_id")
        .annotate(count=Count("pk"))
        .values_list("rater_id", "count")
    )
    rows = []
    for rater in study.clinicians.order_by("username"):
        standing = standings.get(rater.pk)
        counts = gold.get(rater.pk, {"graded": 0, "matched": 0})
        # What the pause rule reads: the gold items since the rater was last reinstated.
        since = gold_accuracy(study, standing) if standing is not None and standing.reinstated_at else None
        rows.append(
            {
                "rater": rater,
                "standing": standing,
                "attempts": list(standing.attempts.all()) if standing else [],
                "gold_matched": counts["matched"],
                "gold_graded": counts["graded"],
                "gold_since_reinstated": since,
                # In the form's order (PostgreSQL's jsonb keeps no key order).
                "background": [
                    (field["key"], standing.background[field["key"]])
                    for field in study.background_fields
                    if standing is not None and field["key"] in standing.background
                ],
                "paused": standing is not None and standing.state == StudyRater.State.PAUSED,
                "assignments": given.get(rater.pk, 0),
            }
        )
    return rows


def study_quality_items(*, study: Study) -> dict[str, Any]:
    """The study's items by kind (training, qualification and gold listed; results counted)."""
    items = study.items.filter(dropped_at__isnull=True)
    return {
        "counts": dict(items.values_list("kind").annotate(count=Count("pk")).values_list("kind", "count")),
        "listed": list(
            items.exclude(kind=StudyItem.Kind.RESULTS).select_related("participant").order_by("kind", "position")
        ),
    }
