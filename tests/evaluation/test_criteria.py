"""Per-item criteria (issue 22): the HealthBench score, writing and importing criteria, grading them in a rating,
and where they show (rating page, dashboard, exports)."""

import io
import json

import pandas as pd
import pytest
from django.urls import reverse

from evaluation.assignment import assignment_next
from evaluation.criteria import (
    criteria_import,
    criterion_add,
    criterion_delete,
    healthbench_score,
    rating_criterion_scores,
)
from evaluation.models import Criterion, Rating, Study
from evaluation.services import EvaluationError, rating_submit
from healthagent.roles import Role
from tests.factories import UserFactory

SCORES = {"relevance": 4, "context": 3, "safety": 5}


def test_the_healthbench_score():
    assert healthbench_score([5, 3], [True, True]) == 1.0
    assert healthbench_score([5, 3], [True, False]) == pytest.approx(5 / 8)
    assert healthbench_score([5, 3, -4], [True, False, True]) == pytest.approx(1 / 8)
    assert healthbench_score([5, -8], [False, True]) == 0.0  # clipped at 0
    assert healthbench_score([-3], [True]) is None  # nothing positive to achieve


@pytest.fixture
def draft_study(grounded_study):
    Study.objects.filter(pk=grounded_study.pk).update(status="draft")
    grounded_study.refresh_from_db()
    return grounded_study


def lines(*entries):
    return "\n".join(json.dumps(entry) for entry in entries)


def test_an_import_is_all_or_nothing_and_names_the_bad_line(draft_study):
    owner = draft_study.created_by
    first, second = draft_study.items.order_by("position")[:2]
    good = {
        "item": first.pk,
        "criterion": "Recommends seeing a clinician about the SpO2 dips",
        "points": 5,
        "category": "safety",
    }
    cases = [
        (lines(good, good) + "\n{not json", "line 3: not JSON"),
        (lines(good, {**good, "item": 999_999}), "line 2: item 999999 is not an item of this study"),
        (lines(good, {**good, "points": 0}), "line 2: points must be a whole number from -10 to 10, not 0"),
        (lines(good, {**good, "points": 11}), "line 2: points must be"),
        (lines(good, {**good, "category": "vibes"}), "line 2: the category must be one of"),
        (lines({**good, "criterion": ""}), "line 1: write the criterion"),
        ("[1, 2]", "line 1: not a JSON object"),
        ("", "no criterion to import"),
    ]
    for text, message in cases:
        with pytest.raises(EvaluationError, match=message):
            criteria_import(study=draft_study, text=text, user=owner)
    assert not Criterion.objects.exists()
    count = criteria_import(
        study=draft_study,
        text=lines(good, {**good, "criterion": "Stops a medication", "points": -8}, {**good, "item": second.pk})
        + "\n\n",
        user=owner,
    )
    assert count == 3
    assert list(first.criteria.values_list("position", "points")) == [(0, 5), (1, -8)]
    criteria_import(study=draft_study, text=lines(good), user=owner)  # appended after those there
    assert list(first.criteria.values_list("position", flat=True)) == [0, 1, 2]


def test_criteria_change_only_while_the_study_is_a_draft_and_only_by_its_owner(draft_study, pairwise_study):
    item = draft_study.items.first()
    entry = {"criterion": "Mentions the trend", "points": "3", "category": "context_awareness"}
    with pytest.raises(Exception, match="owner"):
        criterion_add(study=draft_study, item_id=item.pk, entry=entry, user=UserFactory(role=Role.RESEARCHER))
    criterion_add(study=draft_study, item_id=item.pk, entry=entry, user=draft_study.created_by)
    criterion_add(
        study=draft_study, item_id=item.pk, entry={**entry, "criterion": "Second"}, user=draft_study.created_by
    )
    first = item.criteria.get(position=0)
    criterion_delete(study=draft_study, item_id=item.pk, criterion_id=first.pk, user=draft_study.created_by)
    assert list(item.criteria.values_list("position", "text")) == [(0, "Second")]
    with pytest.raises(EvaluationError, match="deleted already"):  # a second click deletes nothing more
        criterion_delete(study=draft_study, item_id=item.pk, criterion_id=first.pk, user=draft_study.created_by)
    assert item.criteria.count() == 1
    Study.objects.filter(pk=draft_study.pk).update(status="open")
    draft_study.refresh_from_db()
    with pytest.raises(EvaluationError, match="only while the study is a draft"):
        criterion_add(study=draft_study, item_id=item.pk, entry=entry, user=draft_study.created_by)
    Study.objects.filter(pk=pairwise_study.pk).update(status="draft")
    pairwise_study.refresh_from_db()
    with pytest.raises(EvaluationError, match="absolute studies only"):
        criteria_import(study=pairwise_study, text="", user=pairwise_study.created_by)


def with_criteria(study):
    """Two criteria on every item of an open study (written while it was a draft)."""
    Study.objects.filter(pk=study.pk).update(status="draft")
    study.refresh_from_db()
    text = "\n".join(
        lines(
            {"item": item.pk, "criterion": "Names the low SpO2", "points": 6, "category": "accuracy"},
            {"item": item.pk, "criterion": "Advises stopping medication", "points": -4, "category": "safety"},
        )
        for item in study.items.all()
    )
    criteria_import(study=study, text=text, user=study.created_by)
    Study.objects.filter(pk=study.pk).update(status="open")
    study.refresh_from_db()
    return study


def test_a_rating_grades_every_criterion_and_the_scores_reach_the_dashboard_and_exports(grounded_study, client):
    study = with_criteria(grounded_study)
    rater = study.clinicians.order_by("pk").first()
    assignment = assignment_next(study=study, rater=rater)
    with pytest.raises(EvaluationError, match="grade criterion 2: met or not met"):
        rating_submit(assignment_id=assignment.pk, rater=rater, scores=SCORES, criteria={"0": "1"})
    with pytest.raises(EvaluationError, match="unknown criteria: 7"):
        rating_submit(assignment_id=assignment.pk, rater=rater, scores=SCORES, criteria={"0": "1", "1": "0", "7": "1"})
    rating = rating_submit(assignment_id=assignment.pk, rater=rater, scores=SCORES, criteria={"0": "1", "1": "1"})
    assert rating.criteria == {"0": True, "1": True}
    criteria = list(assignment.item.criteria.all())
    assert rating_criterion_scores(criteria, rating.criteria) == {"overall": pytest.approx(2 / 6), "accuracy": 1.0}
    rating = rating_submit(assignment_id=assignment.pk, rater=rater, scores=SCORES, criteria={"0": "1", "1": "0"})
    assert [revision.criteria for revision in rating.revisions.all()] == [
        {"0": True, "1": True},
        {"0": True, "1": False},
    ]

    client.force_login(rater)
    page = client.get(reverse("evaluation:assignment", args=[assignment.pk])).content.decode()
    assert "Names the low SpO2" in page and 'name="criterion-1"' in page
    assert "points" not in page.split("Criteria for this answer")[1].split("</form>")[0].lower().replace(
        "points met", ""
    )

    client.force_login(study.created_by)
    dashboard = client.get(reverse("evaluation:study_dashboard", args=[study.pk])).content.decode()
    assert 'data-criterion-score="grounded agent/overall"' in dashboard
    frame = pd.read_csv(
        io.StringIO(client.get(reverse("evaluation:study_export", args=[study.pk, "csv"])).content.decode())
    )
    row = frame[frame["rating_id"] == rating.pk].iloc[0]
    assert row["criterion_score"] == pytest.approx(1.0) and json.loads(row["criteria"]) == {"0": True, "1": False}


def test_the_import_page_refuses_a_bad_line_and_keeps_the_text(draft_study, client):
    client.force_login(draft_study.created_by)
    url = reverse("evaluation:study_criteria_import", args=[draft_study.pk])
    item = draft_study.items.first()
    text = lines({"item": item.pk, "criterion": "Good", "points": 2, "category": "accuracy"}) + "\n{oops"
    page = client.post(url, {"jsonl": text}, follow=True).content.decode()
    assert "Nothing imported: line 2: not JSON" in page and "{oops" in page
    assert not Criterion.objects.exists()
    response = client.post(url, {"jsonl": text.split("\n")[0]})
    assert response.status_code == 302 and Criterion.objects.count() == 1


def test_backups_carry_criteria_and_grades(grounded_study, tmp_path):
    from evaluation.backup import studies_export, studies_import
    from tests.evaluation.test_backup import wipe_everything_the_export_holds

    study = with_criteria(grounded_study)
    rater = study.clinicians.order_by("pk").first()
    assignment = assignment_next(study=study, rater=rater)
    rating_submit(assignment_id=assignment.pk, rater=rater, scores=SCORES, criteria={"0": "0", "1": "1"})
    studies_export(output=tmp_path, study_ids=[study.pk])
    wipe_everything_the_export_holds()
    studies_import(source=tmp_path)
    assert Criterion.objects.count() == 2 * 3
    assert Rating.objects.get().criteria == {"0": False, "1": True}


def test_a_locked_protocol_fixes_the_criteria_and_its_manifest_hashes_them(pairwise_study):
    from evaluation.models import Rubric
    from evaluation.protocol import protocol_lock, protocol_save
    from evaluation.services import StudySpec, study_create
    from healthagent.models import AgentVariant

    owner = pairwise_study.created_by  # the fixture wrote answers of both variants for the tiny cohort
    draft_study = study_create(
        spec=StudySpec(
            name="Both variants",
            mode="absolute",
            rubric=Rubric.objects.get(name__endswith="(1-5)"),
            cohort=pairwise_study.items.first().participant.cohort,
            variants=list(AgentVariant.objects.filter(name__in=["grounded agent", "LLM only"])),
            raters_per_item=1,
            clinicians=[UserFactory(role=Role.CLINICIAN)],
        ),
        user=owner,
    )
    item = draft_study.items.first()
    entry = {"criterion": "Mentions the trend", "points": 3, "category": "context_awareness"}
    criterion_add(study=draft_study, item_id=item.pk, entry=entry, user=owner)
    grounded = AgentVariant.objects.get(name="grounded agent")
    protocol_save(
        study=draft_study,
        values={
            "hypotheses": "h",
            "primary_dimension": "relevance",
            "primary_variant_a": grounded,
            "primary_variant_b": AgentVariant.objects.get(name="LLM only"),
            "primary_test": "wilcoxon",
            "sided": "two-sided",
            "alpha": 0.05,
            "planned_items": 5,
            "planned_raters_per_item": 2,
        },
        user=owner,
    )
    manifest = protocol_lock(study=draft_study, user=owner).manifest
    assert manifest["criteria"]["count"] == 1 and len(manifest["criteria"]["sha256"]) == 64
    with pytest.raises(EvaluationError, match="protocol is locked"):
        criterion_add(study=draft_study, item_id=item.pk, entry=entry, user=owner)


def test_the_pages_offer_criteria_forms_only_while_they_can_change(grounded_study, client):
    study = with_criteria(grounded_study)  # open now
    client.force_login(study.created_by)
    item = study.items.first()
    page = client.get(reverse("evaluation:study_item_reference", args=[study.pk, item.pk])).content.decode()
    assert "Names the low SpO2" in page and "import many as JSONL" not in page and "data-criterion-add" not in page
    page = client.get(reverse("evaluation:study_criteria_import", args=[study.pk])).content.decode()
    assert "data-criteria-locked" in page and "data-criteria-import" not in page
