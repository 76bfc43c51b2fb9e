"""Balanced, blinded, randomized queues, handed out on demand.

When a clinician asks for their next item they get, in order:

1. their unfinished assignment in this study, if any (resuming after a logout lands here);
2. otherwise a new assignment to an item that (a) still has fewer than ``k`` raters, (b) they have
   never been given, and (c) has its answers ready; among those, the items with the fewest raters
   come first (so coverage stays balanced whoever is faster), and ties are broken by the
   clinician's own seeded random order (so no two clinicians walk the items in the same order).

Every item therefore ends with exactly ``k`` distinct raters (a skip frees its place for another
clinician; the one who skipped is never given the item again). The item row is locked while its
raters are counted, so two clinicians asking at once cannot both take its last place.

An item whose answer is missing either waits for a generation job that is queued or running, or
will not come (the generation failed, or none is queued): :func:`items_without_answers` tells the
two apart, so a clinician is only ever told to wait for the first kind, and the study's owner sees
the second with its reason, to regenerate or drop.
"""

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.utils.crypto import salted_hmac

from evaluation.access import RaterTurn
from evaluation.models import Assignment, ItemRaters, Study, StudyItem
from evaluation.raters import QUEUE_PURPOSES, onboarding_assignment, quality_assignment, rater_gate, rater_paused
from evaluation.writes import new_assignment
from healthagent.joined import JoinedRead, prepared_cursor
from healthagent.models import AgentVariant, Recommendation
from modeling.selectors import generation_pending, generation_pending_job


def rater_rank(*, seed: int, rater_id: int, item_id: int) -> bytes:
    """A clinician's seeded random order over items: sort by this key."""
    return hashlib.sha256(f"{seed}:{rater_id}:{item_id}".encode()).digest()


def sides_swapped(*, seed: int, rater_id: int, item_id: int) -> bool:
    """Pairwise: whether this clinician sees the item's answer B on the left, as 'Answer A'. Keyed with the server's
    secret (an HMAC), not only the study's seed, which researchers and the protocol show: from the seed and the ids
    anyone could compute which side holds which variant. Stored on the assignment when it is made."""
    digest = salted_hmac("evaluation.sides", f"{seed}:{rater_id}:{item_id}", algorithm="sha256").digest()
    return digest[0] % 2 == 1


def _ready_answer(variant_field: str) -> Exists:
    return Exists(
        Recommendation.objects.filter(
            participant=OuterRef("participant"), variant=OuterRef(variant_field), question="", status="succeeded"
        )
    )


def _ready() -> Q:
    return Q(frozen=True) | (Q(ready_a=True) & (Q(variant_b__isnull=True) | Q(ready_b=True)))


@dataclass(frozen=True)
class MissingAnswer:
    """One variant's answer that an item lacks, and why."""

    variant: AgentVariant
    reason: str  # the failed generation's error, or that none was generated
    pending_job_id: int | None  # the queued or running job that may still write it


@dataclass(frozen=True)
class ItemWithoutAnswer:
    item: StudyItem
    missing: list[MissingAnswer] = field(default_factory=list)

    @property
    def waiting(self) -> bool:
        """True while every missing answer has a generation job on its way; False if one will not come."""
        return all(answer.pending_job_id is not None for answer in self.missing)


def _missing_reason(recommendation: Recommendation | None) -> str:
    if recommendation is None:
        return "no answer has been generated"
    if recommendation.status == Recommendation.Status.BLOCKED:
        return (
            f"blocked by the safety screen: {recommendation.error}"
            if recommendation.error
            else "blocked by the safety screen"
        )
    return f"generation failed: {recommendation.error}" if recommendation.error else "generation failed"


def items_without_answers(study: Study) -> list[ItemWithoutAnswer]:
    """The study's items (not dropped) that cannot be shown because an answer is missing, in position order,
    each missing answer with its reason and the generation job it may still come from. Three queries."""
    items = list(
        StudyItem.objects.filter(study=study, dropped_at__isnull=True)
        .annotate(ready_a=_ready_answer("variant_a"), ready_b=_ready_answer("variant_b"))
        .exclude(_ready())
        .select_related("participant", "variant_a", "variant_b")
        .order_by("position")
    )
    if not items:
        return []
    recommendations = {
        (row.participant_id, row.variant_id): row
        for row in Recommendation.objects.filter(
            participant_id__in={item.participant_id for item in items}, question=""
        ).only("participant_id", "variant_id", "status", "error")
    }
    pending = generation_pending()
    result = []
    for item in items:
        missing = [
            MissingAnswer(
                variant=variant,
                reason=_missing_reason(recommendations.get((item.participant_id, variant.pk))),
                pending_job_id=generation_pending_job(
                    pending,
                    cohort_id=item.participant.cohort_id,
                    variant_id=variant.pk,
                    participant_id=item.participant_id,
                ),
            )
            for variant, ready in ((item.variant_a, item.ready_a), (item.variant_b, item.ready_b))
            if variant is not None and not ready
        ]
        result.append(ItemWithoutAnswer(item=item, missing=missing))
    return result


def items_waiting_for_answers(study: Study) -> int:
    """Items whose answers a queued or running generation job may still write (never those that will not come)."""
    return sum(1 for row in items_without_answers(study) if row.waiting)


# A results item's raters: its main assignments not skipped (hidden repeats of it are not more raters).
_RATERS = Q(assignments__purpose=Assignment.Purpose.MAIN) & ~Q(assignments__state=Assignment.State.SKIPPED)


def _available(study: Study, rater):
    return (
        StudyItem.objects.filter(study=study, dropped_at__isnull=True, kind=StudyItem.Kind.RESULTS)
        .annotate(ready_a=_ready_answer("variant_a"), ready_b=_ready_answer("variant_b"))
        .filter(_ready())
        .exclude(assignments__rater=rater)
        .annotate(raters=Count("assignments", filter=_RATERS))
        .filter(raters__lt=study.raters_per_item + F("extra_raters"))
    )


_MAIN, _SKIPPED = Assignment.Purpose.MAIN.value, Assignment.State.SKIPPED.value
assert _MAIN.isidentifier() and _SKIPPED.isidentifier()  # written into the statement as literals


def _available_sql() -> str:
    """:func:`_available` as one raw statement, built once: every "next" runs it, and the ORM would compile its
    correlated subqueries again each time (a third of the request's CPU). ``test_assignment`` checks that both give
    the same rows.

    Its shape is for PostgreSQL's planner: the item's raters are counted once per item (in the select list; the
    caller compares them with the item's quota, where a filter in SQL would run the same subquery a second time), and
    the rater's own items are read once into a hash (``NOT IN`` over the study's and rater's index) rather than an
    anti-join that the planner, under-estimating the items of a fresh study, ran as a scan of all the rater's
    assignments per item: 8.6 ms a call at 320 items and ten raters, 0.8 now (bench/results/load-statements.md).
    On PostgreSQL the raters are read from the count the database keeps (models.ItemRaters, by a trigger) rather than
    counted: counting read every assignment of every item, so each hand-out cost more as the study was rated
    (EXPLAIN ANALYZE at 320 items of 16 raters each: 1.5 ms counted, 0.5 read). Elsewhere (SQLite) they are counted.
    Plain SQL otherwise, which SQLite runs too."""
    quote = connection.ops.quote_name
    item, assignment = quote(StudyItem._meta.db_table), quote(Assignment._meta.db_table)
    recommendation = quote(Recommendation._meta.db_table)

    def ready(variant: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM {recommendation} r WHERE r.participant_id = i.participant_id "
            f"AND r.variant_id = i.{variant} AND r.question = '' AND r.status = %(succeeded)s)"
        )

    # The purpose and state written out, not parameters: so the plan can count from the partial index of an item's
    # raters (models: assignment_item_raters), whose condition it must match.
    raters = (
        f"(SELECT COUNT(*) FROM {assignment} a "
        f"WHERE a.item_id = i.id AND a.purpose = '{_MAIN}' AND NOT (a.state = '{_SKIPPED}'))"
    )
    joined = ""
    if connection.vendor == "postgresql":
        raters, joined = "COALESCE(c.raters, 0)", f" LEFT JOIN {quote(ItemRaters._meta.db_table)} c ON c.item_id = i.id"
    return (
        f"SELECT i.id, i.extra_raters, {raters} AS raters "
        f"FROM {item} i{joined} WHERE i.study_id = %(study)s AND i.dropped_at IS NULL AND i.kind = %(kind)s "
        f"AND (i.frozen OR ({ready('variant_a_id')} AND (i.variant_b_id IS NULL OR {ready('variant_b_id')}))) "
        f"AND i.id NOT IN (SELECT m.item_id FROM {assignment} m WHERE m.study_id = %(study)s AND m.rater_id = %(rater)s)"
    )


_AVAILABLE_SQL: str | None = None


def _available_params(study: Study, rater) -> dict[str, str | int]:
    return {"succeeded": "succeeded", "study": study.pk, "kind": StudyItem.Kind.RESULTS.value, "rater": rater.pk}


def available_items(study: Study, rater) -> list[tuple[int, int]]:
    """(item id, current raters) of the items this rater could be given now (:func:`_available`, as raw SQL)."""
    global _AVAILABLE_SQL
    if _AVAILABLE_SQL is None:
        _AVAILABLE_SQL = _available_sql()
    with prepared_cursor(connection) as cursor:  # every hand-out runs it: planned once per connection
        cursor.execute(_AVAILABLE_SQL, _available_params(study, rater))
        rows = cursor.fetchall()
    return [(int(pk), int(raters)) for pk, extra, raters in rows if raters < study.raters_per_item + extra]


def has_available_item(study: Study, rater) -> bool:
    """Whether :func:`available_items` would give one (one query that stops at the first)."""
    return _available(study, rater).exists()


def freeze_answers(item: StudyItem) -> None:
    """Keep the answers as shown from now on, whatever happens to the recommendations later."""
    if item.frozen:
        return
    answers = Recommendation.objects.filter(participant_id=item.participant_id, question="", status="succeeded")
    item.recommendation_a = answers.get(variant_id=item.variant_a_id)
    item.answer_a = item.recommendation_a.text
    if item.variant_b_id:
        item.recommendation_b = answers.get(variant_id=item.variant_b_id)
        item.answer_b = item.recommendation_b.text
    item.frozen = True
    item.save(update_fields=["recommendation_a", "recommendation_b", "answer_a", "answer_b", "frozen"])


def _in_turn(candidates: list[tuple[int, int]], *, seed: int, rater_id: int) -> Iterator[int]:
    """The candidates' item ids by fewest raters first, then in the rater's seeded order (:func:`rater_rank`). Only
    the group being handed out is ranked: the first item of the first group is almost always taken, so ranking every
    candidate (hundreds, each a SHA-256) was wasted."""
    groups: dict[int, list[int]] = {}
    for item_id, raters in candidates:
        groups.setdefault(raters, []).append(item_id)
    for raters in sorted(groups):
        yield from sorted(groups[raters], key=lambda item_id: rater_rank(seed=seed, rater_id=rater_id, item_id=item_id))


# The first few candidates in turn, ranked by PostgreSQL: the first is almost always taken; should all of them have
# been taken meanwhile, every candidate follows in turn (:func:`candidates_in_turn`).
RANKED_FIRST = 8
_RANKED_SQL: dict[bool, str] = {}


def _ranked_sql(first: bool) -> str:
    """:func:`available_items`' statement with the quota in its condition, ordered as :func:`_in_turn` orders the
    candidates: fewest raters first, then by :func:`rater_rank`'s digest, which PostgreSQL computes alike (``sha256``
    of the same text; ``bytea`` compares byte by byte, as Python's ``bytes`` do). ``first``: the first
    :data:`RANKED_FIRST` of those with the fewest raters only, the others not hashed (0.27 ms for 320 items, all of
    them the fewest at a study's start and after each round). Built once each."""
    if first not in _RANKED_SQL:
        rank = "sha256(convert_to(%(prefix)s || candidates.id::text, 'UTF8'))"
        quota = "COALESCE(c.raters, 0) < %(per_item)s + i.extra_raters"
        _RANKED_SQL[first] = (
            f"WITH candidates AS ({_available_sql()} AND {quota}) SELECT candidates.id FROM candidates"
            + (
                f" WHERE candidates.raters = (SELECT MIN(raters) FROM candidates) ORDER BY {rank} LIMIT {RANKED_FIRST}"
                if first
                else f" ORDER BY candidates.raters, {rank}"
            )
        )
    return _RANKED_SQL[first]


def candidates_in_turn(study: Study, rater) -> Iterator[int]:
    """The ids of the items this rater could be given now (:func:`available_items`), in the order they are offered
    (:func:`_in_turn`). On PostgreSQL the database ranks them and sends the first :data:`RANKED_FIRST` of those with
    the fewest raters, then (asked for more: all of those were taken meanwhile) every candidate in turn: ranking in
    Python read every candidate (hundreds) and hashed those with the fewest raters, a twentieth of a rated item's
    server instructions. Elsewhere ranked in Python."""
    if connection.vendor != "postgresql":
        yield from _in_turn(available_items(study, rater), seed=study.seed, rater_id=rater.pk)
        return
    params = {
        **_available_params(study, rater),
        "per_item": study.raters_per_item,
        "prefix": f"{study.seed}:{rater.pk}:",
    }
    offered: set[int] = set()
    for first in (True, False):
        with prepared_cursor(connection) as cursor:  # every hand-out runs it: planned once per connection
            cursor.execute(_ranked_sql(first), params)
            rows = cursor.fetchall()
        for (pk,) in rows:
            if pk not in offered:
                offered.add(pk)
                yield int(pk)


_ITEM_READ: JoinedRead | None = None
_PLACES_SQL: dict[str, str] = {}


def _locked_places(item_id: int, *, rater_id: int) -> tuple[StudyItem, int, int]:
    """The item, locked until the caller's transaction ends, then its places as they are once it is ours: the main
    assignments not skipped (its raters, as :func:`_available` counts them) and the rater's own. Two statements, in
    this order: one that counted while waiting for the lock would miss the assignment of whoever held it. Written
    once and prepared, as every hand-out runs them."""
    global _ITEM_READ
    if _ITEM_READ is None:
        _ITEM_READ = JoinedRead([(StudyItem, "i")])
    if not _PLACES_SQL:
        quote = connection.ops.quote_name
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        _PLACES_SQL.update(  # both at once: another thread never sees one without the other
            {
                "lock": f"SELECT {_ITEM_READ.columns} FROM {quote(StudyItem._meta.db_table)} i WHERE i.id = %s{lock}",
                "count": (
                    "SELECT COALESCE(SUM(CASE WHEN a.purpose = %s AND a.state <> %s THEN 1 ELSE 0 END), 0), "
                    "COALESCE(SUM(CASE WHEN a.rater_id = %s THEN 1 ELSE 0 END), 0) "
                    f"FROM {quote(Assignment._meta.db_table)} a WHERE a.item_id = %s"
                ),
            }
        )
    found = _ITEM_READ.fetch_one(_PLACES_SQL["lock"], [item_id])
    if found is None:
        raise StudyItem.DoesNotExist(f"no study item {item_id}")
    (item,) = found
    assert isinstance(item, StudyItem)
    with prepared_cursor(connection) as cursor:
        cursor.execute(
            _PLACES_SQL["count"],
            [Assignment.Purpose.MAIN.value, Assignment.State.SKIPPED.value, rater_id, item_id],
        )
        taken, mine = cursor.fetchone()
    return item, int(taken), int(mine)


def assignment_next(*, study: Study, rater, turn: RaterTurn | None = None) -> Assignment | None:
    """The rater's current or next assignment in ``study``, or None when there is nothing for them. ``turn``: the
    rater's turn as the submit of their last item read it (evaluation.access), which saves reading it again."""
    if turn is not None and turn.other_open_id is None:
        current = None  # the submit's turn says none is open: no query (nor a queryset built) for it
    else:
        open_ones = Assignment.objects.filter(study=study, rater=rater, state=Assignment.State.IN_PROGRESS)
        current = None
        if turn is not None and turn.other_open_id is not None:  # the other tab's item, if it is still open
            current = open_ones.filter(pk=turn.other_open_id).first()
        current = current or open_ones.order_by("assigned_at").first()  # else whichever is
    if current is not None and current.purpose in QUEUE_PURPOSES and rater_paused(study=study, rater=rater):
        return None  # paused while an item was open (another tab): the queue stops, the item waits for a reinstatement
    if current or study.status != Study.Status.OPEN:
        return current
    gate = rater_gate(study=study, rater=rater, known=None if turn is None else (turn.standing, turn.gating_kinds))
    if gate.step in ("training", "qualification"):
        return onboarding_assignment(study=study, rater=rater, gate=gate)
    if gate.step != "main":
        return None
    candidates = candidates_in_turn(study, rater)
    first = next(candidates, None)
    if first is None:
        return None
    # A gold item or a hidden repeat, at the study's rates.
    quality = quality_assignment(
        study=study, rater=rater, standing=gate.standing, had=None if turn is None else turn.queue_turns
    )
    if quality is not None:
        return quality
    for item_id in itertools.chain((first,), candidates):
        with transaction.atomic():
            item, taken, mine = _locked_places(item_id, rater_id=rater.pk)
            if taken >= study.raters_per_item + item.extra_raters or mine or item.dropped_at:
                continue  # someone took the last place (or the owner dropped the item) while we looked
            freeze_answers(item)
            return new_assignment(
                Assignment(
                    study=study,
                    item=item,
                    rater=rater,
                    swapped=study.mode == Study.Mode.PAIRWISE
                    and sides_swapped(seed=study.seed, rater_id=rater.pk, item_id=item.pk),
                )
            )
    return None
