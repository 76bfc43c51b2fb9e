"""Nothing leaks, even to insiders (issue 23): a clinician cannot tell that two items show the same person, cannot
compute which side of a pairwise item holds which variant, and loses a study's items when removed from it."""

import pytest
from django.urls import reverse

from evaluation.assignment import assignment_next, sides_swapped
from evaluation.models import Rating, Rubric
from evaluation.services import StudySpec, rating_submit, study_create, study_set_status
from healthagent.models import AgentVariant
from healthagent.roles import Role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_the_same_participant_in_two_studies_has_unrelated_urls_and_etags(grounded_study, tiny_cohort, client):
    clinician = grounded_study.clinicians.first()
    second = study_set_status(
        study=study_create(
            spec=StudySpec(
                name="Second look",
                mode="absolute",
                rubric=Rubric.objects.get(name__endswith="(1-5)"),
                cohort=tiny_cohort,
                variants=[AgentVariant.objects.get(name="grounded agent")],
                raters_per_item=1,
                clinicians=[clinician],
                window_days=grounded_study.window_days,
            ),
            user=UserFactory(role=Role.RESEARCHER),
        ),
        status="open",
    )
    first = assignment_next(study=grounded_study, rater=clinician)
    for _ in range(second.items.count()):  # rate the second study's items until one shows the same participant
        other = assignment_next(study=second, rater=clinician)
        if other.item.participant_id == first.item.participant_id:
            break
        rating_submit(assignment_id=other.pk, rater=clinician, scores={"relevance": 3, "context": 3, "safety": 3})
    assert other.item.participant_id == first.item.participant_id
    client.force_login(clinician)
    urls, etags = set(), set()
    for assignment in (first, other):
        page = client.get(reverse("evaluation:assignment", args=[assignment.pk])).content.decode()
        url = reverse("evaluation:assignment_chart", args=[assignment.pk])
        assert f'data-minute-figure-url="{url}?link=' in page  # its link: sealed (tests/evaluation/test_chart_links.py)
        assert f"participants/{assignment.item.participant_id}" not in page
        chart = client.get(url)
        urls.add(url)
        etags.add(chart["ETag"])
    assert len(urls) == 2 and len(etags) == 2  # the same data, nothing in common a clinician could compare


def test_pairwise_sides_depend_on_the_server_secret_not_only_the_public_seed(settings):
    cases = [(7, rater, item) for rater in range(1, 5) for item in range(1, 17)]
    settings.SECRET_KEY = "one-secret-" + "x" * 40
    first = [sides_swapped(seed=s, rater_id=r, item_id=i) for s, r, i in cases]
    assert first == [sides_swapped(seed=s, rater_id=r, item_id=i) for s, r, i in cases]  # stable for a site
    assert 16 < sum(first) < 48  # about half
    settings.SECRET_KEY = "another-secret-" + "y" * 40
    assert first != [sides_swapped(seed=s, rater_id=r, item_id=i) for s, r, i in cases]


def test_a_clinician_removed_from_a_study_loses_its_items(grounded_study, client):
    clinician = grounded_study.clinicians.first()
    assignment = assignment_next(study=grounded_study, rater=clinician)
    client.force_login(clinician)
    assert client.get(reverse("evaluation:assignment", args=[assignment.pk])).status_code == 200
    grounded_study.clinicians.remove(clinician)
    for name in ("evaluation:assignment", "evaluation:assignment_chart"):
        assert client.get(reverse(name, args=[assignment.pk])).status_code == 404, name
    response = client.post(
        reverse("evaluation:assignment_submit", args=[assignment.pk]),
        {"score_relevance": 3, "score_context": 3, "score_safety": 3},
    )
    assert response.status_code == 404 and not Rating.objects.filter(assignment=assignment).exists()
