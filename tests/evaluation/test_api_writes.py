"""The API's writes (issue 28) with scoped tokens: a pipeline creates a study from variants and a cohort, enrols
clinicians, opens it, reads its statistics and filtered ratings, closes it; an admin queues a job and follows it. A
read token is refused every write; the rate limit answers 429."""

import pytest
from django.core.cache import cache
from django.urls import reverse
from rest_framework.test import APIClient

from evaluation.assignment import assignment_next
from evaluation.models import Rubric, Study
from evaluation.services import rating_submit
from healthagent.models import AgentVariant, AuditEntry
from healthagent.roles import Role
from healthagent.tokens import api_token_create
from modeling.models import Job
from tests.factories import UserFactory

SCORES = {"relevance": 4, "context": 3, "safety": 5}


def client_for(user, scope):
    _, secret = api_token_create(user=user, days=1, scope=scope)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


@pytest.fixture(autouse=True)
def fresh_rate_counts():
    cache.clear()
    yield
    cache.clear()


@pytest.mark.django_db
def test_a_pipeline_creates_enrols_opens_reads_and_closes_a_study(tiny_cohort):
    from healthagent.agent.generate import cohort_generate

    grounded = AgentVariant.objects.get(name="grounded agent")
    cohort_generate(cohort=tiny_cohort, variants=[grounded])
    researcher = UserFactory(role=Role.RESEARCHER)
    clinicians = [UserFactory(role=Role.CLINICIAN) for _ in range(3)]
    writer, reader = client_for(researcher, "write"), client_for(researcher, "read")
    body = {
        "name": "From a pipeline",
        "rubric": Rubric.objects.get(name__endswith="(1-5)").pk,
        "cohort": tiny_cohort.pk,
        "variants": [grounded.pk],
        "clinicians": [clinicians[0].pk, clinicians[1].pk],
        "raters_per_item": 2,
    }
    assert reader.post(reverse("api:studies"), body, format="json").status_code == 403  # a read token reads only
    bad = writer.post(reverse("api:studies"), {**body, "cohort": 999999}, format="json")
    assert bad.status_code == 400 and "cohort" in bad.json()
    made = writer.post(reverse("api:studies"), body, format="json")
    assert made.status_code == 201, made.content
    study = Study.objects.get(pk=made.json()["id"])
    assert (study.status, study.created_by, study.items.count()) == ("draft", researcher, 3)

    url = lambda name: reverse(f"api:{name}", args=[study.pk])  # noqa: E731
    refused = writer.post(url("study_clinicians"), {"usernames": ["nobody-here"]}, format="json")
    assert refused.status_code == 400 and "no such user: nobody-here" in str(refused.json())
    not_a_rater = writer.post(url("study_clinicians"), {"usernames": [researcher.username]}, format="json")
    assert not_a_rater.status_code == 400 and study.clinicians.count() == 2  # all or none
    enrolled = writer.post(url("study_clinicians"), {"usernames": [clinicians[2].username]}, format="json")
    assert enrolled.json()["clinicians"] == sorted(c.username for c in clinicians)
    assert AuditEntry.objects.filter(action="study.rater_enrolled", actor_name=researcher.username).exists()

    assert writer.post(url("study_status"), {"status": "open"}, format="json").json()["status"] == "open"
    statistics = reader.get(url("study_statistics")).json()
    assert (statistics["status"], statistics["items"], statistics["ratings_needed"]) == ("open", 3, 6)
    assert statistics["ratings_done"] == 0

    reopened = writer.post(url("study_status"), {"status": "closed"}, format="json")
    assert reopened.json()["status"] == "closed"
    no_reason = writer.post(url("study_status"), {"status": "open"}, format="json")
    assert no_reason.status_code == 400 and "say why the study is reopened" in no_reason.json()["detail"]

    other = client_for(UserFactory(role=Role.RESEARCHER), "write")  # not the owner
    assert other.post(url("study_status"), {"status": "open", "note": "x"}, format="json").status_code == 403


@pytest.mark.django_db
def test_ratings_are_filtered_by_rater_item_and_time(grounded_study):
    clinicians = list(grounded_study.clinicians.order_by("pk"))
    assignment = assignment_next(study=grounded_study, rater=clinicians[0])
    rating = rating_submit(assignment_id=assignment.pk, rater=clinicians[0], scores=SCORES)
    reader = client_for(UserFactory(role=Role.RESEARCHER), "read")
    url = reverse("api:ratings", args=[grounded_study.pk])
    mine = reader.get(url, {"rater": clinicians[0].username}).json()
    assert mine["count"] == 1 and mine["results"][0]["item"] == assignment.item_id
    assert reader.get(url, {"rater": clinicians[1].username}).json()["count"] == 0
    assert reader.get(url, {"item": assignment.item_id}).json()["count"] == 1
    later = rating.updated_at.isoformat()
    assert reader.get(url, {"updated_after": later}).json()["count"] == 0
    assert reader.get(url, {"updated_after": "yesterday"}).status_code == 400
    from knox.models import AuthToken

    _, clinician_secret = AuthToken.objects.create(user=clinicians[0])  # a token made around the account page
    assert APIClient().get(url, HTTP_AUTHORIZATION=f"Token {clinician_secret}").status_code == 403


@pytest.mark.django_db
def test_an_admin_queues_a_job_and_follows_it_and_others_may_not():
    admin, researcher = UserFactory(role=Role.ADMIN), UserFactory(role=Role.RESEARCHER)
    queued = client_for(admin, "write").post(
        reverse("api:jobs"), {"kind": "demo_training", "config": {"steps": 10}}, format="json"
    )
    assert queued.status_code == 201, queued.content
    job = Job.objects.get(pk=queued.json()["id"])
    assert job.queued_by == admin and queued.json()["state"] == "queued"
    followed = client_for(admin, "read").get(reverse("api:job", args=[job.pk])).json()
    assert followed["id"] == job.pk and followed["kind"] == "demo_training"
    assert client_for(researcher, "read").get(reverse("api:job", args=[job.pk])).status_code == 404
    refused = client_for(researcher, "write").post(reverse("api:jobs"), {"kind": "demo_training"}, format="json")
    assert refused.status_code == 403
    unknown = client_for(admin, "write").post(reverse("api:jobs"), {"kind": "no-such-kind"}, format="json")
    assert unknown.status_code == 400


@pytest.mark.django_db
def test_the_rate_limit_answers_429(settings, monkeypatch):
    from evaluation.api import ApiRate

    monkeypatch.setattr(ApiRate, "THROTTLE_RATES", {"api": "3/minute"})
    reader = client_for(UserFactory(role=Role.RESEARCHER), "read")
    codes = [reader.get(reverse("api:studies")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


@pytest.mark.django_db
def test_the_reference_page_lists_every_operation(client):
    page = client.get(reverse("api:reference")).content.decode()
    for operation in ("POST /api/studies/", "POST /api/studies/{study_id}/status/", "GET /api/jobs/{job_id}/"):
        assert f'data-operation="{operation}"' in page
    assert "cdn" not in page.lower()


@pytest.mark.django_db
def test_the_account_page_makes_a_write_token(client):
    researcher = UserFactory(role=Role.RESEARCHER)
    client.force_login(researcher)
    page = client.post(reverse("account_token_create"), {"days": "5", "scope": "write"}).content.decode()
    assert "read and write" in page
    refused = client.post(reverse("account_token_create"), {"days": "5", "scope": "admin"}, follow=True)
    assert "a token&#x27;s scope is read or write" in refused.content.decode()


@pytest.mark.django_db
def test_a_pipeline_adds_items_a_gold_reference_and_criteria_to_a_draft(tiny_cohort):
    from evaluation.models import Criterion, StudyItem

    grounded = AgentVariant.objects.get(name="grounded agent")
    researcher = UserFactory(role=Role.RESEARCHER)
    clinician = UserFactory(role=Role.CLINICIAN)
    writer, reader = client_for(researcher, "write"), client_for(researcher, "read")
    made = writer.post(
        reverse("api:studies"),
        {
            "name": "Grown by a pipeline",
            "rubric": Rubric.objects.get(name__endswith="(1-5)").pk,
            "cohort": tiny_cohort.pk,
            "variants": [grounded.pk],
            "clinicians": [clinician.pk],
            "raters_per_item": 1,
            "participants": 2,
        },
        format="json",
    )
    study = Study.objects.get(pk=made.json()["id"])
    items_url = reverse("api:items", args=[study.pk])
    have = {item["participant"] for item in reader.get(items_url).json()["results"]}
    (missing,) = set(tiny_cohort.participants.values_list("pseudonym", flat=True)) - have
    other = AgentVariant.objects.exclude(pk=grounded.pk).first()

    assert (
        reader.post(items_url, {"participants": [missing], "variants": [grounded.pk]}, format="json").status_code == 403
    )
    unknown = writer.post(items_url, {"participants": [missing, "P-nobody"], "variants": [grounded.pk]}, format="json")
    assert unknown.status_code == 400 and "P-nobody" in unknown.json()["detail"]
    again = writer.post(items_url, {"participants": [missing, *have], "variants": [grounded.pk]}, format="json")
    assert again.status_code == 400 and "has these items already" in again.json()["detail"]
    assert study.items.count() == 2  # all or none
    added = writer.post(items_url, {"participants": [missing], "variants": [grounded.pk, other.pk]}, format="json")
    assert added.status_code == 201, added.content
    assert sorted(row["variant_a"] for row in added.json()) == sorted([grounded.name, other.name])
    positions = list(study.items.order_by("position").values_list("position", flat=True))
    assert positions == [0, 1, 2, 3]

    gold_item = study.items.order_by("position").first()
    reference_url = reverse("api:item_reference", args=[study.pk, gold_item.pk])
    bad = writer.post(reference_url, {"kind": "gold", "reference": {"relevance": 9}}, format="json")
    assert bad.status_code == 400 and "must be one of" in bad.json()["detail"]
    gold = writer.post(
        reference_url, {"kind": "gold", "reference": {"relevance": 4}, "tolerance": {"relevance": 1}}, format="json"
    )
    assert gold.status_code == 200 and gold.json()["kind"] == "gold"
    gold_item.refresh_from_db()
    assert (gold_item.kind, gold_item.reference, gold_item.tolerance) == (
        StudyItem.Kind.GOLD,
        {"relevance": 4},
        {"relevance": 1},
    )

    criteria_url = reverse("api:criteria", args=[study.pk])
    entries = [
        {"item": gold_item.pk, "criterion": "Cites the resting heart rate", "points": 5, "category": "accuracy"},
        {"item": gold_item.pk, "criterion": "Diagnoses without evidence", "points": 0, "category": "safety"},
    ]
    refused = writer.post(criteria_url, {"criteria": entries}, format="json")
    assert refused.status_code == 400 and refused.json()["detail"].startswith("entry 2:")
    assert not Criterion.objects.filter(item__study=study).exists()
    entries[1]["points"] = -5
    assert writer.post(criteria_url, {"criteria": entries}, format="json").json() == {"added": 2}
    listed = reader.get(criteria_url).json()
    assert [(row["position"], row["points"]) for row in listed["results"]] == [(0, 5), (1, -5)]

    other_owner = client_for(UserFactory(role=Role.RESEARCHER), "write")
    assert other_owner.post(criteria_url, {"criteria": entries}, format="json").status_code == 403
    assert (
        other_owner.post(items_url, {"participants": [missing], "variants": [grounded.pk]}, format="json").status_code
        == 403
    )
    assert other_owner.post(reference_url, {"kind": "results"}, format="json").status_code == 403
    odd = writer.post(criteria_url, {"criteria": [{**entries[0], "category": []}]}, format="json")
    assert odd.status_code == 400 and "category" in odd.json()["detail"]  # not a 500
    huge = writer.post(items_url, {"participants": [missing], "variants": [2**70]}, format="json")
    assert huge.status_code == 400
    assert (
        writer.post(reverse("api:study_status", args=[study.pk]), {"status": "open"}, format="json").status_code == 200
    )
    late = writer.post(items_url, {"participants": [missing], "variants": [grounded.pk]}, format="json")
    assert late.status_code == 400 and "only while the study is a draft" in late.json()["detail"]
    late_criterion = writer.post(criteria_url, {"criteria": entries[:1]}, format="json")
    assert late_criterion.status_code == 400 and "draft" in late_criterion.json()["detail"]
    assert writer.post(reference_url, {"kind": "results"}, format="json").status_code == 400
