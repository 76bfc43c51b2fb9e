"""A rater's own assignment, read with its study, rubric, item and participant in one statement written once
(``healthagent.joined``): every request of a rated item (the page, its chart, the submit) starts here."""

from django.contrib.auth.models import User
from django.db import connection

from evaluation.errors import NotInQueue
from evaluation.models import Assignment, Rubric, Study, StudyItem
from healthagent.joined import JoinedRead
from healthagent.models import Participant

_READ: JoinedRead | None = None
_SQL: dict[bool, str] = {}


def _statement(for_update: bool) -> tuple[JoinedRead, str]:
    global _READ
    if _READ is None:
        _READ = JoinedRead([(Assignment, "a"), (Study, "s"), (Rubric, "r"), (StudyItem, "i"), (Participant, "p")])
    if for_update not in _SQL:
        quote = connection.ops.quote_name
        table = {model: quote(model._meta.db_table) for model in (Assignment, Study, Rubric, StudyItem, Participant)}
        through = Study.clinicians.through._meta
        members = quote(through.db_table)
        member_study = quote(through.get_field("study").column)
        member_user = quote(through.get_field("user").column)
        lock = " FOR UPDATE OF a" if for_update and connection.features.has_select_for_update_of else ""
        _SQL[for_update] = (
            f"SELECT {_READ.columns} FROM {table[Assignment]} a"
            f" JOIN {table[Study]} s ON s.id = a.study_id"
            f" JOIN {table[Rubric]} r ON r.id = s.rubric_id"
            f" JOIN {table[StudyItem]} i ON i.id = a.item_id"
            f" JOIN {table[Participant]} p ON p.id = i.participant_id"
            " WHERE a.id = %s AND a.rater_id = %s"
            f" AND EXISTS (SELECT 1 FROM {members} m WHERE m.{member_study} = a.study_id AND m.{member_user} = %s)"
            f"{lock}"
        )
    return _READ, _SQL[for_update]


def access_assignment(*, assignment_id: int, rater: User, for_update: bool = False) -> Assignment:
    """The rater's own assignment in a study they are still enrolled in; anything else (another clinician's, a
    missing one, one of a study they were removed from) is NotInQueue. ``for_update`` locks the assignment's row (in
    the caller's transaction) and no other."""
    read, sql = _statement(for_update)
    try:
        found = read.fetch_one(sql, [int(assignment_id), rater.pk, rater.pk])
    except (TypeError, ValueError, OverflowError):
        found = None
    if found is None:
        raise NotInQueue("there is no such item in your queue")
    assignment, study, rubric, item, participant = found
    assert isinstance(assignment, Assignment) and isinstance(study, Study) and isinstance(item, StudyItem)
    assert isinstance(rubric, Rubric) and isinstance(participant, Participant)
    study.rubric, item.participant = rubric, participant
    assignment.study, assignment.item = study, item
    return assignment
