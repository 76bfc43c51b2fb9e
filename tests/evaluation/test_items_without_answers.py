"""A study whose answer for an item will never come: the clinician never waits for it, the study's owner
sees it with the reason and regenerates it or drops it with a note (audited); closing asks first and a
closed study can be reopened with a note."""

import pytest
from django.urls import reverse

from evaluation.assignment import assignment_next, items_waiting_for_answers, items_without_answers
from evaluation.missing_answers import study_item_drop
from evaluation.models import Rubric, StudyItem
from evaluation.selectors import rater_progress, study_overview
from evaluation.services import EvaluationError, StudySpec, study_create, study_set_status
from healthagent.agent.generate import cohort_generate
from healthagent.audit import Action
from healthagent.models import AgentVariant, AuditEntry, Recommendation
from healthagent.roles import Role
from modeling.jobs import job_queue
from modeling.models import Job
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

FAILURE = "degenerate output: the same phrase repeated 14 times"


@pytest.fixture
def study_with_a_failed_answer(tiny_cohort):
    """Absolute study, grounded + LLM only over three participants; the LLM's answer failed for the first."""
    grounded, llm = AgentVariant.objects.get(name="grounded agent"), AgentVariant.objects.get(name="LLM only")
    cohort_generate(cohort=tiny_cohort, variants=[grounded])
    participants = list(tiny_cohort.participants.order_by("pk"))
    Recommendation.objects.create(participant=participants[0], variant=llm, status="failed", context={}, error=FAILURE)
    for participant in participants[1:]:
        Recommendation.objects.create(
            participant=participant, variant=llm, status="succeeded", context={}, text="Walk more in the evening."
        )
    owner, clinician = UserFactory(role=Role.RESEARCHER), UserFactory(role=Role.CLINICIAN)
    spec = StudySpec(
        name="With a failure",
        mode="absolute",
        rubric=Rubric.objects.get(name__endswith="(1-5)"),
        cohort=tiny_cohort,
        variants=[grounded, llm],
        raters_per_item=1,
        clinicians=[clinician],
    )
    study = study_set_status(study=study_create(spec=spec, user=owner), status="open")
    failed_item = StudyItem.objects.get(study=study, participant=participants[0], variant_a=llm)
    return study, owner, clinician, failed_item


def rate_everything(client, study, clinician):
    client.force_login(clinician)
    while (assignment := assignment_next(study=study, rater=clinician)) is not None:
        client.post(
            reverse("evaluation:assignment_submit", args=[assignment.pk]),
            {"score-relevance": "4", "score-context": "4", "score-safety": "4"},
        )
    return client.get(reverse("evaluation:study_next", args=[study.pk])).content.decode()


def test_the_clinician_is_not_told_to_wait_for_an_answer_that_will_not_come(client, study_with_a_failed_answer):
    study, _, clinician, _ = study_with_a_failed_answer
    page = rate_everything(client, study, clinician)
    assert items_waiting_for_answers(study) == 0
    assert "still writing" not in page and "Thank you" in page
    assert rater_progress(study=study, rater=clinician)["done"] == 5


def test_an_item_waits_only_while_a_generation_job_is_on_its_way(client, study_with_a_failed_answer, tiny_cohort):
    study, _, clinician, failed_item = study_with_a_failed_answer
    others = list(tiny_cohort.participants.exclude(pk=failed_item.participant_id).values_list("pk", flat=True))
    job_queue(
        kind_name="generate_recommendations",
        config={"cohort": tiny_cohort.pk, "variants": [failed_item.variant_a_id], "participants": others},
    )
    assert items_waiting_for_answers(study) == 0  # a job for other participants writes nothing for this item
    job_queue(
        kind_name="generate_recommendations", config={"cohort": tiny_cohort.pk, "variants": [failed_item.variant_a_id]}
    )
    assert items_waiting_for_answers(study) == 1
    assert "still writing the answers of 1 item" in rate_everything(client, study, clinician)
    with pytest.raises(EvaluationError, match="being generated"):
        study_item_drop(study=study, item_id=failed_item.pk, note="too early", user=study.created_by)
    Job.objects.all().update(state=Job.State.SUCCEEDED)  # the jobs ended and the answer still failed
    assert items_waiting_for_answers(study) == 0


def test_the_owner_sees_the_item_with_its_reason_and_drops_it_with_a_note(client, study_with_a_failed_answer):
    study, owner, clinician, failed_item = study_with_a_failed_answer
    client.force_login(owner)
    page = client.get(reverse("evaluation:study_detail", args=[study.pk])).content.decode()
    assert "Items whose answer will not come" in page and FAILURE in page and failed_item.participant.pseudonym in page
    assert study_overview(study=study)["ratings_needed"] == 6

    refused = client.post(
        reverse("evaluation:study_item_drop", args=[study.pk, failed_item.pk]), {"note": "  "}, follow=True
    )
    assert "say why the item is dropped" in refused.content.decode()
    client.post(
        reverse("evaluation:study_item_drop", args=[study.pk, failed_item.pk]), {"note": "LLM output degenerate twice"}
    )

    failed_item.refresh_from_db()
    assert (
        failed_item.dropped_at is not None
        and failed_item.dropped_by == owner
        and failed_item.drop_note == "LLM output degenerate twice"
    )
    entry = AuditEntry.objects.get(action=Action.STUDY_ITEM_DROPPED)
    assert entry.actor == owner and entry.details["note"] == "LLM output degenerate twice"
    overview = study_overview(study=study)
    assert overview["ratings_needed"] == 5 and not overview["unanswerable"] and overview["dropped"] == [failed_item]
    page = client.get(reverse("evaluation:study_detail", args=[study.pk])).content.decode()
    assert "Dropped items" in page and "LLM output degenerate twice" in page
    client.logout()
    rate_everything(client, study, clinician)
    progress = rater_progress(study=study, rater=clinician)
    assert progress["done"] == 5 and progress["total"] == 5


def test_regenerate_queues_a_job_for_the_missing_answer_once(client, study_with_a_failed_answer, tiny_cohort):
    study, owner, _, failed_item = study_with_a_failed_answer
    client.force_login(owner)
    url = reverse("evaluation:study_item_regenerate", args=[study.pk, failed_item.pk])
    client.post(url)
    job = Job.objects.get(kind="generate_recommendations")
    assert (
        job.config
        == {
            "cohort": tiny_cohort.pk,
            "variants": [failed_item.variant_a_id],
            "regenerate": False,
            "participants": [failed_item.participant_id],
        }
        and job.queued_by == owner
    )
    assert AuditEntry.objects.get(action=Action.STUDY_ITEM_REGENERATED).details["job"] == job.pk
    again = client.post(url, follow=True).content.decode()
    assert f"being generated already (job #{job.pk})" in again and Job.objects.count() == 1
    assert items_without_answers(study)[0].waiting


def test_only_the_owner_or_an_admin_changes_items_and_a_shown_item_is_never_dropped(
    client, study_with_a_failed_answer, grounded_study
):
    study, owner, clinician, failed_item = study_with_a_failed_answer
    for intruder, status in ((UserFactory(role=Role.RESEARCHER), 403), (clinician, 403)):
        client.force_login(intruder)
        assert (
            client.post(
                reverse("evaluation:study_item_drop", args=[study.pk, failed_item.pk]), {"note": "x"}
            ).status_code
            == status
        )
    client.force_login(UserFactory(role=Role.ADMIN))
    client.post(reverse("evaluation:study_item_drop", args=[study.pk, failed_item.pk]), {"note": "by an admin"})
    assert StudyItem.objects.get(pk=failed_item.pk).drop_note == "by an admin"

    shown = assignment_next(study=study, rater=clinician).item
    with pytest.raises(EvaluationError, match="has been shown to clinicians"):
        study_item_drop(study=study, item_id=shown.pk, note="no", user=owner)
    answered = StudyItem.objects.filter(study=study, frozen=False, dropped_at__isnull=True).first()
    with pytest.raises(EvaluationError, match="has its answers"):
        study_item_drop(study=study, item_id=answered.pk, note="an item with its answers is never dropped", user=owner)
    with pytest.raises(EvaluationError, match="no such item"):
        study_item_drop(study=study, item_id=grounded_study.items.first().pk, note="another study's item", user=owner)


def test_closing_asks_first_and_reopening_needs_a_note(client, study_with_a_failed_answer):
    study, owner, _, _ = study_with_a_failed_answer
    client.force_login(owner)
    url = reverse("evaluation:study_status", args=[study.pk])
    page = client.post(url, {"status": "closed"}).content.decode()
    study.refresh_from_db()
    assert study.status == "open" and "nobody can rate or revise" in page and "6 more are needed" in page
    client.post(url, {"status": "closed", "confirmed": "yes"})
    study.refresh_from_db()
    assert study.status == "closed"

    page = client.get(reverse("evaluation:study_detail", args=[study.pk])).content.decode()
    assert "Reopen the study" in page
    refused = client.post(url, {"status": "open", "note": ""}, follow=True).content.decode()
    study.refresh_from_db()
    assert study.status == "closed" and "say why the study is reopened" in refused.lower()
    client.post(url, {"status": "open", "note": "two clinicians asked for more time"})
    study.refresh_from_db()
    assert study.status == "open" and study.closed_at is None
    assert AuditEntry.objects.get(action=Action.STUDY_REOPENED).details == {
        "note": "two clinicians asked for more time"
    }


def test_the_study_page_counts_raters_and_items_in_words(client, study_with_a_failed_answer):
    study, owner, _, _ = study_with_a_failed_answer  # one rater per item
    client.force_login(owner)
    page = client.get(reverse("evaluation:study_detail", args=[study.pk])).content.decode()
    assert "1 rater per item" in page and "1 raters" not in page and "(6 items × 1 rater)" in page
