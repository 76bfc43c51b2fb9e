"""The rating page of one assignment: what the form starts with, the answers in the order this rater sees them, and
the participant's data beside them.

The participant's record and day captions are the same for every rater of every item about that participant and
window (a participant's data does not change after import: ``healthagent.cohort.importing``), so each web process
renders them once and keeps the HTML (the ``fragments`` cache). Only the form depends on the rater.
"""

import json

from django.core.cache import caches
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe

from evaluation.models import Assignment, Study
from evaluation.selectors import rater_progress, rubric_dimensions
from healthagent.agent.record import participant_record
from healthagent.cohort.captions import participant_day_captions
from healthagent.cohort.days import DaySpan, shown_days
from healthagent.cohort.selectors import participant_profile
from healthagent.models import Participant
from healthagent.templatetags.fixed_urls import url_with_id

# Bump when the record's or the captions' template or code changes what they show.
DATA_FRAGMENT_VERSION = 1

PAIRWISE_CHOICES = (("a", "A better", "", "1"), ("tie", "Tie", "", "2"), ("b", "B better", "", "3"))
CRITERION_CHOICES = (("1", "Met", "1"), ("0", "Not met", "2"))


def _answers(assignment: Assignment) -> list[dict]:
    """The answers in the order this clinician sees them: labels only, never variants."""
    item = assignment.item
    if assignment.study.mode == Study.Mode.ABSOLUTE:
        return [{"label": "Answer", "text": item.answer_a}]
    left, right = (item.answer_b, item.answer_a) if assignment.swapped else (item.answer_a, item.answer_b)
    return [{"label": "Answer A", "text": left}, {"label": "Answer B", "text": right}]


def _choices(options, shown_value) -> list[dict]:
    """A scale's radios, (value, label, anchor, key) each, and which one the form starts with."""
    shown = "" if shown_value is None else str(shown_value)
    return [
        {"value": value, "label": label, "anchor": anchor, "key": key, "checked": shown != "" and shown == str(value)}
        for value, label, anchor, key in options
    ]


def shown_rating(assignment: Assignment) -> dict:
    """What the form starts with: the draft, else the saved rating (in the sides this rater sees)."""
    if assignment.draft:
        return assignment.draft
    if assignment.state != Assignment.State.DONE:
        return {}  # only a submit makes a rating, and it marks the assignment done: no query for the others
    rating = getattr(assignment, "rating", None)
    if rating is None:
        return {}
    flip = (lambda v: {"a": "b", "b": "a"}.get(v, v)) if assignment.swapped else (lambda v: v)
    scores = {key: flip(value) if isinstance(value, str) else value for key, value in rating.scores.items()}
    return {
        "scores": scores,
        "preference": flip(rating.preference),
        "comment": rating.comment,
        "unsafe": rating.unsafe,
        "unsafe_reason": rating.unsafe_reason,
        "harm": rating.harm,
        "evidence": rating.evidence,
        "criteria": rating.criteria,
    }


def participant_data_html(*, participant: Participant, shown: DaySpan, captions: bool) -> SafeString:
    """The participant's record (what the agent saw) and, if the study shows them, the captions of the days shown:
    rendered once per web process for each participant and window."""
    key = (
        f"item-data:v{DATA_FRAGMENT_VERSION}:{participant.pk}:{participant.pseudonym}:{participant.trajectory_path}:"
        f"{shown.first}:{shown.last}:{int(captions)}"
    )
    fragments = caches["fragments"]
    html = fragments.get(key)
    if html is None:
        context = {
            # Both answers of a pairwise item are about this participant, so one record serves both.
            "record": participant_record(participant=participant, shown_days=shown),
            "day_captions": (
                participant_day_captions(participant=participant, start_day=shown.first - 1, end_day=shown.last)
                if captions
                else None
            ),
        }
        html = render_to_string("evaluation/partials/item_data.html", context)
        fragments.set(key, html)
    return mark_safe(html)  # our own template's output, escaped when it was rendered


def scales_html(*, rubric, dimensions: list, pairwise: bool, shown_scores: dict) -> SafeString:
    """The scored dimensions' fieldsets, with the radios the form starts with checked. With none checked (an item not
    answered yet, the common case) the markup is the same for every item of a rubric version and mode, so each web
    process renders it once for each; a draft's or a rating's answers are rendered each time."""
    scored = [dimension for dimension in dimensions if dimension.is_scored]
    fresh = all(shown_scores.get(dimension.key) in (None, "") for dimension in scored)
    key = f"scales:{rubric.pk}:{rubric.version}:{int(pairwise)}"
    fragments = caches["fragments"]
    html = fragments.get(key) if fresh else None
    if html is None:
        scales = [
            (
                dimension,
                _choices(
                    PAIRWISE_CHOICES
                    if pairwise
                    else [(point, point, anchor, point) for point, anchor in dimension.choices],
                    shown_scores.get(dimension.key),
                ),
            )
            for dimension in scored
        ]
        html = render_to_string("evaluation/partials/scales.html", {"scales": scales})
        if fresh:
            fragments.set(key, html)
    return mark_safe(html)  # our own template's output, escaped when it was rendered


def item_page_context(assignment: Assignment, *, rater) -> dict:
    """The context of ``evaluation/assignment.html`` for the rater's own ``assignment`` (access already checked)."""
    study = assignment.study
    participant = assignment.item.participant
    shown = shown_days(participant, study.window_days)  # the chart's window (views._window), in day numbers
    dimensions = rubric_dimensions(study.rubric)
    pairwise = study.mode == Study.Mode.PAIRWISE
    shown_values = shown_rating(assignment)
    scores = shown_values.get("scores")
    shown_scores: dict = scores if isinstance(scores, dict) else {}
    return {
        "assignment": assignment,
        "study": study,
        "participant": {**participant_profile(participant), "days": shown.days},
        "participant_data": participant_data_html(participant=participant, shown=shown, captions=study.show_captions),
        "answers": _answers(assignment),
        "dimensions": [d for d in dimensions if d.is_scored],
        "scales_html": scales_html(
            rubric=study.rubric, dimensions=dimensions, pairwise=pairwise, shown_scores=shown_scores
        ),
        "preference_choices": _choices(PAIRWISE_CHOICES, shown_values.get("preference")) if pairwise else [],
        # A harm dimension is asked in absolute studies (pairwise, the unsafe flag stands for it).
        "harm_dimension": None if pairwise else next((d for d in dimensions if not d.is_scored), None),
        # The item's own criteria (HealthBench style), graded met or not met; absolute studies only.
        "criteria": []
        if pairwise or not getattr(assignment.item, "has_criteria", True)
        else list(assignment.item.criteria.all()),
        "criterion_choices": CRITERION_CHOICES,
        # The grades shown, as the radios' values (a draft may hold true/false or "1"/"0").
        "criterion_grades": {
            key: "1" if value in (True, 1, "1", "true") else "0"
            for key, value in (shown_values.get("criteria") or {}).items()
            if value not in (None, "")
        },
        "evidence_dimensions": [(d.key, d.label) for d in dimensions if d.is_scored or not pairwise],
        "window": dict(zip(("start", "end"), shown.minutes, strict=True)),
        "pairwise": pairwise,
        "shown": shown_values,
        # Nothing entered yet (no draft, no rating): the form's parts after the scales are the same for every such
        # item of a rubric version, mode and window, kept rendered (assignment.html's cached fragments).
        "fresh": not shown_values,
        "evidence_json": json.dumps(shown_values.get("evidence") or []),
        # Read with the assignment when the view asked for it (evaluation.access: with_progress), else one query.
        "progress": rater_progress(study=study, rater=rater, counts=getattr(assignment, "progress_counts", None)),
        "minute_chart_url": url_with_id("evaluation:assignment_chart", assignment.pk),
        "editable": study.status == Study.Status.OPEN,
        # Training and qualification are said as such; gold items and repeats look like any other item.
        "stage": assignment.purpose
        if assignment.purpose in (Assignment.Purpose.TRAINING, Assignment.Purpose.QUALIFICATION)
        else "",
    }
