"""Items whose answer will not come (a failed or blocked generation, no job on its way): a researcher drops one with a
note or queues the generation of what it lacks. Both audited; both lock the item row, as handing it out does."""

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from evaluation.assignment import ItemWithoutAnswer, items_without_answers
from evaluation.errors import EvaluationError
from evaluation.models import Study, StudyItem
from evaluation.services import study_group
from healthagent.audit import Action, audit_record
from healthagent.events import group_notify_on_commit
from modeling.jobs import JobError, job_queue
from modeling.models import Job


def _access_item_without_answer(*, study: Study, item_id: int) -> ItemWithoutAnswer:
    """The study's item (its row locked) whose answer will not come: no job is on its way for it. An item
    already shown to a clinician (its answers frozen) keeps its ratings; one with its answers needs nothing."""
    if study.status == Study.Status.CLOSED:
        raise EvaluationError("the study is closed: reopen it to change its items")
    item = StudyItem.objects.select_for_update().select_related("participant").filter(pk=item_id, study=study).first()
    if item is None:
        raise EvaluationError("there is no such item in this study")
    if item.dropped_at is not None:
        raise EvaluationError(f"item {item.position + 1} was dropped already")
    if item.frozen:
        raise EvaluationError(
            f"item {item.position + 1} has been shown to clinicians: its answers and ratings stay as they are"
        )
    row = next((row for row in items_without_answers(study) if row.item.pk == item.pk), None)
    if row is None:
        raise EvaluationError(f"item {item.position + 1} has its answers")
    if row.waiting:
        raise EvaluationError(
            f"item {item.position + 1}'s answers are being generated already (job #{row.missing[0].pending_job_id})"
        )
    return row


def study_item_drop(*, study: Study, item_id: int, note: str, user: User) -> StudyItem:
    """Take an item whose answer will not come (see items_without_answers) out of the study, with a note saying
    why (audited). No clinician is given it afterwards and it no longer counts towards the ratings needed. Locks
    the item row, as handing it out does, so it cannot be dropped while a clinician is being given it."""
    note = (note or "").strip()
    if not note:
        raise EvaluationError("say why the item is dropped: the note is kept with the study and its exports")
    if len(note) > 1000:
        raise EvaluationError("the note is longer than 1,000 characters")
    with transaction.atomic():
        item = _access_item_without_answer(study=study, item_id=item_id).item
        item.dropped_at, item.dropped_by, item.drop_note = timezone.now(), user, note
        item.save(update_fields=["dropped_at", "dropped_by", "drop_note"])
        _audit_item(user=user, action=Action.STUDY_ITEM_DROPPED, study=study, item=item, note=note)
        group_notify_on_commit(group=study_group(study.pk), payload={"event": "item_dropped", "item": item.pk})
    return item


def study_item_regenerate(*, study: Study, item_id: int, user: User) -> Job:
    """Queue the generation of the answers an item lacks, for its participant only (audited); returns the job."""
    with transaction.atomic():
        row = _access_item_without_answer(study=study, item_id=item_id)
        item = row.item
        variants = sorted(answer.variant.pk for answer in row.missing if answer.pending_job_id is None)
        try:
            job = job_queue(
                kind_name="generate_recommendations",
                user=user,
                config={
                    "cohort": item.participant.cohort_id,
                    "variants": variants,
                    "participants": [item.participant_id],
                },
            )
        except JobError as error:
            raise EvaluationError(str(error)) from error
        _audit_item(user=user, action=Action.STUDY_ITEM_REGENERATED, study=study, item=item, job=job.pk)
    return job


def _audit_item(*, user: User, action: Action, study: Study, item: StudyItem, **details: Any) -> None:
    """An owner's action on one item, in the study's audit trail: the item by id, position and pseudonym."""
    audit_record(
        actor=user,
        action=action,
        target=study,
        details={"item": item.pk, "position": item.position + 1, "participant": item.participant.pseudonym, **details},
    )
