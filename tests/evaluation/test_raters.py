"""Raters you can vouch for (issue 20): consent, training, qualification, gold items, hidden repeats, pauses and
extra raters for disagreement, through the services a clinician's requests call."""

from datetime import timedelta

import pytest
from django.utils import timezone

from evaluation.assignment import assignment_next
from evaluation.dashboard import study_ratings
from evaluation.models import Assignment, QualificationAttempt, Study, StudyItem, StudyRater
from evaluation.raters import (
    DEFAULT_BACKGROUND_FIELDS,
    RaterError,
    items_disagree,
    rater_gate,
    rater_onboard,
    rater_reinstate,
    study_item_reference_set,
)
from evaluation.services import rating_submit
from healthagent.models import AuditEntry
from healthagent.roles import Role
from tests.evaluation.test_assignment import build_study
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

BACKGROUND = {"specialty": "cardiology", "years_in_practice": "12", "country": "NL", "care_setting": "hospital"}


def submit(assignment, score=3, **extra):
    keys = ("relevance", "context", "safety")
    return rating_submit(
        assignment_id=assignment.pk, rater=assignment.rater, scores=dict.fromkeys(keys, score), **extra
    )


def make_kind(study, positions, kind, score=3, rationale=""):
    owner = UserFactory(role=Role.RESEARCHER)
    status = study.status
    Study.objects.filter(pk=study.pk).update(status="draft")
    study.refresh_from_db()
    for position in positions:
        item = study.items.get(position=position)
        study_item_reference_set(
            study=study,
            item_id=item.pk,
            kind=kind,
            reference=dict.fromkeys(("relevance", "context", "safety"), score),
            tolerance={},
            rationale=rationale,
            user=owner,
        )
    Study.objects.filter(pk=study.pk).update(status=status)
    study.refresh_from_db()


def test_a_consent_text_comes_first_and_a_decline_gives_nothing():
    study = build_study(items=3, raters=2, k=1)
    Study.objects.filter(pk=study.pk).update(consent_text="Do you agree?", background_fields=DEFAULT_BACKGROUND_FIELDS)
    study.refresh_from_db()
    accepting, declining = study.clinicians.order_by("pk")
    assert assignment_next(study=study, rater=accepting) is None
    assert rater_gate(study=study, rater=accepting).step == "consent"
    with pytest.raises(RaterError, match="Years in clinical practice"):
        rater_onboard(
            study=study,
            rater=accepting,
            accept=True,
            consent_version=1,
            background={**BACKGROUND, "years_in_practice": ""},
        )
    assert not StudyRater.objects.exists()  # a refused form writes nothing
    with pytest.raises(RaterError, match="consent text has changed"):
        rater_onboard(study=study, rater=accepting, accept=True, consent_version=0, background=BACKGROUND)
    standing = rater_onboard(study=study, rater=accepting, accept=True, consent_version=1, background=BACKGROUND)
    assert standing.background["years_in_practice"] == 12 and standing.consented_at is not None
    assert assignment_next(study=study, rater=accepting) is not None
    rater_onboard(study=study, rater=declining, accept=False, consent_version=1, background={})
    assert rater_gate(study=study, rater=declining).step == "declined"
    assert assignment_next(study=study, rater=declining) is None
    # A new version of the consent text asks again, even those who accepted.
    Study.objects.filter(pk=study.pk).update(consent_version=2)
    study.refresh_from_db()
    assert rater_gate(study=study, rater=accepting).step == "consent"
    assert set(AuditEntry.objects.values_list("action", flat=True)) >= {"rater.consented", "rater.declined"}


def test_training_items_come_first_and_never_enter_the_results():
    study = build_study(items=6, raters=1, k=1)
    make_kind(study, [4, 5], "training", rationale="Why")
    rater = study.clinicians.get()
    first = assignment_next(study=study, rater=rater)
    assert first.purpose == "training" and first.item.position == 4
    submit(first, score=5)
    second = assignment_next(study=study, rater=rater)
    assert second.purpose == "training" and second.item.position == 5
    submit(second)
    main = assignment_next(study=study, rater=rater)
    assert main.purpose == "main" and main.item.kind == "results"
    submit(main)
    assert list(study_ratings(study)["item"]) == [main.item_id]
    assert Assignment.objects.get(pk=first.pk).matches_reference is False  # 5 is two points from the reference 3


def qualify(study, rater, scores):
    """Rate the qualification items with the scores given, in order."""
    for score in scores:
        assignment = assignment_next(study=study, rater=rater)
        assert assignment.purpose == "qualification"
        submit(assignment, score=score)


def test_qualification_fails_waits_for_the_cool_down_and_passes_on_a_retry():
    study = build_study(items=15, raters=1, k=1)
    make_kind(study, range(10, 15), "qualification")
    Study.objects.filter(pk=study.pk).update(pass_threshold=0.8, qualification_retries=1, retry_cooldown_minutes=30)
    study.refresh_from_db()
    rater = study.clinicians.get()
    qualify(study, rater, [3, 3, 3, 1, 1])  # 3 of 5 within one point of 3
    gate = rater_gate(study=study, rater=rater)
    assert gate.step == "failed" and gate.attempt.correct == 3 and gate.retry_at is not None
    assert assignment_next(study=study, rater=rater) is None
    # A graded qualification item cannot be changed afterwards.
    graded = Assignment.objects.filter(rater=rater, purpose="qualification").first()
    with pytest.raises(Exception, match="graded"):
        submit(graded, score=4)
    QualificationAttempt.objects.update(finished_at=timezone.now() - timedelta(minutes=31))
    qualify(study, rater, [3, 4, 2, 3, 3])
    assert rater_gate(study=study, rater=rater).step == "main"
    assert assignment_next(study=study, rater=rater).purpose == "main"
    attempts = list(QualificationAttempt.objects.order_by("number").values_list("number", "correct", "passed"))
    assert attempts == [(1, 3, False), (2, 5, True)]


def test_no_retry_left_says_so():
    study = build_study(items=4, raters=1, k=1)
    make_kind(study, [3], "qualification")
    Study.objects.filter(pk=study.pk).update(qualification_retries=0)
    study.refresh_from_db()
    rater = study.clinicians.get()
    qualify(study, rater, [1])
    gate = rater_gate(study=study, rater=rater, now=timezone.now() + timedelta(days=30))
    assert gate.step == "failed" and gate.retry_at is None


def test_gold_items_are_mixed_in_once_each_and_a_low_accuracy_pauses_until_reinstated():
    study = build_study(items=30, raters=1, k=1)
    make_kind(study, range(20, 30), "gold", score=5)
    Study.objects.filter(pk=study.pk).update(gold_rate=0.5, gold_minimum=3, pass_threshold=0.8)
    study.refresh_from_db()
    rater = study.clinicians.get()
    given = []
    while (assignment := assignment_next(study=study, rater=rater)) is not None:
        given.append(assignment)
        submit(assignment, score=1)  # four points from every gold reference
    gold = [assignment for assignment in given if assignment.purpose == "gold"]
    assert len(gold) >= 3 and len({assignment.item_id for assignment in gold}) == len(gold)  # never twice
    assert given[-1].purpose == "main"  # paused on a main rating after the gold ones, never on a gold item's submit
    standing = StudyRater.objects.get(study=study, rater=rater)
    assert standing.state == "paused" and f"0/{len(gold)}" in standing.pause_reason
    assert rater_gate(study=study, rater=rater).step == "paused"
    kept = Assignment.objects.filter(rater=rater, state="done").count()
    assert kept == len(given)  # nothing deleted
    with pytest.raises(RaterError, match="say why"):
        rater_reinstate(study=study, rater=rater, user=UserFactory(role=Role.RESEARCHER), note=" ")
    rater_reinstate(study=study, rater=rater, user=UserFactory(role=Role.RESEARCHER), note="Talked it through")
    assert assignment_next(study=study, rater=rater) is not None
    assert AuditEntry.objects.filter(action="rater.reinstated", details__note="Talked it through").exists()


def test_hidden_repeats_come_after_the_gap_and_never_count_as_raters():
    study = build_study(items=20, raters=1, k=1)
    Study.objects.filter(pk=study.pk).update(repeat_share=0.5, repeat_gap=3)
    study.refresh_from_db()
    rater = study.clinicians.get()
    order = []
    while (assignment := assignment_next(study=study, rater=rater)) is not None:
        order.append(assignment)
        submit(assignment)
    repeats = [assignment for assignment in order if assignment.purpose == "repeat"]
    assert repeats, "a share of 0.5 gives repeats"
    for repeat in repeats:
        first = order.index(repeat.repeat_of)
        assert repeat.item_id == repeat.repeat_of.item_id and order.index(repeat) - first - 1 >= 3
    assert len({repeat.repeat_of_id for repeat in repeats}) == len(repeats)  # each item repeated at most once
    assert sum(1 for assignment in order if assignment.purpose == "main") == 20  # every item still has its k = 1


def test_items_whose_raters_disagree_get_extra_raters_up_to_the_maximum():
    study = build_study(items=2, raters=4, k=2)
    Study.objects.filter(pk=study.pk).update(extra_raters_max=1, disagreement_range=2)
    study.refresh_from_db()
    raters = list(study.clinicians.order_by("pk"))
    for rater, score in zip(raters[:2], (1, 5), strict=True):
        for _ in range(2):
            submit(assignment_next(study=study, rater=rater), score=score)
    extra = dict(StudyItem.objects.filter(study=study).values_list("pk", "extra_raters"))
    assert set(extra.values()) == {1}
    submit(assignment_next(study=study, rater=raters[2]), score=3)
    submit(assignment_next(study=study, rater=raters[2]), score=3)
    assert assignment_next(study=study, rater=raters[3]) is None  # the maximum of one extra is reached


def test_disagreement_rules():
    assert items_disagree([({"a": 1}, ""), ({"a": 3}, "")], pairwise=False, threshold=2)
    assert not items_disagree([({"a": 2}, ""), ({"a": 3}, "")], pairwise=False, threshold=2)
    assert items_disagree([({"a": "a"}, "a"), ({"a": "b"}, "a")], pairwise=True, threshold=2)
    assert not items_disagree([({"a": "a"}, "a"), ({"a": "a"}, "a")], pairwise=True, threshold=2)


def test_references_are_checked_and_only_set_in_a_draft():
    study = build_study(items=3, raters=1, k=1)
    user = UserFactory(role=Role.RESEARCHER)
    item = study.items.first()
    with pytest.raises(RaterError, match="draft"):
        study_item_reference_set(
            study=study, item_id=item.pk, kind="gold", reference={"relevance": 3}, tolerance={}, rationale="", user=user
        )
    Study.objects.filter(pk=study.pk).update(status="draft")
    study.refresh_from_db()
    for reference, message in (({}, "at least one"), ({"relevance": 9}, "one of"), ({"nope": 1}, "unknown")):
        with pytest.raises(RaterError, match=message):
            study_item_reference_set(
                study=study, item_id=item.pk, kind="gold", reference=reference, tolerance={}, rationale="", user=user
            )
    item.refresh_from_db()
    assert item.kind == "results" and item.reference == {}


def test_a_retry_is_not_blocked_by_another_raters_attempt_and_qualification_items_cannot_be_skipped():
    from evaluation.services import EvaluationError, assignment_skip

    study = build_study(items=6, raters=2, k=1)
    make_kind(study, [4, 5], "qualification")
    Study.objects.filter(pk=study.pk).update(qualification_retries=2, retry_cooldown_minutes=0)
    study.refresh_from_db()
    first, second = study.clinicians.order_by("pk")
    qualify(study, first, [1, 1])  # fails attempt 1
    qualify(study, second, [1, 1])
    second_try = assignment_next(study=study, rater=second)  # the other rater's attempt 2 is under way
    assert second_try.purpose == "qualification" and second_try.attempt == 2
    with pytest.raises(EvaluationError, match="cannot be skipped"):
        assignment_skip(assignment_id=second_try.pk, rater=second, reason="too hard")
    retry = assignment_next(study=study, rater=first)  # was None when the exclusion spanned other raters' rows
    assert retry is not None and retry.purpose == "qualification" and retry.attempt == 2
    assert assignment_next(study=study, rater=first) == retry  # asked twice (a double click): the same item
