"""Writes of the evaluation app: creating and opening studies, drafts, skips and ratings.

Every function validates first and writes inside one transaction; events for live dashboards
are sent only after the transaction commits.
"""

import dataclasses
import json
import math
import random
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from evaluation.access import RaterTurn, access_turn
from evaluation.access import access_assignment as access_assignment  # views import it from services
from evaluation.criteria import grades_clean
from evaluation.errors import EvaluationError as EvaluationError  # raised here; views import it from services
from evaluation.errors import NotInQueue as NotInQueue
from evaluation.evidence import EvidenceError, evidence_clean
from evaluation.models import (
    HARM_QUESTIONS,
    Assignment,
    Dimension,
    Rating,
    RatingRevision,
    Rubric,
    Study,
    StudyItem,
    StudyRater,
)
from evaluation.raters import (
    QUEUE_PURPOSES,
    RATER_SETTINGS,
    RaterError,
    after_rating,
    background_fields_check,
    standing_of,
)
from evaluation.selectors import rubric_dimensions
from evaluation.triage import incident_open_for
from evaluation.writes import DONE_FIELDS, first_rating
from healthagent.audit import Action, audit_record
from healthagent.cohort.charts import DEFAULT_CHANNELS
from healthagent.cohort.days import shown_days
from healthagent.events import group_notify_on_commit
from healthagent.jsonlimits import json_check, json_loads_bounded, text_check
from healthagent.models import AgentVariant, Cohort, Invitation, Participant
from healthagent.roles import RESULTS_ROLES, Role, user_has_role
from healthagent.webhooks import wanting, webhook_emit, webhook_endpoints_for
from modeling.jobs import job_queue

MAX_TIME_ON_ITEM_S = 3 * 3600
DRAFT_MAX_CHARS = 20_000  # a draft (scores, text, criteria, evidence windows) as JSON


def study_group(study_id: int) -> str:
    return f"study.{study_id}"


@dataclass
class StudySpec:
    name: str
    mode: str
    rubric: Rubric
    cohort: Cohort
    variants: list[AgentVariant]  # absolute: each is rated; pairwise: exactly two, compared
    raters_per_item: int
    clinicians: list[User]
    instructions: str = ""
    participants: int | None = None  # a random sample of this many; None for all
    window_days: int = 14
    seed: int = 0
    restricted: bool = False  # only the creator, ``researchers`` and admins see a restricted study
    researchers: list[User] = dataclasses.field(default_factory=list)
    show_captions: bool = False
    rater_settings: dict[str, Any] = dataclasses.field(default_factory=dict)  # consent, qualification, quality control


def _check_rater_settings(settings: dict[str, Any]) -> dict[str, Any]:
    unknown = set(settings) - set(RATER_SETTINGS)
    if unknown:
        raise EvaluationError(f"unknown rater settings: {', '.join(sorted(unknown))}")
    for name, low, high in (("pass_threshold", 0.01, 1.0), ("gold_rate", 0.0, 0.5), ("repeat_share", 0.0, 0.5)):
        if name in settings and not low <= float(settings[name]) <= high:
            raise EvaluationError(f"{name.replace('_', ' ')} must be between {low:g} and {high:g}")
    if "background_fields" in settings:
        try:
            background_fields_check(settings["background_fields"])
        except RaterError as error:
            raise EvaluationError(str(error)) from error
    return settings


def study_create(*, spec: StudySpec, user: User) -> Study:
    """A draft study with its items: cohort participants × variants (absolute) or one pair each (pairwise)."""
    if spec.mode not in Study.Mode.values:
        raise EvaluationError(f"unknown mode {spec.mode!r}")
    if spec.mode == Study.Mode.PAIRWISE and len(spec.variants) != 2:
        raise EvaluationError("a pairwise study compares exactly two variants")
    if spec.mode == Study.Mode.ABSOLUTE and not spec.variants:
        raise EvaluationError("choose at least one variant to rate")
    if not 1 <= spec.raters_per_item <= max(len(spec.clinicians), 1):
        raise EvaluationError(
            f"raters per item must be between 1 and the number of enrolled clinicians ({len(spec.clinicians)})"
        )
    if any(not user_has_role(clinician, Role.CLINICIAN) for clinician in spec.clinicians):
        raise EvaluationError("only clinicians can be enrolled as raters")
    if blinded_out := [c.get_username() for c in spec.clinicians if user_has_role(c, *RESULTS_ROLES)]:
        raise EvaluationError(
            f"{', '.join(sorted(blinded_out))} also hold a researcher or admin role: a rater must not be able to see "
            "the study's results, so only clinicians without those roles can be enrolled"
        )
    if any(not user_has_role(researcher, Role.RESEARCHER) for researcher in spec.researchers):
        raise EvaluationError("only researchers can be given access to a restricted study")
    if Study.objects.filter(name=spec.name).exists():  # the same words whether or not one may see that study
        raise EvaluationError("that study name is not available: choose another")
    participants = list(spec.cohort.participants.order_by("pk"))
    if not participants:
        raise EvaluationError("the cohort has no participants")
    if spec.participants is not None:
        if spec.participants < 1:
            raise EvaluationError("sample at least one participant")
        participants = sorted(
            random.Random(spec.seed).sample(participants, min(spec.participants, len(participants))), key=lambda p: p.pk
        )
    with transaction.atomic():
        study = Study(
            name=spec.name,
            mode=spec.mode,
            rubric=spec.rubric,
            instructions=spec.instructions,
            raters_per_item=spec.raters_per_item,
            window_days=spec.window_days,
            seed=spec.seed,
            created_by=user,
            restricted=spec.restricted,
            show_captions=spec.show_captions,
            **_check_rater_settings(spec.rater_settings),
        )
        study.full_clean()
        study.save()
        study.clinicians.set(spec.clinicians)
        study.researchers.set(spec.researchers)
        pairs: list[tuple[Participant, AgentVariant, AgentVariant | None]]
        if spec.mode == Study.Mode.PAIRWISE:
            pairs = [(participant, spec.variants[0], spec.variants[1]) for participant in participants]
        else:
            pairs = [(participant, variant, None) for participant in participants for variant in spec.variants]
        order = list(range(len(pairs)))
        random.Random(spec.seed).shuffle(order)
        StudyItem.objects.bulk_create(
            [
                StudyItem(
                    study=study, participant=participant, variant_a=variant_a, variant_b=variant_b, position=position
                )
                for position, (participant, variant_a, variant_b) in zip(order, pairs, strict=True)
            ]
        )
        audit_record(
            actor=user,
            action=Action.STUDY_CREATED,
            target=study,
            details={
                "mode": study.mode,
                "items": len(pairs),
                "restricted": study.restricted,
                "clinicians": sorted(clinician.get_username() for clinician in spec.clinicians),
                "researchers": sorted(researcher.get_username() for researcher in spec.researchers),
            },
        )
    return study


def study_set_status(*, study: Study, status: str, user: User | None = None, via: str = "", note: str = "") -> Study:
    """draft -> open -> closed; closing freezes every rating, and reopening a closed study (with a ``note``
    saying why) lets clinicians rate and revise again. Every change is audited with ``user``."""
    allowed: dict[str, set[str]] = {
        Study.Status.DRAFT: {Study.Status.OPEN},
        Study.Status.OPEN: {Study.Status.CLOSED},
        Study.Status.CLOSED: {Study.Status.OPEN},
    }
    if status not in allowed[study.status]:
        raise EvaluationError(f"a {study.get_status_display().lower()} study cannot become {status}")
    if status == Study.Status.OPEN and not study.clinicians.exists():
        raise EvaluationError("enrol at least one clinician before opening the study")
    reopening = study.status == Study.Status.CLOSED
    note = (note or "").strip()
    if reopening and not note:
        raise EvaluationError("say why the study is reopened: the reason is kept in the audit log")
    with transaction.atomic():
        study.status = status
        study.opened_at = timezone.now() if status == Study.Status.OPEN and not reopening else study.opened_at
        study.closed_at = timezone.now() if status == Study.Status.CLOSED else None
        study.save(update_fields=["status", "opened_at", "closed_at"])
        action = (
            Action.STUDY_REOPENED
            if reopening
            else Action.STUDY_OPENED
            if status == Study.Status.OPEN
            else Action.STUDY_CLOSED
        )
        audit_record(
            actor=user, via=via, action=action, target=study, details={"note": note[:1000]} if reopening else None
        )
        group_notify_on_commit(group=study_group(study.pk), payload={"event": "status", "status": status})
        webhook_emit(
            event_type="study.opened" if status == Study.Status.OPEN else "study.closed",
            data={"reopened": reopening},
            study_id=study.pk,
        )
        if status == Study.Status.OPEN and not reopening and settings.STUDY_CHARTS_AT_OPEN:
            # Every item's chart built once, as a file, before clinicians ask (evaluation.chart_jobs).
            job_queue(kind_name="study_charts", config={"study": study.pk}, user=user, via="study opened")
    return study


def study_rater_enrol(*, study: Study, user: User, actor: User | None = None, via: str = "") -> None:
    """Enrol a clinician as a rater of ``study`` (not a closed one; never someone who may see its results)."""
    if study.status == Study.Status.CLOSED:
        raise EvaluationError("the study is closed")
    if not user_has_role(user, Role.CLINICIAN) or user_has_role(user, *RESULTS_ROLES):
        raise EvaluationError("only clinicians without a researcher or admin role rate a study")
    with transaction.atomic():
        study.clinicians.add(user)
        audit_record(actor=actor, via=via, action=Action.STUDY_RATER_ENROLLED, target=study, details={"user": user.pk})


def invitation_enrol(invitation: Invitation, user: User) -> str:
    """The acceptance hook of invitations (healthagent.invitations): enrol the new clinician in the invitation's
    study. A study closed or gone since costs the person nothing but the enrolment, and they are told."""
    if invitation.study_id is None:
        return ""
    study = Study.objects.filter(pk=invitation.study_id).first()
    if study is None:
        return "The study you were invited to no longer exists."
    try:
        with transaction.atomic():
            study_rater_enrol(study=study, user=user, via=f"invitation #{invitation.pk}")
    except EvaluationError as error:
        return f"You were not enrolled in the study {study.name}: {error}."
    return f"You are enrolled in the study {study.name}."


def _check_editable(assignment: Assignment) -> None:
    if assignment.study.status != Study.Status.OPEN:
        raise EvaluationError("this study is closed: ratings can no longer be changed")


def assignment_save_draft(*, assignment_id: int, rater: User, draft: dict[str, Any]) -> None:
    """Keep what the rater has entered so far (autosave); never a rating by itself."""
    try:
        if not isinstance(draft, dict):
            raise ValueError("not a JSON object")
        json_check(draft)  # no NUL, infinity or NaN (which no database keeps as JSON), not too deep
        if len(json.dumps(draft, ensure_ascii=False)) > DRAFT_MAX_CHARS:
            raise ValueError(f"longer than {DRAFT_MAX_CHARS:,} characters")
    except ValueError as error:
        raise EvaluationError(f"the draft is not valid: {error}") from error
    with transaction.atomic():
        assignment = access_assignment(assignment_id=assignment_id, rater=rater, for_update=True)
        _check_editable(assignment)
        assignment.draft = draft
        assignment.save(update_fields=["draft"])


def assignment_skip(*, assignment_id: int, rater: User, reason: str) -> Assignment:
    reason = (reason or "").strip()
    if not reason:
        raise EvaluationError("say why you skip this item")
    with transaction.atomic():
        assignment = access_assignment(assignment_id=assignment_id, rater=rater, for_update=True)
        _check_editable(assignment)
        if hasattr(assignment, "rating"):
            raise EvaluationError("this item is already rated; edit the rating instead")
        if assignment.purpose in (Assignment.Purpose.TRAINING, Assignment.Purpose.QUALIFICATION):
            raise EvaluationError(f"a {assignment.purpose} item cannot be skipped: rate it as well as you can")
        assignment.state, assignment.skip_reason, assignment.completed_at = (
            Assignment.State.SKIPPED,
            reason[:300],
            timezone.now(),
        )
        assignment.save(update_fields=["state", "skip_reason", "completed_at"])
        group_notify_on_commit(
            group=study_group(assignment.study_id), payload={"event": "skip", "assignment": assignment.pk}
        )
    return assignment


def _clean_scores(dimensions: list[Dimension], scores: dict[str, Any], pairwise: bool) -> dict[str, Any]:
    cleaned = {}
    for dimension in dimensions:
        value = scores.get(dimension.key)
        if value in (None, ""):
            raise EvaluationError(f"give a {'choice' if pairwise else 'score'} for {dimension.label}")
        if pairwise:
            if value not in {"a", "b", "tie"}:
                raise EvaluationError(f"{dimension.label}: choose answer A, answer B or a tie")
            cleaned[dimension.key] = value
        else:
            try:
                number = int(value)
            except (TypeError, ValueError) as error:
                raise EvaluationError(f"{dimension.label}: {value!r} is not a score") from error
            if number not in dimension.points:
                raise EvaluationError(
                    f"{dimension.label}: the score must be one of {', '.join(map(str, dimension.points))}"
                )
            cleaned[dimension.key] = number
    unknown = set(scores) - {dimension.key for dimension in dimensions}
    if unknown:
        raise EvaluationError(f"unknown dimensions: {', '.join(sorted(unknown))}")
    return cleaned


def _clean_harm(harm_dimensions: list[Dimension], harm: dict[str, Any]) -> dict[str, str]:
    """The answer to the rubric's harm dimension (if it has one): an extent and a likelihood, both required."""
    if not harm_dimensions:
        return {}
    cleaned = {}
    for key, (label, values) in HARM_QUESTIONS.items():
        value = harm.get(key)
        if value in (None, ""):
            raise EvaluationError(f"answer {label.lower()}")
        if value not in {choice for choice, _ in values}:
            raise EvaluationError(f"{label}: {value!r} is not one of the choices")
        cleaned[key] = str(value)
    return cleaned


def _clean_evidence(assignment: Assignment, dimensions: list[Dimension], evidence: Any) -> list[dict[str, Any]]:
    if isinstance(evidence, str):
        try:
            # Numbers are left to evidence_clean, which says which window's minutes are wrong.
            evidence = json_loads_bounded(evidence, max_chars=DRAFT_MAX_CHARS, finite=False) if evidence.strip() else []
        except ValueError as error:
            raise EvaluationError("the evidence windows could not be read: mark them again") from error
    days = shown_days(assignment.item.participant, assignment.study.window_days)
    try:
        return evidence_clean(
            evidence,
            dimensions={dimension.key: dimension.label for dimension in dimensions},
            window=days.minutes,
            channels=DEFAULT_CHANNELS,
        )
    except EvidenceError as error:
        raise EvaluationError(str(error)) from error


def _unswap(choice: str, swapped: bool) -> str:
    """A choice as the rater saw it (left = A) -> in the item's terms."""
    return {"a": "b", "b": "a"}.get(choice, choice) if swapped else choice


def _rating_webhooks(*, assignment: Assignment, rating: Rating) -> None:
    """``rating.committed``, and ``item.completed`` when this first rating of a main-queue item is its last one needed
    (raters added later for disagreement complete it again). One query when no endpoint listens."""
    endpoints = webhook_endpoints_for(study_id=assignment.study_id)
    if not endpoints:
        return
    webhook_emit(
        event_type="rating.committed",
        data={
            "item_id": assignment.item_id,
            "rating_id": rating.pk,
            "revision": rating.revision,
            "purpose": assignment.purpose,
        },
        study_id=assignment.study_id,
        endpoints=endpoints,
    )
    if (
        rating.revision != 1
        or assignment.purpose != Assignment.Purpose.MAIN
        or not wanting(endpoints, "item.completed")
    ):
        return
    # The item's row locked: two last ratings at the same moment count each other, and exactly one emits.
    needed = (
        StudyItem.objects.select_for_update()
        .filter(pk=assignment.item_id)
        .values_list("extra_raters", flat=True)
        .first()
        or 0
    )
    needed += assignment.study.raters_per_item
    done = Assignment.objects.filter(
        item_id=assignment.item_id, purpose=Assignment.Purpose.MAIN, state=Assignment.State.DONE
    ).count()
    if done == needed:
        webhook_emit(
            event_type="item.completed",
            data={"item_id": assignment.item_id, "ratings": done},
            study_id=assignment.study_id,
            endpoints=endpoints,
        )


def rating_submit(**fields: Any) -> Rating:
    """:func:`rating_submit_turn`'s rating (its arguments)."""
    return rating_submit_turn(**fields)[0]


def rating_submit_turn(
    *,
    assignment_id: int,
    rater: User,
    scores: dict[str, Any],
    preference: str = "",
    comment: str = "",
    unsafe: bool = False,
    unsafe_reason: str = "",
    harm: dict[str, Any] | None = None,
    evidence: Any = None,
    criteria: dict[str, Any] | None = None,
    time_spent_s: float = 0.0,
    read: RaterTurn | None = None,
) -> tuple[Rating, RaterTurn | None]:
    """Save the rating of an assignment: the first submit creates it, later ones revise it. Returns the rating and
    the rater's turn as read at the start (evaluation.access.RaterTurn; its standing as the submit left it), from
    which the rater's next item is handed out without reading it all again; None where it may be stale (a revision).

    Idempotent: submitting the same content again (a double click, a retry after a time-out)
    changes nothing and adds no revision. Locks the assignment row for the duration, so two
    concurrent submits of one assignment are applied one after the other.

    ``harm`` answers the rubric's harm dimension (absolute studies); ``evidence`` is the windows of the chart tied to
    dimensions (a list, or its JSON text), checked by evaluation.evidence; ``criteria`` grades the item's criteria
    (position -> met), every one of them (evaluation.criteria). A rating that meets a safety trigger opens
    an incident (evaluation.triage). ``read``: the assignment's turn as the caller read and locked it in its own
    transaction, in which this then runs (evaluation.access.access_turn_as_session_user); by default it is read here.
    """
    if read is not None and connection.get_autocommit():
        raise TransactionManagementError("a turn read ahead is submitted within the transaction that locked it")
    comment, unsafe_reason = (comment or "").strip(), (unsafe_reason or "").strip()
    if unsafe and not unsafe_reason:
        raise EvaluationError("say what is unsafe when you flag an answer as unsafe")
    for label, text in (("the comment", comment), ("the reason", unsafe_reason)):
        try:
            text_check(text)
        except ValueError as error:
            raise EvaluationError(f"{label} {error}") from error
    if len(comment) > 5000:
        raise EvaluationError("the comment is longer than 5,000 characters")
    if len(unsafe_reason) > 500:  # the column's limit: a longer reason would be a database error, not a message
        raise EvaluationError("the reason for the unsafe flag is longer than 500 characters")
    time_spent_s = float(time_spent_s or 0.0)
    if not math.isfinite(time_spent_s):
        raise EvaluationError("the time spent on the item is not a finite number")
    time_spent_s = min(max(time_spent_s, 0.0), MAX_TIME_ON_ITEM_S)
    with transaction.atomic(savepoint=read is None):  # within the caller's, with a read ahead: as one with it
        if read is None:
            read = access_turn(assignment_id=assignment_id, rater=rater)
        elif read.assignment.pk != int(assignment_id) or read.assignment.rater_id != rater.pk:
            raise NotInQueue("there is no such item in your queue")  # a read ahead of another item or rater
        assignment = read.assignment
        _check_editable(assignment)
        # The turn's other parts were read with the lock, but from before any wait for it: when the row was not in
        # progress any more (a revision, or a concurrent submit of it that this one waited for), they may be stale,
        # so the standing is read again and the next item's hand-out reads its own (turn None).
        turn = read if assignment.state == Assignment.State.IN_PROGRESS else None
        standing = None
        if assignment.purpose in QUEUE_PURPOSES:
            standing = read.standing if turn is not None else standing_of(study=assignment.study, rater=rater)
        if standing is not None and standing.state == StudyRater.State.PAUSED:
            raise EvaluationError("your queue in this study is paused: your ratings so far are kept")
        if assignment.purpose == Assignment.Purpose.QUALIFICATION and assignment.matches_reference is not None:
            raise EvaluationError("this qualification item is graded: its rating can no longer change")
        pairwise = assignment.study.mode == Study.Mode.PAIRWISE
        dimensions = rubric_dimensions(assignment.study.rubric)
        cleaned = _clean_scores([d for d in dimensions if d.is_scored], scores or {}, pairwise)
        harm_cleaned = {} if pairwise else _clean_harm([d for d in dimensions if not d.is_scored], harm or {})
        # The dimensions the page offers for evidence: pairwise studies ask no harm question.
        windows = _clean_evidence(assignment, [d for d in dimensions if d.is_scored or not pairwise], evidence)
        criteria_of_item = (
            list(assignment.item.criteria.all()) if getattr(assignment.item, "has_criteria", True) else []
        )
        grades = {} if pairwise else grades_clean(criteria_of_item, criteria or {})
        if pairwise:
            if preference not in {"a", "b", "tie"}:
                raise EvaluationError("choose which answer is better overall, or a tie")
            cleaned = {key: _unswap(value, assignment.swapped) for key, value in cleaned.items()}
            preference = _unswap(preference, assignment.swapped)
        else:
            preference = ""
        content = {
            "scores": cleaned,
            "preference": preference,
            "comment": comment,
            "unsafe": bool(unsafe),
            "unsafe_reason": unsafe_reason if unsafe else "",
            "harm": harm_cleaned,
            "evidence": windows,
            "criteria": grades,
        }
        # A rating is only ever made by a submit, which ends the assignment's progress in the same transaction.
        rating = (
            None
            if assignment.state == Assignment.State.IN_PROGRESS
            else Rating.objects.filter(assignment=assignment).first()
        )
        if rating is not None:
            rating.assignment = assignment  # as locked and read here: the caller needs no second read
        if rating and {field: getattr(rating, field) for field in content} == content:
            return rating, turn  # the same submit again
        before = None if rating is None else {"harm": rating.harm, "unsafe": rating.unsafe}
        if rating is None:  # the common case, its three writes in one statement
            rating = first_rating(assignment=assignment, content=content, time_spent_s=time_spent_s)
        else:
            for field, value in content.items():
                setattr(rating, field, value)
            rating.revision += 1
            rating.save()
            RatingRevision.objects.create(rating=rating, number=rating.revision, time_spent_s=time_spent_s, **content)
            assignment.state = Assignment.State.DONE
            assignment.completed_at = assignment.completed_at or timezone.now()
            assignment.time_spent_s += time_spent_s
            assignment.draft = {}
            assignment.save(update_fields=list(DONE_FIELDS))
        after_rating(
            assignment=assignment,
            scores=cleaned,
            preference=preference,
            standing=standing,
            gold=read.gold if turn is not None else None,  # stale after a wait for the lock: read again
        )
        incident_open_for(rating=rating, assignment=assignment, before=before)
        if read.webhooks_may_listen or turn is None:
            _rating_webhooks(assignment=assignment, rating=rating)
        group_notify_on_commit(
            group=study_group(assignment.study_id),
            payload={"event": "rating", "assignment": assignment.pk, "revision": rating.revision},
            coalesce=True,  # the dashboard re-reads the whole study on any message: a few a second are enough
        )
    return rating, turn
