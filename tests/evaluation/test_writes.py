"""The rows of a rated item written by prepared statements (evaluation.writes, issue 27): each must be the row the
ORM writes, and the instance returned the one the ORM would return."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from evaluation.assignment import assignment_next
from evaluation.models import Assignment, Rating, RatingRevision
from evaluation.services import rating_submit

pytestmark = pytest.mark.django_db

SCORES = {"relevance": 4, "context": 3, "safety": 5}


def _fields(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


def test_a_first_submit_writes_the_rating_its_revision_and_the_assignment_as_the_orm_would(grounded_study):
    clinician = grounded_study.clinicians.order_by("pk").first()
    opened = assignment_next(study=grounded_study, rater=clinician)
    assert opened.time_spent_s == 0.0 and opened.completed_at is None
    with CaptureQueriesContext(connection) as captured:
        rating = rating_submit(
            assignment_id=opened.pk,
            rater=clinician,
            scores=SCORES,
            comment="Fine; the walk is right",
            evidence=[],
            time_spent_s=42.5,
        )
    stored = Rating.objects.get(assignment=opened)
    assert _fields(rating) == _fields(stored) and not rating._state.adding and rating._state.db == "default"
    assert rating.assignment.pk == opened.pk and rating.revision == 1
    assert stored.scores == SCORES and stored.comment == "Fine; the walk is right" and stored.harm == {}
    (revision,) = RatingRevision.objects.filter(rating=stored)
    assert revision.number == 1 and revision.time_spent_s == 42.5 and revision.scores == SCORES
    assert {name: getattr(revision, name) for name in ("comment", "unsafe", "harm", "evidence", "criteria")} == {
        name: getattr(stored, name) for name in ("comment", "unsafe", "harm", "evidence", "criteria")
    }
    done = Assignment.objects.get(pk=opened.pk)
    assert (done.state, done.time_spent_s, done.draft) == (Assignment.State.DONE, 42.5, {})
    assert done.completed_at is not None and done.completed_at == rating.assignment.completed_at
    assert stored.created_at <= stored.updated_at and revision.created_at is not None
    writes = [query["sql"] for query in captured.captured_queries if "INSERT" in query["sql"]]
    if connection.vendor == "postgresql":  # the three rows in one statement; elsewhere the ORM's three
        assert len(writes) == 1 and "evaluation_ratingrevision" in writes[0]


def test_a_revision_after_the_first_submit_goes_on_as_before(grounded_study):
    clinician = grounded_study.clinicians.order_by("pk").first()
    opened = assignment_next(study=grounded_study, rater=clinician)
    first = rating_submit(assignment_id=opened.pk, rater=clinician, scores=SCORES, time_spent_s=10)
    second = rating_submit(assignment_id=opened.pk, rater=clinician, scores={**SCORES, "safety": 2}, time_spent_s=5)
    assert second.pk == first.pk and second.revision == 2
    assert list(RatingRevision.objects.filter(rating=first).values_list("number", "time_spent_s")) == [(1, 10), (2, 5)]
    done = Assignment.objects.get(pk=opened.pk)
    assert done.time_spent_s == 15 and done.completed_at == first.assignment.completed_at


def test_a_failed_first_submit_leaves_no_row(grounded_study):
    """The statement is one: a transaction that fails after it keeps none of its three writes."""
    from django.db import transaction

    from evaluation.writes import first_rating

    clinician = grounded_study.clinicians.order_by("pk").first()
    opened = assignment_next(study=grounded_study, rater=clinician)
    with pytest.raises(RuntimeError), transaction.atomic():
        first_rating(assignment=opened, content={"scores": SCORES}, time_spent_s=3.0)
        raise RuntimeError("after the write")
    assert not Rating.objects.filter(assignment=opened).exists() and not RatingRevision.objects.exists()
    assert Assignment.objects.get(pk=opened.pk).state == Assignment.State.IN_PROGRESS


def test_the_hand_out_s_assignment_is_the_row_the_orm_reads_back(grounded_study):
    clinician = grounded_study.clinicians.order_by("pk").first()
    opened = assignment_next(study=grounded_study, rater=clinician)
    stored = Assignment.objects.get(pk=opened.pk)
    assert _fields(opened) == _fields(stored)
    assert not opened._state.adding and opened.assigned_at is not None and stored.draft == {}


def test_the_models_written_by_prepared_statements_have_no_save_signal_receivers():
    """evaluation.writes sends no pre_save or post_save: a receiver added for these models (an audit, a history)
    would silently miss the rows of every rated item, so it must move the write back to the ORM first."""
    from django.db.models.signals import post_save, pre_save

    for model in (Assignment, Rating, RatingRevision):
        for signal in (pre_save, post_save):
            assert not signal.has_listeners(model), f"{signal} has receivers for {model.__name__}"
