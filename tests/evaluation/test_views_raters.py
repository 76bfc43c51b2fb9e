"""Rater onboarding and quality control through the pages (test client): consent and background, training feedback,
item references, reinstatement, the dashboard's rater quality, exclusions and strata, and the export's columns."""

import csv
import io
import re

import pytest
from django.urls import reverse

from evaluation.assignment import assignment_next
from evaluation.models import Assignment, Study, StudyItem, StudyRater
from evaluation.raters import DEFAULT_BACKGROUND_FIELDS
from evaluation.services import rating_submit
from healthagent.models import AuditEntry
from healthagent.roles import Role
from tests.evaluation.test_assignment import build_study
from tests.factories import UserFactory, submit_led_to

pytestmark = pytest.mark.django_db
KEYS = ("relevance", "context", "safety")


@pytest.fixture
def consent_study(grounded_study):
    Study.objects.filter(pk=grounded_study.pk).update(
        consent_text="**Consent**: your ratings are used without your name.",
        background_fields=DEFAULT_BACKGROUND_FIELDS,
    )
    grounded_study.refresh_from_db()
    return grounded_study


def test_the_queue_leads_to_consent_and_a_missing_answer_keeps_what_was_typed(client, consent_study):
    clinician = consent_study.clinicians.order_by("pk").first()
    client.force_login(clinician)
    assert "Start: consent and background" in client.get(reverse("evaluation:queue")).content.decode()
    response = client.get(reverse("evaluation:study_next", args=[consent_study.pk]))
    assert response.status_code == 302 and response["Location"] == reverse(
        "evaluation:onboarding", args=[consent_study.pk]
    )
    page = client.get(response["Location"]).content.decode()
    assert "<strong>Consent</strong>" in page and "Years in clinical practice" in page and "hospital" in page
    posted = {
        "decision": "accept",
        "consent_version": "1",
        "background-specialty": "cardiology",
        "background-years_in_practice": "",
        "background-country": "Netherlands",
        "background-care_setting": "hospital",
    }
    page = client.post(reverse("evaluation:onboarding", args=[consent_study.pk]), posted).content.decode()
    assert "Not saved: fill in: Years in clinical practice." in page and 'value="Netherlands"' in page
    assert not StudyRater.objects.exists()
    response = client.post(
        reverse("evaluation:onboarding", args=[consent_study.pk]), {**posted, "background-years_in_practice": "7"}
    )
    assert response["Location"] == reverse("evaluation:study_next", args=[consent_study.pk])
    standing = StudyRater.objects.get()
    assert standing.background == {
        "specialty": "cardiology",
        "years_in_practice": 7,
        "country": "Netherlands",
        "care_setting": "hospital",
    }
    assert client.get(response["Location"]).status_code == 302  # on to the first item


def test_declining_gives_no_items_and_says_so(client, consent_study):
    clinician = consent_study.clinicians.order_by("pk").first()
    client.force_login(clinician)
    client.post(
        reverse("evaluation:onboarding", args=[consent_study.pk]), {"decision": "decline", "consent_version": "1"}
    )
    page = client.get(reverse("evaluation:study_next", args=[consent_study.pk])).content.decode()
    assert "You declined to take part" in page and not Assignment.objects.exists()


def test_training_feedback_shows_the_reference_and_rationale_and_only_to_its_rater(client):
    study = build_study(items=4, raters=2, k=1)
    Study.objects.filter(pk=study.pk).update(status="draft")
    item = study.items.get(position=0)
    StudyItem.objects.filter(pk=item.pk).update(
        kind="training", reference={"relevance": 4, "context": 2, "safety": 5}, rationale="The answer ignores sleep."
    )
    Study.objects.filter(pk=study.pk).update(status="open")
    study.refresh_from_db()
    rater, other = study.clinicians.order_by("pk")
    client.force_login(rater)
    response = client.get(reverse("evaluation:study_next", args=[study.pk]), follow=True)
    assert "Training item." in response.content.decode()
    assignment = Assignment.objects.get(rater=rater)
    response = client.post(
        reverse("evaluation:assignment_submit", args=[assignment.pk]),
        {"score-relevance": "4", "score-context": "4", "score-safety": "5"},
    )
    assert response["Location"] == reverse("evaluation:training_feedback", args=[assignment.pk])
    page = client.get(response["Location"]).content.decode()
    assert "The answer ignores sleep." in page and page.count('class="differs"') == 1  # context: 4 against 2
    client.force_login(other)
    assert client.get(response["Location"]).status_code == 404


def test_a_gold_item_page_is_the_same_page_as_any_other(client):
    study = build_study(items=6, raters=1, k=1)
    StudyItem.objects.filter(study=study, position=5).update(kind="gold", reference={"relevance": 3})
    Study.objects.filter(pk=study.pk).update(gold_rate=1.0)  # the gold item first, then the others
    study.refresh_from_db()
    rater = study.clinicians.get()
    client.force_login(rater)
    pages = {}
    while (assignment := assignment_next(study=study, rater=rater)) is not None:
        html = client.get(reverse("evaluation:assignment", args=[assignment.pk])).content.decode()
        pages[assignment.purpose] = html
        rating_submit(assignment_id=assignment.pk, rater=rater, scores=dict.fromkeys(KEYS, 3))
    assert set(pages) == {"main", "gold"}
    for word in ("gold", "repeat", "reference", "qualification", "training"):
        assert word not in pages["gold"].lower()


def test_item_references_refuse_bad_input_and_write_nothing(client):
    study = build_study(items=3, raters=1, k=1)
    Study.objects.filter(pk=study.pk).update(status="draft")
    owner = UserFactory(role=Role.RESEARCHER)
    Study.objects.filter(pk=study.pk).update(created_by=owner)
    item = study.items.first()
    client.force_login(owner)
    url = reverse("evaluation:study_item_reference", args=[study.pk, item.pk])
    assert "Tolerance of Relevance" in client.get(url).content.decode()
    page = client.post(url, {"kind": "gold", "reference-relevance": "9"}).content.decode()
    assert "the score must be one of 1, 2, 3, 4, 5" in page
    item.refresh_from_db()
    assert item.kind == "results"
    response = client.post(
        url, {"kind": "gold", "reference-relevance": "4", "tolerance-relevance": "0", "reference-safety": "5"}
    )
    assert response.status_code == 302
    item.refresh_from_db()
    assert (item.kind, item.reference, item.tolerance) == ("gold", {"relevance": 4, "safety": 5}, {"relevance": 0})
    other = UserFactory(role=Role.RESEARCHER)
    client.force_login(other)
    assert client.post(url, {"kind": "results"}).status_code == 403


def paused_study():
    # Gold comes by a seeded draw per rater: 40 main items at a rate of 0.5 give the first rater two gold items
    # whatever their account's number (fewer than two has a probability under 1e-10).
    study = build_study(items=48, raters=2, k=1)
    StudyItem.objects.filter(study=study, position__gte=40).update(kind="gold", reference=dict.fromkeys(KEYS, 5))
    Study.objects.filter(pk=study.pk).update(gold_rate=0.5, gold_minimum=2, min_seconds_per_item=5.0)
    study.refresh_from_db()
    bad, good = study.clinicians.order_by("pk")
    for rater, score in ((bad, 1), (good, 5)):
        while (assignment := assignment_next(study=study, rater=rater)) is not None:
            rating_submit(
                assignment_id=assignment.pk,
                rater=rater,
                scores=dict.fromkeys(KEYS, score),
                time_spent_s=2 if rater == bad else 30,
            )
    return study, bad, good


def test_a_paused_rater_is_told_the_researcher_sees_it_and_reinstates_them(client):
    study, bad, _ = paused_study()
    assert StudyRater.objects.get(rater=bad).state == "paused"
    client.force_login(bad)
    page = client.get(reverse("evaluation:study_next", args=[study.pk])).content.decode()
    assert "Your queue is paused" in page and "Your ratings so far are kept" in page
    owner = UserFactory(role=Role.RESEARCHER)
    Study.objects.filter(pk=study.pk).update(created_by=owner)
    client.force_login(owner)
    assert "1 rater paused" in client.get(reverse("evaluation:study_list")).content.decode()
    assert (
        "was paused by quality control"
        in client.get(reverse("evaluation:study_detail", args=[study.pk])).content.decode()
    )
    url = reverse("evaluation:study_rater_reinstate", args=[study.pk, bad.pk])
    client.post(url, {"note": ""})
    assert StudyRater.objects.get(rater=bad).state == "paused"
    client.post(url, {"note": "Retrained by phone"})
    assert StudyRater.objects.get(rater=bad).state == "reinstated"
    assert AuditEntry.objects.filter(action="rater.reinstated").count() == 1


def test_submits_hand_out_gold_items_unmarked_and_stop_at_the_pause(client):
    """Through the site: each submit answers with the next item's page, gold items among them looking like any
    other, until the submit that pauses the rater, which answers with the queue's page (the pause's message)."""
    study = build_study(items=48, raters=2, k=1)
    StudyItem.objects.filter(study=study, position__gte=40).update(kind="gold", reference=dict.fromkeys(KEYS, 5))
    Study.objects.filter(pk=study.pk).update(gold_rate=0.5, gold_minimum=2, min_seconds_per_item=5.0)
    bad = study.clinicians.order_by("pk").first()
    client.force_login(bad)
    queue = reverse("evaluation:study_next", args=[study.pk])
    location, shown, purposes = client.get(queue)["Location"], None, []
    for _ in range(50):
        if location == queue:
            break
        assignment = Assignment.objects.get(pk=int(location.rstrip("/").rsplit("/", 1)[1]), rater=bad)
        purposes.append(assignment.purpose)
        page = (shown or client.get(location)).content.decode()  # the page the last submit answered with, if it did
        assert "gold" not in page.lower() and "reference" not in page.lower()
        form = {f"score-{key}": "1" for key in KEYS} | {"time_spent_s": "2"}
        answer = client.post(location + "submit/", form)
        location, shown = submit_led_to(answer), answer if answer.status_code == 200 else None
    assert location == queue and purposes.count("gold") >= 2 and purposes[-1] == "main"
    assert StudyRater.objects.get(study=study, rater=bad).state == "paused"
    assert "Your queue is paused" in client.get(queue).content.decode()


def test_the_dashboard_shows_rater_quality_and_its_switches_leave_ratings_out(client):
    study, bad, _ = paused_study()
    assert Assignment.objects.filter(rater=bad, purpose="main", state="done").exists()
    researcher = UserFactory(role=Role.RESEARCHER)
    client.force_login(researcher)
    url = reverse("evaluation:study_dashboard", args=[study.pk])
    page = client.get(url).content.decode()
    # Two or more gold items, none matched (how many before the pause depends on the seeded draws).
    assert "Rater quality" in page and re.search(r">0/[2-9] \(", page) and "paused" in page
    every = int(page.split("Statistics below use <strong>")[1].split("<")[0])
    page = client.get(url + "?exclude=paused&exclude=fast").content.decode()
    used = int(page.split("Statistics below use <strong>")[1].split("<")[0])
    assert used < every and "left out by: fast, paused" in page
    assert "partial=1&amp;exclude=paused&amp;exclude=fast" in page  # the live refresh keeps the switches


def test_the_export_flags_rather_than_drops_and_carries_the_background(client, consent_study):
    clinician = consent_study.clinicians.order_by("pk").first()
    client.force_login(clinician)
    client.post(
        reverse("evaluation:onboarding", args=[consent_study.pk]),
        {
            "decision": "accept",
            "consent_version": "1",
            "background-specialty": "=HYPERLINK(1)",
            "background-years_in_practice": "3",
            "background-country": "NL",
            "background-care_setting": "primary care",
        },
    )
    Study.objects.filter(pk=consent_study.pk).update(min_seconds_per_item=60)
    consent_study.refresh_from_db()
    assignment = assignment_next(study=consent_study, rater=clinician)
    rating_submit(assignment_id=assignment.pk, rater=clinician, scores=dict.fromkeys(KEYS, 4), time_spent_s=5)
    researcher = UserFactory(role=Role.RESEARCHER)
    client.force_login(researcher)
    content = client.get(reverse("evaluation:study_export", args=[consent_study.pk, "csv"])).content.decode()
    row = next(csv.DictReader(io.StringIO(content)))
    assert row["excluded_by"] == "fast" and row["background_care_setting"] == "primary care"
    assert row["consent_version"] == "1" and row["background_years_in_practice"] == "3"
    dictionary = client.get(reverse("evaluation:data_dictionary")).json()["columns"]
    assert "excluded_by" in dictionary and "background_<key>" in dictionary


def test_a_pairwise_study_has_rater_quality_too(client):
    study = build_study(items=12, raters=3, k=3, mode="pairwise")
    for rater in study.clinicians.all():
        while (assignment := assignment_next(study=study, rater=rater)) is not None:
            rating_submit(
                assignment_id=assignment.pk,
                rater=rater,
                scores=dict.fromkeys(KEYS, "a"),
                preference="a" if rater.pk % 2 else "b",
                time_spent_s=20,
            )
    client.force_login(UserFactory(role=Role.RESEARCHER))
    page = client.get(reverse("evaluation:study_dashboard", args=[study.pk])).content.decode()
    assert "Rater quality" in page and "Items the rater model is least sure of" in page


def test_a_study_form_sets_the_rater_rules_and_refuses_a_bad_background_line(
    client, researcher, tiny_cohort, grounded_study
):
    from healthagent.models import AgentVariant

    client.force_login(researcher)
    form = {
        "name": "Vouched",
        "mode": "absolute",
        "rubric": grounded_study.rubric_id,
        "cohort": tiny_cohort.pk,
        "variants": list(AgentVariant.objects.filter(name="grounded agent").values_list("pk", flat=True)),
        "raters_per_item": 1,
        "clinicians": list(grounded_study.clinicians.values_list("pk", flat=True)),
        "window_days": 7,
        "seed": 1,
        "consent_text": "I agree.",
        "background_fields": "specialty | Specialty | text\nsetting | Care setting | choice",
        "pass_threshold": 90,
        "gold_rate": 10,
        "repeat_share": 5,
    }
    page = client.post(reverse("evaluation:study_new"), form).content.decode()
    assert (
        "Line 2: a choice needs its choices, comma-separated." in page
        and not Study.objects.filter(name="Vouched").exists()
    )
    form["background_fields"] = "specialty | Specialty | text\nsetting | Care setting | choice | ward, clinic"
    assert client.post(reverse("evaluation:study_new"), form).status_code == 302
    study = Study.objects.get(name="Vouched")
    assert (study.pass_threshold, study.gold_rate, study.repeat_share, study.qualification_retries) == (
        0.9,
        0.1,
        0.05,
        1,
    )
    assert study.background_fields[1] == {
        "key": "setting",
        "label": "Care setting",
        "kind": "choice",
        "choices": ["ward", "clinic"],
    }
