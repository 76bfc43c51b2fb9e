"""The rows every rated item writes, in as few prepared statements as they can be (``healthagent.joined``): a first
submit's rating, its first revision and its assignment marked done in one statement, and the next item's assignment.

The ORM's ``create`` and ``save`` compile each insert and update again, which cost more of a submit's CPU than
PostgreSQL spends writing the rows (bench/results/load-profile.md). The statements are written once per process from
the models' metadata and the values prepared as the ORM prepares them, so a field added to these models is written
here too; ``tests/evaluation/test_writes.py`` checks that the rows are those the ORM writes. Elsewhere than on
PostgreSQL (SQLite: the embedded profile) the ORM writes them.
"""

import functools
from typing import Any

from django.db import connection
from django.utils import timezone

from evaluation.models import Assignment, Rating, RatingRevision
from healthagent.joined import PreparedInsert, prepared_cursor

# What a first submit sets on its assignment (services.rating_submit_turn).
DONE_FIELDS = ("state", "completed_at", "time_spent_s", "draft")


@functools.cache
def _done_fields() -> list[Any]:
    fields = {field.name: field for field in Assignment._meta.concrete_fields}
    return [fields[name] for name in DONE_FIELDS]


@functools.cache
def _insert(model: type) -> PreparedInsert:
    return PreparedInsert(model)


@functools.cache
def _first_rating_sql() -> str:
    """The rating inserted, its first revision inserted with the rating's new id, the assignment updated: one
    statement (data-modifying ``WITH``), returning the rating's id."""
    quote = connection.ops.quote_name
    rating, revision = _insert(Rating), _insert(RatingRevision)
    pk = quote(str(Rating._meta.pk.column))
    revision_values = ", ".join(f"r.{pk}" if field.name == "rating" else "%s" for field in revision.fields)
    table = quote(Assignment._meta.db_table)
    sets = ", ".join(f"{quote(str(field.column))} = %s" for field in _done_fields())
    return (
        f"WITH r AS ({rating.sql}),"
        f" v AS (INSERT INTO {revision.table} ({revision.column_list}) SELECT {revision_values} FROM r)"
        f" UPDATE {table} SET {sets} FROM r WHERE {table}.{quote(str(Assignment._meta.pk.column))} = %s"
        f" RETURNING r.{pk}"
    )


def first_rating(*, assignment: Assignment, content: dict[str, Any], time_spent_s: float) -> Rating:
    """A first submit's rows: the rating of ``assignment`` (locked by the caller, in its transaction) with
    ``content``, its revision 1, and the assignment done (``DONE_FIELDS``, set on the instance too). Returns the
    rating, saved, its ``assignment`` the one given."""
    rating = Rating(assignment=assignment, revision=1, **content)
    revision = RatingRevision(rating=rating, number=1, time_spent_s=time_spent_s, **content)
    assignment.state = Assignment.State.DONE
    assignment.completed_at = assignment.completed_at or timezone.now()
    assignment.time_spent_s += time_spent_s
    assignment.draft = {}
    if connection.vendor != "postgresql":
        rating.save(force_insert=True)
        revision.rating = rating
        revision.save(force_insert=True)
        assignment.save(update_fields=list(DONE_FIELDS))
        return rating
    inserts = _insert(Rating), _insert(RatingRevision)
    revision_values = [
        value
        for field, value in zip(inserts[1].fields, inserts[1].values(revision), strict=True)
        if field.name != "rating"
    ]
    done = [field.get_db_prep_save(getattr(assignment, field.attname), connection) for field in _done_fields()]
    with prepared_cursor(connection) as cursor:
        cursor.execute(_first_rating_sql(), [*inserts[0].values(rating), *revision_values, *done, assignment.pk])
        (pk,) = cursor.fetchone()
    inserts[0].saved(rating, pk)
    return rating


def new_assignment(assignment: Assignment) -> Assignment:
    """Insert a new assignment (the hand-out of an item) and return it saved."""
    return _insert(Assignment).insert(assignment)
