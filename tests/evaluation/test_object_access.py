"""Object-level access: a clinician reaches only their own assignments, by any URL that names one,
and a restricted study is for its owner, the researchers named on it and admins only. What one
may not see answers 404, like something that does not exist."""

import json
import re

import pytest
from django.urls import reverse

from evaluation.assignment import assignment_next
from evaluation.models import Assignment, Rating, Study
from evaluation.services import study_set_status
from healthagent.roles import Role
from tests.factories import UserFactory
from tests.test_services import connects, session_headers

pytestmark = pytest.mark.django_db

SCORES = {"score-relevance": "4", "score-context": "3", "score-safety": "5"}


@pytest.fixture
def foreign_assignment(grounded_study):
    """An assignment of the study's first clinician, and a second enrolled clinician who is not its rater."""
    first, second = list(grounded_study.clinicians.order_by("pk"))[:2]
    return assignment_next(study=grounded_study, rater=first), second


def test_a_clinician_gets_404_on_every_url_of_another_clinicians_assignment(client, foreign_assignment):
    assignment, other = foreign_assignment
    client.force_login(other)
    assert client.get(reverse("evaluation:assignment", args=[assignment.pk])).status_code == 404
    assert (
        client.get(reverse("evaluation:assignment_minutes", args=[assignment.pk]) + "?start=0&end=60").status_code
        == 404
    )
    draft = client.post(
        reverse("evaluation:assignment_draft", args=[assignment.pk]),
        json.dumps({"comment": "mine now"}),
        content_type="application/json",
    )
    assert draft.status_code == 404
    assert client.post(reverse("evaluation:assignment_submit", args=[assignment.pk]), SCORES).status_code == 404
    assert (
        client.post(
            reverse("evaluation:assignment_skip", args=[assignment.pk]), {"skip_reason": "not mine"}
        ).status_code
        == 404
    )
    assignment.refresh_from_db()
    assert assignment.draft == {} and assignment.state == Assignment.State.IN_PROGRESS
    assert not Rating.objects.exists()


def test_the_404_for_someone_elses_assignment_is_the_404_for_a_missing_one(client, foreign_assignment):
    """The answer does not confirm that an id exists."""
    assignment, other = foreign_assignment
    client.force_login(other)
    missing = Assignment.objects.order_by("-pk").first().pk + 1000
    for name in ("evaluation:assignment", "evaluation:assignment_submit"):
        method = client.get if name == "evaluation:assignment" else client.post
        foreign, absent = method(reverse(name, args=[assignment.pk])), method(reverse(name, args=[missing]))
        assert foreign.status_code == absent.status_code == 404
        assert without_csrf_token(foreign.content) == without_csrf_token(absent.content)


def without_csrf_token(page: bytes) -> bytes:
    """The page with its per-response CSRF tokens (masked differently on every response) blanked."""
    return re.sub(rb'("X-CSRFToken": "|name="csrfmiddlewaretoken" value=")[^"]*"', rb"\1", page)


def test_a_clinician_cannot_reach_a_study_they_are_not_on(client, grounded_study, clinician):
    client.force_login(clinician)
    assert client.get(reverse("evaluation:study_next", args=[grounded_study.pk])).status_code == 404
    assert not Assignment.objects.filter(rater=clinician).exists()


@pytest.fixture
def restricted_study(grounded_study):
    """The grounded study made restricted: its creator owns it and one other researcher is named on it."""
    named = UserFactory(role=Role.RESEARCHER)
    Study.objects.filter(pk=grounded_study.pk).update(restricted=True)
    grounded_study.refresh_from_db()
    grounded_study.researchers.add(named)
    return grounded_study, named


def study_urls(study):
    return {
        "detail": reverse("evaluation:study_detail", args=[study.pk]),
        "dashboard": reverse("evaluation:study_dashboard", args=[study.pk]),
        "export": reverse("evaluation:study_export", args=[study.pk, "csv"]),
        "api items": reverse("api:items", args=[study.pk]),
        "api ratings": reverse("api:ratings", args=[study.pk]),
    }


def test_an_outside_researcher_sees_nothing_of_a_restricted_study(client, restricted_study):
    study, _ = restricted_study
    outsider = UserFactory(role=Role.RESEARCHER)
    client.force_login(outsider)
    assert study.name not in client.get(reverse("evaluation:study_list")).content.decode()
    assert study.pk not in [row["id"] for row in client.get(reverse("api:studies")).json()["results"]]
    for what, url in study_urls(study).items():
        assert client.get(url).status_code == 404, what
    response = client.post(reverse("evaluation:study_status", args=[study.pk]), {"status": "closed"})
    assert response.status_code == 404
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN


@pytest.mark.parametrize("who", ["owner", "named researcher", "admin"])
def test_the_owner_named_researchers_and_admins_see_a_restricted_study(client, restricted_study, who):
    study, named = restricted_study
    user = {"owner": study.created_by, "named researcher": named, "admin": UserFactory(role=Role.ADMIN)}[who]
    client.force_login(user)
    assert study.name in client.get(reverse("evaluation:study_list")).content.decode()
    assert study.pk in [row["id"] for row in client.get(reverse("api:studies")).json()["results"]]
    for what, url in study_urls(study).items():
        assert client.get(url).status_code == 200, what


def test_an_unrestricted_study_is_for_every_researcher(client, grounded_study, researcher):
    client.force_login(researcher)
    for what, url in study_urls(grounded_study).items():
        assert client.get(url).status_code == 200, what


@pytest.mark.django_db(transaction=True)
def test_the_live_dashboard_socket_of_a_restricted_study_refuses_outsiders(client, restricted_study):
    study, named = restricted_study
    outsider = UserFactory(role=Role.RESEARCHER)
    path = f"/ws/studies/{study.pk}/"
    assert connects(path, session_headers(client, outsider)) is False
    assert connects(path, session_headers(client, named)) is True
    assert connects(path, session_headers(client, UserFactory(role=Role.ADMIN))) is True


def test_a_researcher_creates_a_restricted_study_in_the_site(client, researcher, grounded_study, tiny_cohort):
    colleague, outsider = UserFactory(role=Role.RESEARCHER), UserFactory(role=Role.RESEARCHER)
    client.force_login(researcher)
    form = {
        "name": "Restricted pilot",
        "mode": "absolute",
        "rubric": grounded_study.rubric_id,
        "cohort": tiny_cohort.pk,
        "variants": [grounded_study.items.first().variant_a_id],
        "raters_per_item": 1,
        "clinicians": list(grounded_study.clinicians.values_list("pk", flat=True)),
        "window_days": 7,
        "seed": 0,
        "restricted": "on",
        "researchers": [colleague.pk],
    }
    response = client.post(reverse("evaluation:study_new"), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    study = Study.objects.get(name="Restricted pilot")
    assert study.restricted and list(study.researchers.all()) == [colleague]
    study_set_status(study=study, status="open", user=researcher)
    for user, status in ((colleague, 200), (outsider, 404), (researcher, 200)):
        client.force_login(user)
        assert client.get(reverse("evaluation:study_dashboard", args=[study.pk])).status_code == status


def test_only_the_owner_or_an_admin_opens_or_closes_a_study(client, grounded_study, admin_user):
    """Reading a study (any researcher, when unrestricted) is not changing it."""
    reader = UserFactory(role=Role.RESEARCHER)
    client.force_login(reader)
    assert client.get(reverse("evaluation:study_detail", args=[grounded_study.pk])).status_code == 200
    assert (
        client.post(reverse("evaluation:study_status", args=[grounded_study.pk]), {"status": "closed"}).status_code
        == 403
    )
    assert Study.objects.get(pk=grounded_study.pk).status == Study.Status.OPEN
    assert (
        "Close the study"
        not in client.get(reverse("evaluation:study_detail", args=[grounded_study.pk])).content.decode()
    )

    for user in (grounded_study.created_by, admin_user):
        client.force_login(user)
        assert (
            "Close the study"
            in client.get(reverse("evaluation:study_detail", args=[grounded_study.pk])).content.decode()
        )
    assert (
        client.post(
            reverse("evaluation:study_status", args=[grounded_study.pk]), {"status": "closed", "confirmed": "yes"}
        ).status_code
        == 302
    )
    assert Study.objects.get(pk=grounded_study.pk).status == Study.Status.CLOSED
