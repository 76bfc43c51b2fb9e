"""Items added to a draft study after it was made (the API's ``POST /api/studies/ID/items/``): the same shape of item
as :func:`evaluation.services.study_create` makes, for participants of the study's cohort."""

import random

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max

from evaluation.errors import EvaluationError
from evaluation.models import Protocol, Study, StudyItem
from healthagent.audit import Action, audit_record
from healthagent.models import AgentVariant, Participant


def study_items_add(
    *, study: Study, pseudonyms: list[str], variants: list[AgentVariant], user: User
) -> list[StudyItem]:
    """Add items to a draft study: each participant with each variant (absolute), or the two variants' pair
    (pairwise), placed after the study's items in an order drawn from its seed. Participants are named by pseudonym
    and come from the cohort of the study's items; an item the study has already is refused, and so is the whole
    call (all or none)."""
    if not pseudonyms or not variants:
        raise EvaluationError("name at least one participant and one variant")
    if study.mode == Study.Mode.PAIRWISE and len(variants) != 2:
        raise EvaluationError("a pairwise study's items compare exactly two variants")
    cohorts = Participant.objects.filter(pk__in=study.items.values("participant_id")).values("cohort_id").distinct()
    found = {p.pseudonym: p for p in Participant.objects.filter(cohort_id__in=cohorts, pseudonym__in=pseudonyms)}
    if unknown := [name for name in dict.fromkeys(pseudonyms) if name not in found]:
        raise EvaluationError(f"not a participant of this study's cohort: {', '.join(unknown[:20])}")
    participants = [found[name] for name in dict.fromkeys(pseudonyms)]
    with transaction.atomic():
        # One addition at a time (positions stay unique), and the draft checked under the lock: an opening that
        # commits meanwhile is seen, not raced.
        locked = Study.objects.select_for_update().get(pk=study.pk)
        if locked.status != Study.Status.DRAFT:
            raise EvaluationError("items are added only while the study is a draft")
        if Protocol.objects.filter(study=study, locked_at__isnull=False).exists():
            raise EvaluationError("the study's protocol is locked, and its items are part of it")
        if study.mode == Study.Mode.PAIRWISE:  # the study's own pair, in its order: no second item of a participant
            pair = study.items.values_list("variant_a_id", "variant_b_id").first()
            if pair is not None and {variant.pk for variant in variants} != set(pair):
                raise EvaluationError("a pairwise study's new items compare the same two variants as its others")
            if pair is not None and variants[0].pk != pair[0]:
                variants = [variants[1], variants[0]]
        pairs: list[tuple[Participant, AgentVariant, AgentVariant | None]]
        if study.mode == Study.Mode.PAIRWISE:
            pairs = [(participant, variants[0], variants[1]) for participant in participants]
        else:
            pairs = [
                (participant, variant, None) for participant in participants for variant in dict.fromkeys(variants)
            ]
        have = set(study.items.values_list("participant_id", "variant_a_id", "variant_b_id"))
        if repeated := [p.pseudonym for p, a, b in pairs if (p.pk, a.pk, b.pk if b else None) in have]:
            raise EvaluationError(f"the study has these items already: {', '.join(repeated[:20])}")
        last = study.items.aggregate(last=Max("position"))["last"]
        start = 0 if last is None else last + 1
        order = list(range(len(pairs)))
        random.Random(f"{study.seed}:{start}").shuffle(order)
        items = StudyItem.objects.bulk_create(
            [
                StudyItem(study=study, participant=participant, variant_a=a, variant_b=b, position=start + offset)
                for offset, (participant, a, b) in zip(order, pairs, strict=True)
            ]
        )
        audit_record(actor=user, action=Action.STUDY_CHANGED, target=study, details={"items_added": len(items)})
    return sorted(items, key=lambda item: item.position)
