"""A rater's own assignment, read with its study, rubric, item and participant in one statement written once
(``healthagent.joined``): every request of a rated item (the page, its chart, the submit) starts here."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Model
from django.db.transaction import TransactionManagementError

from evaluation.errors import NotInQueue
from evaluation.models import Assignment, Criterion, Rubric, Study, StudyCounts, StudyItem, StudyRater
from evaluation.raters import QUEUE_PURPOSES
from healthagent.joined import JoinedRead
from healthagent.models import Participant, WebhookEndpoint
from healthagent.roles import (
    ROLE_NAMES,
    SESSION_DATA,
    USER_COLUMNS,
    adopt_session,
    authenticate_read_ahead,
    session_join,
    session_parameters,
    unread_session,
    unread_session_user_pk,
    user_columns,
    with_user_columns,
)

_PARTS: list[tuple[type[Model], str]] = [
    (Assignment, "a"),
    (Study, "s"),
    (Rubric, "r"),
    (StudyItem, "i"),
    (Participant, "p"),
]
_READS: dict[bool, JoinedRead] = {}  # without and with the rater's user row
# How a read ahead of the request's user knows who the user is (see _read_ahead): "" no read ahead; "user" the
# session's user, read already; "session" the session itself, read in the same statement.
Ahead = Literal["", "user", "session"]
_SQL: dict[tuple[bool, bool, Ahead], str] = {}


def _joins_and_access(ahead: Ahead = "") -> tuple[str, str]:
    """The assignment joined to its study, rubric, item and participant; the condition that it is the rater's own
    (parameters: the assignment's id, the rater's id twice) in a study they are enrolled in. ``ahead == "session"``:
    the assignment's own rater enrolled in its study (parameter: the assignment's id), whom the caller then checks
    the session names (_read_ahead)."""
    quote = connection.ops.quote_name
    table = {model: quote(model._meta.db_table) for model, _ in _PARTS}
    through = Study.clinicians.through._meta
    members = quote(through.db_table)
    member_study = quote(through.get_field("study").column)
    member_user = quote(through.get_field("user").column)
    joins = (
        f"{table[Assignment]} a"
        f" JOIN {table[Study]} s ON s.id = a.study_id"
        f" JOIN {table[Rubric]} r ON r.id = s.rubric_id"
        f" JOIN {table[StudyItem]} i ON i.id = a.item_id"
        f" JOIN {table[Participant]} p ON p.id = i.participant_id"
    )
    rater = "a.rater_id" if ahead == "session" else "%s"
    access = (
        "a.id = %s" if ahead == "session" else "a.id = %s AND a.rater_id = %s"
    ) + f" AND EXISTS (SELECT 1 FROM {members} m WHERE m.{member_study} = a.study_id AND m.{member_user} = {rater})"
    return joins, access


def _lock() -> str:
    return " FOR UPDATE OF a" if connection.features.has_select_for_update_of else ""


def _progress_columns() -> list[str]:
    """The rater's done, skipped and in-progress queue assignments in the study, its enrolled raters and its results
    items (not dropped): what evaluation.selectors.rater_progress counts, as columns of the assignment's read. The
    states, purposes and kind written out, not parameters (they are identifiers: checked below)."""
    assignments = connection.ops.quote_name(Assignment._meta.db_table)
    purposes = ", ".join(f"'{purpose.value}'" for purpose in QUEUE_PURPOSES)
    states = (Assignment.State.DONE.value, Assignment.State.SKIPPED.value, Assignment.State.IN_PROGRESS.value)
    assert all(value.isidentifier() for value in (*states, *(p.value for p in QUEUE_PURPOSES)))
    return [
        *(
            f"(SELECT COUNT(*) FROM {assignments} x WHERE x.study_id = a.study_id AND x.rater_id = a.rater_id"
            f" AND x.purpose IN ({purposes}) AND x.state = '{state}')"
            for state in states
        ),
        *study_counts_sql("a.study_id"),
    ]


def study_counts_sql(study: str) -> tuple[str, str]:
    """Two SQL expressions: the enrolled raters and the results items (not dropped) of the study whose id is the SQL
    expression ``study`` (a column, or ``%s``: used once by each). On PostgreSQL read from what it keeps
    (models.StudyCounts, by triggers), as counting read every enrolment and item of the study on every rating page
    (1,860 and 320 rows at the load test's scale); elsewhere (SQLite) counted."""
    quote = connection.ops.quote_name
    if connection.vendor == "postgresql":
        kept = f"FROM {quote(StudyCounts._meta.db_table)} n WHERE n.study_id = {study}"
        return f"COALESCE((SELECT n.raters {kept}), 0)", f"COALESCE((SELECT n.results_items {kept}), 0)"
    through = Study.clinicians.through._meta
    members, member_study = quote(through.db_table), quote(through.get_field("study").column)
    items, results = quote(StudyItem._meta.db_table), StudyItem.Kind.RESULTS.value
    assert results.isidentifier()  # written into the statement as a literal
    return (
        f"(SELECT COUNT(*) FROM {members} e WHERE e.{member_study} = {study})",
        f"(SELECT COUNT(*) FROM {items} k WHERE k.study_id = {study} AND k.dropped_at IS NULL AND k.kind = '{results}')",
    )


def _ahead_columns(ahead: Ahead) -> list[str]:
    """What a read ahead of the user adds last to a statement's columns: ``user_columns`` (parameters: ``ROLE_NAMES``),
    and by the session, the session's data."""
    return [*user_columns("u"), *([SESSION_DATA] if ahead == "session" else [])] if ahead else []


def _ahead_joins(ahead: Ahead) -> str:
    """The rater's user row, and by the session, the session's row (``session_join``: no row, so nothing read or
    locked, for a session that is not there or has expired; parameters: ``session_parameters``)."""
    user = f" JOIN {connection.ops.quote_name(User._meta.db_table)} u ON u.id = a.rater_id"
    return user + (session_join() if ahead == "session" else "")


def _statement(for_update: bool, with_progress: bool = False, ahead: Ahead = "") -> tuple[JoinedRead, str]:
    """The assignment's read; ``ahead``: with the rater's user row, and the columns of ``_ahead_columns`` last."""
    with_user = bool(ahead)
    if with_user not in _READS:
        _READS[with_user] = JoinedRead([*_PARTS, (User, "u")] if with_user else _PARTS)
    read = _READS[with_user]
    key = (for_update, with_progress, ahead)
    if key not in _SQL:
        joins, access = _joins_and_access(ahead)
        criteria = connection.ops.quote_name(Criterion._meta.db_table)
        extra = [f"EXISTS (SELECT 1 FROM {criteria} c WHERE c.item_id = a.item_id)"]
        if with_progress:
            extra += _progress_columns()
        if with_user:
            extra += _ahead_columns(ahead)
            joins += _ahead_joins(ahead)
        _SQL[key] = (
            f"SELECT {read.columns}, {', '.join(extra)} FROM {joins} WHERE {access}{_lock() if for_update else ''}"
        )
    return read, _SQL[key]


def access_assignment(
    *, assignment_id: int, rater: User, for_update: bool = False, with_progress: bool = False
) -> Assignment:
    """The rater's own assignment in a study they are still enrolled in; anything else (another clinician's, a
    missing one, one of a study they were removed from) is NotInQueue. ``for_update`` locks the assignment's row (in
    the caller's transaction) and no other. ``assignment.item.has_criteria``: whether the item has criteria.
    ``with_progress``: ``assignment.progress_counts`` holds what evaluation.selectors.rater_progress counts, read in
    the same statement (the rating page shows it: one round trip fewer)."""
    if for_update and connection.get_autocommit():
        raise TransactionManagementError("access_assignment(for_update=True) locks within the caller's transaction")
    read, sql = _statement(for_update, with_progress)
    try:
        found = read.fetch_one_with_extra(sql, [int(assignment_id), rater.pk, rater.pk])
    except (TypeError, ValueError, OverflowError):
        found = None
    if found is None:
        raise NotInQueue("there is no such item in your queue")
    (assignment, study, rubric, item, participant), (has_criteria, *progress) = found
    return _linked(assignment, study, rubric, item, participant, has_criteria, progress if with_progress else None)


def _read_ahead(
    request, statement: Callable[[Ahead], tuple[JoinedRead, str]], parameters: list[Any], assignment_id: Any
) -> tuple[list[Any], list[Any]] | None:
    """Read ``statement`` (its rows, then the rater's user, then the columns of ``_ahead_columns``; ``parameters``:
    its own, before the user's) for the user the request's session names, before the request's user is read, and
    authenticate the request with that user (Django's checks of the session, healthagent.roles.
    authenticate_read_ahead). While the session is not read either and the database keeps it, the session's row is
    read in the same statement too, and the user is the assignment's rater if the session names them
    (healthagent.roles.adopt_session): no read of the session of its own. The statement's instances and its own extra
    columns; None, with nothing decided, when there is nothing to read ahead (the user already read, no session
    user), no row (not the user's own assignment, not an id) or a session that does not name the rater: the caller
    then takes the usual path (the request's user, its role, the plain read), whose answers, errors included, stay
    the only ones."""
    session = unread_session(request)
    if session is not None:
        read, sql = statement("session")
        parameters = [*parameters, *ROLE_NAMES, *session_parameters(session)]
    else:
        user_id = unread_session_user_pk(request)
        if user_id is None:
            return None
        read, sql = statement("user")
        parameters = [*parameters, *ROLE_NAMES]
    try:
        access = [int(assignment_id)] if session is not None else [int(assignment_id), user_id, user_id]
        found = read.fetch_one_with_extra(sql, [*parameters, *access])
    except (TypeError, ValueError, OverflowError):
        return None
    if found is None:
        return None
    (*instances, user), extra = found
    if session is not None:
        *extra, data = extra
        if not adopt_session(session, data, user.pk):
            return None
    if not authenticate_read_ahead(request, with_user_columns(user, extra[-USER_COLUMNS:])):
        return None
    return instances, extra[:-USER_COLUMNS]


def access_assignment_as_session_user(request, *, assignment_id: Any, with_progress: bool = False) -> Assignment | None:
    """:func:`access_assignment` with the request's user (and session) read ahead in the same statement
    (:func:`_read_ahead`): one round trip (two) fewer for the rated item's page and chart. None: take the usual
    path."""
    found = _read_ahead(request, lambda ahead: _statement(False, with_progress, ahead), [], assignment_id)
    if found is None:
        return None
    (assignment, study, rubric, item, participant), (has_criteria, *progress) = found
    return _linked(assignment, study, rubric, item, participant, has_criteria, progress if with_progress else None)


def _linked(
    assignment: Assignment,
    study: Study,
    rubric: Rubric,
    item: StudyItem,
    participant: Participant,
    has_criteria: Any,
    progress: list[Any] | None,
) -> Assignment:
    cast(Any, item).has_criteria = bool(
        has_criteria
    )  # as an annotation would: the page asks for criteria only if there are
    assert isinstance(assignment, Assignment) and isinstance(study, Study) and isinstance(item, StudyItem)
    assert isinstance(rubric, Rubric) and isinstance(participant, Participant)
    study.rubric, item.participant = rubric, participant
    assignment.study, assignment.item = study, item
    if progress is not None:
        cast(Any, assignment).progress_counts = tuple(int(value or 0) for value in progress)
    return assignment


@dataclass
class RaterTurn:
    """What a rating's submit and the hand-out of the rater's next item need besides the assignment, read with it
    in the same statement (:func:`access_turn`), as of the submit's start."""

    assignment: Assignment
    standing: StudyRater | None  # the rater's row in the study (None: none yet)
    gating_kinds: set[str]  # which of training and qualification items the study has (not dropped)
    other_open_id: int | None  # another of the rater's assignments in this study still in progress (two tabs)
    queue_turns: int  # the rater's main, gold and repeat assignments in this study so far
    webhooks_may_listen: bool  # an active endpoint for this study or the whole site exists (webhooks checks more)
    gold: tuple[int, int]  # (matched, graded) of the rater's gold items since their reinstatement: raters.gold_accuracy


_GOLD = Assignment.Purpose.GOLD.value
_GATING_KINDS = (StudyItem.Kind.TRAINING.value, StudyItem.Kind.QUALIFICATION.value)  # in the turn's order
assert all(value.isidentifier() for value in (_GOLD, *_GATING_KINDS))  # written into the statement as literals

_TURN_STATEMENTS: dict[Ahead, tuple[JoinedRead, str]] = {}


def _turn_statement(ahead: Ahead = "") -> tuple[JoinedRead, str]:
    """The turn's read; ``ahead``: with the rater's user row, and the columns of ``_ahead_columns`` last."""
    with_user = bool(ahead)
    if ahead not in _TURN_STATEMENTS:
        parts: list[tuple[type[Model], str]] = [*_PARTS, (StudyRater, "sr"), *([(User, "u")] if with_user else [])]
        read = JoinedRead(parts)
        quote = connection.ops.quote_name
        table = {model: quote(model._meta.db_table) for model, _ in parts}
        assignments, items = table[Assignment], table[StudyItem]
        criteria, endpoints = quote(Criterion._meta.db_table), quote(WebhookEndpoint._meta.db_table)
        joins, access = _joins_and_access(ahead)
        # The kinds written out, not parameters: so the prepared statement's plan knows them rare and probes the index
        # of a study's kept items by kind (models: studyitem_kept_by_kind) rather than scanning the study's items.
        kinds = [
            f"EXISTS (SELECT 1 FROM {items} k WHERE k.study_id = a.study_id AND k.dropped_at IS NULL AND k.kind = '{kind}')"
            for kind in _GATING_KINDS
        ]
        extra = [
            *kinds,
            f"(SELECT o.id FROM {assignments} o WHERE o.study_id = a.study_id AND o.rater_id = a.rater_id"
            " AND o.state = %s AND o.id <> a.id ORDER BY o.assigned_at, o.id LIMIT 1)",
            f"(SELECT COUNT(*) FROM {assignments} q WHERE q.study_id = a.study_id AND q.rater_id = a.rater_id"
            f" AND q.purpose IN ({', '.join(['%s'] * len(QUEUE_PURPOSES))}))",
            f"EXISTS (SELECT 1 FROM {criteria} c WHERE c.item_id = a.item_id)",
            f"EXISTS (SELECT 1 FROM {endpoints} w WHERE w.active AND (w.study_id IS NULL OR w.study_id = a.study_id))",
            # The purpose written out, not a parameter: so the prepared statement's plan can use the partial index
            # of gold assignments (models: assignment_gold_by_rater), whose condition it must match.
            *[
                f"(SELECT COUNT(*) FROM {assignments} g WHERE g.study_id = a.study_id AND g.rater_id = a.rater_id"
                f" AND g.purpose = '{_GOLD}' AND g.matches_reference IS NOT NULL{matched}"
                " AND (sr.reinstated_at IS NULL OR g.completed_at > sr.reinstated_at))"
                for matched in (" AND g.matches_reference", "")
            ],
            *_ahead_columns(ahead),
        ]
        user_join = _ahead_joins(ahead) if with_user else ""
        _TURN_STATEMENTS[ahead] = (
            read,
            f"SELECT {read.columns}, {', '.join(extra)} FROM {joins}{user_join}"
            f" LEFT JOIN {table[StudyRater]} sr ON sr.study_id = a.study_id AND sr.rater_id = a.rater_id"
            f" WHERE {access}{_lock()}",
        )
    return _TURN_STATEMENTS[ahead]


_TURN_PARAMETERS = [Assignment.State.IN_PROGRESS.value, *(str(purpose) for purpose in QUEUE_PURPOSES)]


def access_turn(*, assignment_id: int, rater: User) -> RaterTurn:
    """:func:`access_assignment` locked for a submit (in the caller's transaction), with the rater's standing and what
    handing out their next item needs: one statement."""
    read, sql = _turn_statement()
    try:
        found = read.fetch_one_with_extra(sql, [*_TURN_PARAMETERS, int(assignment_id), rater.pk, rater.pk])
    except (TypeError, ValueError, OverflowError):
        found = None
    if found is None:
        raise NotInQueue("there is no such item in your queue")
    return _turn(*found)


def access_turn_as_session_user(request, *, assignment_id: Any) -> RaterTurn | None:
    """:func:`access_turn` with the request's user (and session) read ahead in the same statement (:func:`_read_ahead`,
    as :func:`access_assignment_as_session_user` does for the item's page): one round trip (two) fewer for a rated
    item's submit. Locks the assignment in the caller's transaction: read by a live session, before the session is
    known to name its rater, so a signed-in request for another rater's assignment holds that row until its
    transaction ends (the refusal that follows: nothing of it is read out or written); a request without a live
    session reads and locks nothing. None: take the usual path (:func:`access_turn`)."""
    if connection.get_autocommit():
        raise TransactionManagementError("access_turn_as_session_user locks within the caller's transaction")
    found = _read_ahead(request, _turn_statement, list(_TURN_PARAMETERS), assignment_id)
    return None if found is None else _turn(*found)


def _turn(instances: list[Any], extra: list[Any]) -> RaterTurn:
    assignment, study, rubric, item, participant, standing = instances
    training, qualification, other_open_id, queue_turns, has_criteria, webhooks, matched, graded = extra
    item.has_criteria = bool(has_criteria)
    study.rubric, item.participant = rubric, participant
    assignment.study, assignment.item = study, item
    return RaterTurn(
        assignment=assignment,
        standing=standing,
        gating_kinds={
            kind
            for kind, there in ((StudyItem.Kind.TRAINING, training), (StudyItem.Kind.QUALIFICATION, qualification))
            if there
        },
        other_open_id=None if other_open_id is None else int(other_open_id),
        queue_turns=int(queue_turns),
        webhooks_may_listen=bool(webhooks),
        gold=(int(matched), int(graded)),
    )
