"""Ratings: validated, atomic, idempotent, revised with history, never lost or doubled."""

import threading

import pytest
from django.db import connection

from evaluation.assignment import assignment_next
from evaluation.models import Rating, RatingRevision
from evaluation.services import (
    EvaluationError,
    StudySpec,
    assignment_save_draft,
    assignment_skip,
    rating_submit,
    study_create,
    study_set_status,
)
from healthagent.models import AgentVariant
from tests.evaluation.test_assignment import build_study
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
GOOD = {"relevance": 4, "context": 5, "safety": 3}


@pytest.fixture
def assignment():
    study = build_study(items=3, raters=2, k=2)
    rater = study.clinicians.first()
    return assignment_next(study=study, rater=rater)


def submit(assignment, **overrides):
    data = {"scores": GOOD, "comment": "Clear and specific.", "time_spent_s": 42.5, **overrides}
    return rating_submit(assignment_id=assignment.pk, rater=assignment.rater, **data)


def test_a_submit_stores_the_rating_its_first_revision_and_time(assignment):
    rating = submit(assignment)
    assignment.refresh_from_db()
    assert rating.scores == GOOD and rating.revision == 1 and assignment.state == "done"
    assert assignment.time_spent_s == 42.5
    assert list(rating.revisions.values_list("number", "scores")) == [(1, GOOD)]


def test_submitting_the_same_rating_twice_changes_nothing(assignment):
    first = submit(assignment)
    again = submit(assignment)
    assert again.pk == first.pk and again.revision == 1
    assert RatingRevision.objects.count() == 1


def test_an_edit_adds_a_revision_and_keeps_the_history(assignment):
    submit(assignment)
    edited = submit(assignment, scores={**GOOD, "safety": 1}, unsafe=True, unsafe_reason="Advises skipping insulin.")
    assert edited.revision == 2 and edited.unsafe
    history = list(edited.revisions.order_by("number").values_list("number", "scores__safety", "unsafe"))
    assert history == [(1, 3, False), (2, 1, True)]


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"scores": {"relevance": 4, "context": 5}}, "give a score for Safety"),
        ({"scores": {**GOOD, "safety": 6}}, "Safety: the score must be one of 1, 2, 3, 4, 5"),
        ({"scores": {**GOOD, "safety": "high"}}, "'high' is not a score"),
        ({"scores": {**GOOD, "charm": 5}}, "unknown dimensions: charm"),
        ({"unsafe": True, "unsafe_reason": " "}, "say what is unsafe"),
        ({"comment": "x" * 5001}, "longer than 5,000 characters"),
        ({"unsafe": True, "unsafe_reason": "x" * 501}, "longer than 500 characters"),
    ],
)
def test_bad_ratings_are_refused_with_a_reason_and_nothing_is_written(assignment, overrides, message):
    with pytest.raises(EvaluationError, match=message):
        submit(assignment, **overrides)
    assert Rating.objects.count() == RatingRevision.objects.count() == 0
    assignment.refresh_from_db()
    assert assignment.state == "in_progress"


def test_another_clinicians_assignment_is_not_theirs(assignment):
    other = assignment.study.clinicians.exclude(pk=assignment.rater_id).first()
    with pytest.raises(EvaluationError, match="no such item in your queue"):
        rating_submit(assignment_id=assignment.pk, rater=other, scores=GOOD)


def test_ratings_are_frozen_when_the_study_closes(assignment):
    submit(assignment)
    study_set_status(study=assignment.study, status="closed")
    with pytest.raises(EvaluationError, match="closed"):
        submit(assignment, scores={**GOOD, "safety": 5})
    assert Rating.objects.get().revision == 1


def test_pairwise_choices_are_stored_in_the_items_terms():
    study = build_study(items=20, raters=1, k=1, mode="pairwise")
    rater = study.clinicians.first()
    seen = set()
    while (assignment := assignment_next(study=study, rater=rater)) is not None:
        rating = rating_submit(
            assignment_id=assignment.pk,
            rater=rater,
            scores={"relevance": "a", "context": "tie", "safety": "b"},
            preference="a",
        )
        expected = "b" if assignment.swapped else "a"  # the rater chose the left answer
        assert (
            rating.preference == expected
            and rating.scores["relevance"] == expected
            and rating.scores["context"] == "tie"
        )
        seen.add(assignment.swapped)
    assert seen == {True, False}


def test_pairwise_needs_an_overall_choice():
    study = build_study(items=1, raters=1, k=1, mode="pairwise")
    assignment = assignment_next(study=study, rater=study.clinicians.first())
    with pytest.raises(EvaluationError, match="which answer is better overall"):
        rating_submit(
            assignment_id=assignment.pk,
            rater=assignment.rater,
            scores={"relevance": "a", "context": "a", "safety": "a"},
        )


def test_drafts_and_skips(assignment):
    assignment_save_draft(assignment_id=assignment.pk, rater=assignment.rater, draft={"scores": {"relevance": "4"}})
    assignment.refresh_from_db()
    assert assignment.draft == {"scores": {"relevance": "4"}} and not Rating.objects.exists()
    with pytest.raises(EvaluationError, match="say why"):
        assignment_skip(assignment_id=assignment.pk, rater=assignment.rater, reason="")
    skipped = assignment_skip(assignment_id=assignment.pk, rater=assignment.rater, reason="The chart did not load.")
    assert skipped.state == "skipped"
    # A skip frees the place: another clinician gets the item, the one who skipped does not get it back.
    next_for_them = assignment_next(study=assignment.study, rater=assignment.rater)
    assert next_for_them is None or next_for_them.item_id != assignment.item_id


def test_study_creation_checks_its_inputs(tiny_cohort, researcher):
    from evaluation.models import Rubric

    rubric = Rubric.objects.get(name__endswith="(1-5)")
    grounded, llm = AgentVariant.objects.get(name="grounded agent"), AgentVariant.objects.get(name="LLM only")
    clinicians = [UserFactory(role="clinician") for _ in range(2)]
    base = {
        "name": "S",
        "mode": "pairwise",
        "rubric": rubric,
        "cohort": tiny_cohort,
        "variants": [grounded],
        "raters_per_item": 2,
        "clinicians": clinicians,
    }
    with pytest.raises(EvaluationError, match="exactly two variants"):
        study_create(spec=StudySpec(**base), user=researcher)
    with pytest.raises(EvaluationError, match="between 1 and the number of enrolled clinicians"):
        study_create(spec=StudySpec(**{**base, "variants": [grounded, llm], "raters_per_item": 3}), user=researcher)
    with pytest.raises(EvaluationError, match="only clinicians"):
        study_create(
            spec=StudySpec(**{**base, "variants": [grounded, llm], "clinicians": [researcher], "raters_per_item": 1}),
            user=researcher,
        )
    study = study_create(
        spec=StudySpec(**{**base, "variants": [grounded, llm], "participants": 2, "seed": 4}), user=researcher
    )
    assert study.items.count() == 2 and study.status == "draft"
    assert {(item.variant_a_id, item.variant_b_id) for item in study.items.all()} == {(grounded.pk, llm.pk)}


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_concurrent_submits_of_one_assignment_leave_exactly_one_rating():
    if connection.vendor != "postgresql":
        pytest.skip("concurrent row locks need PostgreSQL; SQLite serializes writers anyway")
    study = build_study(items=1, raters=1, k=1)
    assignment = assignment_next(study=study, rater=study.clinicians.first())
    barrier = threading.Barrier(8)
    errors = []

    def hit():
        from django.db import connections

        barrier.wait()
        try:
            rating_submit(assignment_id=assignment.pk, rater=assignment.rater, scores=GOOD, comment="double click")
        except Exception as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Rating.objects.count() == 1 and RatingRevision.objects.count() == 1
