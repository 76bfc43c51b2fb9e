"""Raters a researcher can vouch for: onboarding, training, qualification and quality control in the queue.

A clinician's way through a study, decided by :func:`rater_gate` each time they ask for an item:

1. **consent** (when the study has a consent text): they accept the current version and fill the background form,
   or decline and are given nothing;
2. **training**: every training item once; after each they see the reference scores and the rationale;
3. **qualification** (when the study has qualification items): an attempt rates them all; at or above the pass
   threshold they are admitted, below it they may retry after the cool-down while retries remain;
4. **main**: results items, with gold items mixed in silently at the study's rate and hidden repeats of items they
   rated at least ``repeat_gap`` items before. Their running gold accuracy below the threshold (after
   ``gold_minimum`` gold items) pauses them until a researcher reinstates them; their ratings are kept and flagged.

Nothing of this is shown on the rating page: a gold or repeat item looks like any other.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from evaluation.models import Assignment, QualificationAttempt, Study, StudyItem, StudyRater
from evaluation.quality import reference_match
from healthagent.audit import Action, audit_record
from healthagent.events import group_notify_on_commit

DEFAULT_BACKGROUND_FIELDS: list[dict[str, Any]] = [
    {"key": "specialty", "label": "Specialty", "kind": "text"},
    {"key": "years_in_practice", "label": "Years in clinical practice", "kind": "number"},
    {"key": "country", "label": "Country of practice", "kind": "text"},
    {
        "key": "care_setting",
        "label": "Care setting",
        "kind": "choice",
        "choices": ["primary care", "hospital", "specialist clinic", "other"],
    },
]
BACKGROUND_KINDS = ("text", "number", "choice")
# The study's rater rules: numbers a researcher sets, then the consent text and background form.
RATER_NUMBERS = (
    "pass_threshold",
    "qualification_retries",
    "retry_cooldown_minutes",
    "gold_rate",
    "gold_minimum",
    "min_seconds_per_item",
    "repeat_share",
    "repeat_gap",
    "extra_raters_max",
    "disagreement_range",
)
RATER_SETTINGS = ("consent_text", "background_fields", *RATER_NUMBERS)
QUEUE_PURPOSES = (Assignment.Purpose.MAIN, Assignment.Purpose.GOLD, Assignment.Purpose.REPEAT)


class RaterError(Exception):
    """A request about a rater's standing that is refused; the message is shown as it stands."""


@dataclass(frozen=True)
class Gate:
    """Where a clinician stands in a study: ``step`` is consent, declined, training, qualification, failed, paused
    or main; ``retry_at`` (failed) when a new attempt opens, None when no retry is left."""

    step: str
    standing: StudyRater | None = None
    attempt: QualificationAttempt | None = None
    retry_at: datetime | None = None


def _uniform(*parts: object) -> float:
    """A seeded number in [0, 1) from the parts (the same parts always give the same number)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def background_fields_check(fields: Any) -> list[dict[str, Any]]:
    """The background form's fields, checked: a list of {key, label, kind[, choices]} with unique keys."""
    if not isinstance(fields, list):
        raise RaterError("the background fields must be a list")
    keys = set()
    for position, field in enumerate(fields, start=1):
        if not isinstance(field, dict) or not str(field.get("key", "")).strip() or not field.get("label"):
            raise RaterError(f"background field {position} needs a key and a label")
        if field.get("kind", "text") not in BACKGROUND_KINDS:
            raise RaterError(f"background field {position}: the kind must be one of {', '.join(BACKGROUND_KINDS)}")
        if field.get("kind") == "choice" and not field.get("choices"):
            raise RaterError(f"background field {position}: a choice needs its choices")
        if field["key"] in keys:
            raise RaterError(f"background field {position}: the key {field['key']!r} is used twice")
        keys.add(field["key"])
    return fields


def _study_kinds(study: Study) -> set[str]:
    return set(
        StudyItem.objects.filter(study=study, dropped_at__isnull=True)
        .exclude(kind=StudyItem.Kind.RESULTS)
        .values_list("kind", flat=True)
        .distinct()
    )


def standing_of(*, study: Study, rater: User) -> StudyRater | None:
    return StudyRater.objects.filter(study=study, rater=rater).first()


def rater_paused(*, study: Study, rater: User) -> bool:
    return StudyRater.objects.filter(study=study, rater=rater, state=StudyRater.State.PAUSED).exists()


def rater_gates(*, studies: list[Study], rater: User) -> dict[int, Gate]:
    """:func:`rater_gate` of several studies, reading the standings and item kinds of all of them in two queries."""
    standings = {row.study_id: row for row in StudyRater.objects.filter(rater=rater, study__in=studies)}
    kinds: dict[int, set[str]] = {study.pk: set() for study in studies}
    for study_id, kind in (
        StudyItem.objects.filter(study__in=studies, dropped_at__isnull=True)
        .exclude(kind=StudyItem.Kind.RESULTS)
        .values_list("study_id", "kind")
        .distinct()
    ):
        kinds[study_id].add(kind)
    return {
        study.pk: rater_gate(study=study, rater=rater, known=(standings.get(study.pk), kinds[study.pk]))
        for study in studies
    }


def rater_gate(
    *,
    study: Study,
    rater: User,
    now: datetime | None = None,
    known: tuple[StudyRater | None, set[str]] | None = None,
) -> Gate:
    """The step the clinician is at in ``study`` (see the module's docstring). Two to four small queries; with
    ``known`` (the standing and the study's item kinds, read already) none for most steps."""
    standing = known[0] if known is not None else standing_of(study=study, rater=rater)
    if study.consent_text.strip() and (standing is None or standing.consent_version != study.consent_version):
        return Gate("consent", standing)
    if study.consent_text.strip() and standing is not None and standing.consented_at is None:
        return Gate("declined", standing)
    if standing is not None and standing.state == StudyRater.State.PAUSED:
        return Gate("paused", standing)
    kinds = known[1] if known is not None else _study_kinds(study)
    if StudyItem.Kind.TRAINING in kinds and _next_training_item(study, rater) is not None:
        return Gate("training", standing)
    if StudyItem.Kind.QUALIFICATION in kinds and (standing is None or standing.qualified_at is None):
        attempt = (
            QualificationAttempt.objects.filter(standing=standing).order_by("-number").first() if standing else None
        )
        if attempt is None or attempt.passed is None:
            return Gate("qualification", standing, attempt)
        if attempt.number > study.qualification_retries:
            return Gate("failed", standing, attempt, None)
        assert attempt.finished_at is not None
        retry_at = attempt.finished_at + timedelta(minutes=study.retry_cooldown_minutes)
        if (now or timezone.now()) < retry_at:
            return Gate("failed", standing, attempt, retry_at)
        return Gate("qualification", standing, None)
    return Gate("main", standing)


def rater_onboard(
    *, study: Study, rater: User, accept: bool, consent_version: int, background: dict[str, Any]
) -> StudyRater:
    """Record the clinician's answer to the study's consent text (the version they read) and their background.
    Declining records the refusal and gives no items; a background is needed only to accept."""
    if not study.clinicians.filter(pk=rater.pk).exists():
        raise RaterError("you are not enrolled in this study")
    if consent_version != study.consent_version:
        raise RaterError("the consent text has changed since you opened this page: read it again")
    cleaned: dict[str, Any] = {}
    if accept:
        for field in study.background_fields:
            value = str(background.get(field["key"], "")).strip()
            if not value:
                raise RaterError(f"fill in: {field['label']}")
            if field.get("kind") == "number":
                try:
                    number = float(value)
                except ValueError as error:
                    raise RaterError(f"{field['label']}: {value!r} is not a number") from error
                if not 0 <= number <= 100:
                    raise RaterError(f"{field['label']}: give a number from 0 to 100")
                cleaned[field["key"]] = int(number) if number.is_integer() else number
            elif field.get("kind") == "choice":
                if value not in field.get("choices", []):
                    raise RaterError(f"{field['label']}: choose one of the options")
                cleaned[field["key"]] = value
            else:
                if len(value) > 200:
                    raise RaterError(f"{field['label']}: at most 200 characters")
                cleaned[field["key"]] = value
    now = timezone.now()
    with transaction.atomic():
        standing, _ = StudyRater.objects.select_for_update().get_or_create(study=study, rater=rater)
        standing.consent_version = study.consent_version  # the version read, accepted or declined
        standing.consented_at = now if accept else None
        standing.declined_at = None if accept else now
        if accept:
            standing.background = cleaned
        standing.save()
        audit_record(
            actor=rater,
            action=Action.RATER_CONSENTED if accept else Action.RATER_DECLINED,
            target=study,
            details={"consent_version": study.consent_version},
        )
    return standing


def _given(rater: User, purpose: str, **extra: Any) -> Exists:
    """Whether the item (the outer row) has an assignment of ``rater`` for ``purpose`` (and ``extra``): one row
    matching all of it, which an ``exclude()`` across the relation would not require."""
    return Exists(Assignment.objects.filter(item=OuterRef("pk"), rater=rater, purpose=purpose, **extra))


def _next_training_item(study: Study, rater: User) -> StudyItem | None:
    return (
        StudyItem.objects.filter(study=study, kind=StudyItem.Kind.TRAINING, dropped_at__isnull=True)
        .exclude(_given(rater, Assignment.Purpose.TRAINING))
        .order_by("position")
        .first()
    )


def _lock_standing(study: Study, rater: User, read: StudyRater | None = None) -> StudyRater:
    """The rater's standing row, locked: two requests of one rater (a double click, two tabs) hand out one item.
    ``read``: the row as read already (the gate's), so only the lock is a query."""
    if read is None:
        StudyRater.objects.get_or_create(study=study, rater=rater)
        return StudyRater.objects.select_for_update().get(study=study, rater=rater)
    return StudyRater.objects.select_for_update().get(pk=read.pk)


def _open_assignment(study: Study, rater: User) -> Assignment | None:
    return Assignment.objects.filter(study=study, rater=rater, state=Assignment.State.IN_PROGRESS).first()


def _new_assignment(*, study: Study, rater: User, item: StudyItem, purpose: str, **extra: Any) -> Assignment:
    from evaluation.assignment import freeze_answers, sides_swapped

    freeze_answers(item)
    swapped = study.mode == Study.Mode.PAIRWISE and sides_swapped(seed=study.seed, rater_id=rater.pk, item_id=item.pk)
    return Assignment.objects.create(
        study=study, item=item, rater=rater, purpose=purpose, swapped=extra.pop("swapped", swapped), **extra
    )


def onboarding_assignment(*, study: Study, rater: User, gate: Gate) -> Assignment | None:
    """The next training or qualification assignment of a clinician at that step (a new attempt when needed)."""
    if gate.step not in ("training", "qualification"):
        return None
    with transaction.atomic():
        standing = _lock_standing(study, rater)
        if (already := _open_assignment(study, rater)) is not None:
            return already  # the other request of a double click handed it out
        if gate.step == "training":
            item = _next_training_item(study, rater)
            return _new_assignment(study=study, rater=rater, item=item, purpose="training") if item else None
        attempt = standing.attempts.order_by("-number").first()
        if attempt is None or attempt.passed is not None:  # the first, or a retry after a graded one
            attempt = QualificationAttempt.objects.create(
                standing=standing, number=(attempt.number if attempt else 0) + 1
            )
        item = (
            StudyItem.objects.filter(study=study, kind=StudyItem.Kind.QUALIFICATION, dropped_at__isnull=True)
            .exclude(_given(rater, Assignment.Purpose.QUALIFICATION, attempt=attempt.number))
            .order_by("position")
            .first()
        )
        if item is None:
            return None
        return _new_assignment(study=study, rater=rater, item=item, purpose="qualification", attempt=attempt.number)


def quality_assignment(
    *, study: Study, rater: User, standing: StudyRater | None = None, had: int | None = None
) -> Assignment | None:
    """A gold item or a hidden repeat in place of the next main item, at the study's rates; None for a main item.
    Seeded by the study, the rater and how many queue items they have had, so a replay is identical. ``standing``:
    the rater's row as the gate read it (None: read here, made if missing); ``had``: how many queue items they have
    had, as read already (None: counted here)."""
    if study.gold_rate <= 0 and study.repeat_share <= 0:
        return None

    def wanted(had: int) -> bool:
        return (study.gold_rate > 0 and _uniform("gold", study.seed, rater.pk, had) < study.gold_rate) or (
            study.repeat_share > 0 and _uniform("repeat", study.seed, rater.pk, had) < study.repeat_share
        )

    if had is None:
        had = Assignment.objects.filter(study=study, rater=rater, purpose__in=QUEUE_PURPOSES).count()
    if not wanted(had):
        return None  # a main item this time (most times): no lock needed to say so
    with transaction.atomic():
        _lock_standing(study, rater, standing)
        if (already := _open_assignment(study, rater)) is not None:
            return already  # the other request of a double click handed it out
        had = Assignment.objects.filter(study=study, rater=rater, purpose__in=QUEUE_PURPOSES).count()
        if study.gold_rate > 0 and _uniform("gold", study.seed, rater.pk, had) < study.gold_rate:
            gold = StudyItem.objects.filter(study=study, kind=StudyItem.Kind.GOLD, dropped_at__isnull=True).exclude(
                assignments__rater=rater
            )
            candidates = sorted(gold.values_list("pk", flat=True), key=lambda pk: _uniform("gold-order", rater.pk, pk))
            if candidates:
                item = StudyItem.objects.get(pk=candidates[0])
                return _new_assignment(study=study, rater=rater, item=item, purpose=Assignment.Purpose.GOLD)
        if study.repeat_share > 0 and _uniform("repeat", study.seed, rater.pk, had) < study.repeat_share:
            return _repeat_assignment(study, rater)
    return None


def _repeat_assignment(study: Study, rater: User) -> Assignment | None:
    """A hidden repeat of the rater's earliest rated main item that is at least ``repeat_gap`` items back, not
    repeated yet and not dropped since."""
    mine = list(
        Assignment.objects.filter(study=study, rater=rater, purpose__in=QUEUE_PURPOSES)
        .order_by("assigned_at", "pk")
        .values_list("pk", "purpose", "state", "item__dropped_at")
    )
    repeated = set(
        Assignment.objects.filter(study=study, rater=rater, repeat_of__isnull=False).values_list(
            "repeat_of_id", flat=True
        )
    )
    for position, (pk, purpose, state, dropped_at) in enumerate(mine):
        if len(mine) - position - 1 < study.repeat_gap:
            break
        if (
            purpose == Assignment.Purpose.MAIN
            and state == Assignment.State.DONE
            and dropped_at is None
            and pk not in repeated
        ):
            first = Assignment.objects.select_related("item").get(pk=pk)
            return _new_assignment(
                study=study,
                rater=rater,
                item=first.item,
                purpose=Assignment.Purpose.REPEAT,
                repeat_of=first,
                swapped=first.swapped,
            )
    return None


def qualification_result(*, study: Study, rater: User, attempt: int) -> QualificationAttempt | None:
    """The graded attempt (None while items of it remain)."""
    return QualificationAttempt.objects.filter(
        standing__study=study, standing__rater=rater, number=attempt, passed__isnull=False
    ).first()


def gold_accuracy(study: Study, standing: StudyRater) -> tuple[int, int]:
    """(matched, graded) of the rater's gold items since they were last reinstated."""
    gold = Assignment.objects.filter(
        study=study, rater_id=standing.rater_id, purpose=Assignment.Purpose.GOLD, matches_reference__isnull=False
    )
    if standing.reinstated_at is not None:
        gold = gold.filter(completed_at__gt=standing.reinstated_at)
    counts = gold.aggregate(graded=Count("pk"), matched=Count("pk", filter=Q(matches_reference=True)))
    return counts["matched"], counts["graded"]


def after_rating(
    *,
    assignment: Assignment,
    scores: dict[str, Any],
    preference: str,
    standing: StudyRater | None = None,
    gold: tuple[int, int] | None = None,
) -> None:
    """What a saved rating changes beyond itself (inside the rating's transaction): the grade of a gold or
    qualification item, a qualification attempt's result, a pause on low gold accuracy, extra raters for an item
    whose raters disagree. ``gold``: the rater's :func:`gold_accuracy` as the submit read it with ``standing``."""
    study, purpose = assignment.study, assignment.purpose
    if purpose in (Assignment.Purpose.GOLD, Assignment.Purpose.QUALIFICATION, Assignment.Purpose.TRAINING):
        binary = frozenset(study.rubric.dimensions.filter(scale="binary").values_list("key", flat=True))
        item = assignment.item
        assignment.matches_reference = (
            reference_match(
                reference=item.reference, tolerance=item.tolerance, scores=scores, preference=preference, binary=binary
            )
            if item.reference
            else None
        )
        assignment.save(update_fields=["matches_reference"])
    if purpose == Assignment.Purpose.QUALIFICATION:
        _grade_attempt(assignment)
    elif purpose in (Assignment.Purpose.MAIN, Assignment.Purpose.REPEAT):
        # The pause is decided on the next main or repeat rating after the gold ones, never on a gold item's own
        # submit: the page that follows would otherwise tell the rater which item was gold.
        _pause_if_below(assignment, standing, gold)
    if purpose == Assignment.Purpose.MAIN and study.extra_raters_max > 0:
        _more_raters_if_disagreeing(assignment)


def _grade_attempt(assignment: Assignment) -> None:
    study = assignment.study
    standing = StudyRater.objects.select_for_update().get(study=study, rater_id=assignment.rater_id)
    attempt = QualificationAttempt.objects.select_for_update().get(standing=standing, number=assignment.attempt)
    if attempt.passed is not None:
        return
    items = StudyItem.objects.filter(study=study, kind=StudyItem.Kind.QUALIFICATION, dropped_at__isnull=True)
    graded = Assignment.objects.filter(
        study=study,
        rater_id=assignment.rater_id,
        purpose=Assignment.Purpose.QUALIFICATION,
        attempt=attempt.number,
        state=Assignment.State.DONE,
        item__in=items,
    )
    total = items.count()
    if graded.count() < total:
        return
    correct = graded.filter(matches_reference=True).count()
    attempt.correct, attempt.total, attempt.finished_at = correct, total, timezone.now()
    attempt.passed = total > 0 and correct / total >= study.pass_threshold
    attempt.save(update_fields=["correct", "total", "finished_at", "passed"])
    if attempt.passed:
        standing.qualified_at = attempt.finished_at
        standing.save(update_fields=["qualified_at"])
    audit_record(
        actor=assignment.rater,
        action=Action.RATER_QUALIFIED if attempt.passed else Action.RATER_NOT_QUALIFIED,
        target=study,
        details={"attempt": attempt.number, "correct": correct, "total": total},
    )


def _pause_if_below(assignment: Assignment, standing: StudyRater | None, gold: tuple[int, int] | None = None) -> None:
    """Pause the rater when their gold accuracy is below the threshold. ``standing`` is the rater's row as the
    submit read it (None: no gold item was ever handed to them, as handing one out creates it); ``gold`` their gold
    accuracy read with it (else read here). This rating is not a gold one, so it does not change that accuracy."""
    study = assignment.study
    if study.gold_rate <= 0 or standing is None or standing.state == StudyRater.State.PAUSED:
        return
    matched, graded = gold if gold is not None else gold_accuracy(study, standing)
    if graded < max(study.gold_minimum, 1) or matched / graded >= study.pass_threshold:
        return
    read, standing = standing, StudyRater.objects.select_for_update().get(pk=standing.pk)
    if standing.state == StudyRater.State.PAUSED:
        read.state = standing.state
        return
    standing.state, standing.paused_at = StudyRater.State.PAUSED, timezone.now()
    standing.pause_reason = (
        f"gold accuracy {matched}/{graded} ({matched / graded * 100:.0f} %) below the study's "
        f"{study.pass_threshold * 100:.0f} %"
    )
    standing.save(update_fields=["state", "paused_at", "pause_reason"])
    # The caller's copy too: the submit hands out the next item from it (evaluation.access.RaterTurn).
    read.state, read.paused_at, read.pause_reason = standing.state, standing.paused_at, standing.pause_reason
    audit_record(
        actor=None,
        via="quality control",
        action=Action.RATER_PAUSED,
        target=study,
        details={"rater": assignment.rater.get_username(), "matched": matched, "graded": graded},
    )
    group_notify_on_commit(group=f"study.{study.pk}", payload={"event": "rater_paused"})


def _more_raters_if_disagreeing(assignment: Assignment) -> None:
    study = assignment.study
    item = StudyItem.objects.select_for_update().get(pk=assignment.item_id)
    if item.extra_raters >= study.extra_raters_max:
        return
    rows = list(
        Assignment.objects.filter(item=item, purpose=Assignment.Purpose.MAIN, state=Assignment.State.DONE)
        .select_related("rating")
        .values_list("rating__scores", "rating__preference")
    )
    if len(rows) < study.raters_per_item + item.extra_raters:
        return  # the item's raters so far have not all rated
    if items_disagree(rows, pairwise=study.mode == Study.Mode.PAIRWISE, threshold=study.disagreement_range):
        item.extra_raters += 1
        item.save(update_fields=["extra_raters"])


def items_disagree(rows: list[tuple[dict[str, Any], str]], *, pairwise: bool, threshold: int) -> bool:
    """Whether ratings (scores, preference) of one item disagree: a split vote on any choice (pairwise), or scores
    spanning at least ``threshold`` points on any dimension."""
    keys = {key for scores, _ in rows for key in scores}
    for key in keys:
        given = [scores[key] for scores, _ in rows if key in scores]
        if pairwise and len(set(given)) > 1:
            return True
        numbers = [value for value in given if isinstance(value, int | float)]
        if not pairwise and numbers and max(numbers) - min(numbers) >= threshold:
            return True
    return pairwise and len({preference for _, preference in rows}) > 1


def rater_reinstate(*, study: Study, rater: User, user: User, note: str) -> StudyRater:
    """Let a paused rater rate again (audited with the researcher's note); their gold accuracy counts afresh."""
    note = (note or "").strip()
    if not note:
        raise RaterError("say why the rater is reinstated: the note is kept in the audit log")
    with transaction.atomic():
        standing = StudyRater.objects.select_for_update().filter(study=study, rater=rater).first()
        if standing is None or standing.state != StudyRater.State.PAUSED:
            raise RaterError("this rater is not paused")
        standing.state, standing.reinstated_at, standing.reinstated_by = (
            StudyRater.State.REINSTATED,
            timezone.now(),
            user,
        )
        standing.save(update_fields=["state", "reinstated_at", "reinstated_by"])
        audit_record(
            actor=user,
            action=Action.RATER_REINSTATED,
            target=study,
            details={"rater": rater.get_username(), "note": note[:1000], "paused": standing.pause_reason},
        )
    return standing


def study_item_reference_set(
    *,
    study: Study,
    item_id: int,
    kind: str,
    reference: dict[str, Any],
    tolerance: dict[str, Any],
    rationale: str,
    user: User,
) -> StudyItem:
    """Make an item a training, qualification or gold item with reference scores (or a results item again).
    Only while the study is a draft: once clinicians rate, what counts as a result cannot change."""
    if study.status != Study.Status.DRAFT:
        raise RaterError("items can change kind only while the study is a draft")
    if kind not in StudyItem.Kind.values:
        raise RaterError(f"unknown kind {kind!r}")
    dimensions = {dimension.key: dimension for dimension in study.rubric.dimensions.all() if dimension.is_scored}
    pairwise = study.mode == Study.Mode.PAIRWISE
    cleaned: dict[str, Any] = {}
    cleaned_tolerance: dict[str, Any] = {}
    if kind != StudyItem.Kind.RESULTS:
        for key, value in reference.items():
            if value in (None, ""):
                continue
            if key == "preference" and pairwise:
                if value not in ("a", "b", "tie"):
                    raise RaterError("the reference preference must be a, b or tie")
                cleaned[key] = value
                continue
            dimension = dimensions.get(key)
            if dimension is None:
                raise RaterError(f"unknown dimension {key!r}")
            if pairwise:
                if value not in ("a", "b", "tie"):
                    raise RaterError(f"{dimension.label}: the reference must be a, b or tie")
                cleaned[key] = value
                continue
            try:
                number = int(value)
            except (TypeError, ValueError) as error:
                raise RaterError(f"{dimension.label}: {value!r} is not a score") from error
            if number not in dimension.points:
                raise RaterError(f"{dimension.label}: the score must be one of {', '.join(map(str, dimension.points))}")
            cleaned[key] = number
        if not cleaned:
            raise RaterError("give a reference score for at least one dimension")
        for key, value in tolerance.items():
            if value in (None, "") or key not in cleaned:
                continue
            try:
                allowed = int(value)
            except (TypeError, ValueError) as error:
                raise RaterError(f"tolerance of {key}: {value!r} is not a whole number") from error
            if not 0 <= allowed <= 10:
                raise RaterError(f"tolerance of {key}: from 0 to 10 points")
            cleaned_tolerance[key] = allowed
    rationale = (rationale or "").strip()
    if len(rationale) > 5000:
        raise RaterError("the rationale is longer than 5,000 characters")
    with transaction.atomic():
        item = StudyItem.objects.select_for_update().filter(pk=item_id, study=study).first()
        if item is None:
            raise RaterError("there is no such item in this study")
        item.kind, item.reference, item.tolerance = kind, cleaned, cleaned_tolerance
        item.rationale = rationale if kind != StudyItem.Kind.RESULTS else ""
        item.save(update_fields=["kind", "reference", "tolerance", "rationale"])
        audit_record(
            actor=user,
            action=Action.STUDY_ITEM_REFERENCE_SET,
            target=study,
            details={"item": item.pk, "position": item.position + 1, "kind": kind, "reference": cleaned},
        )
    return item
