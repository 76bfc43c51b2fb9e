"""Nothing leaks, even to insiders (issue 23): a study's raters never see its results while it is not closed,
whatever other role they hold, and no one holding a results role can be enrolled as a rater."""

import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from evaluation.forms import StudyForm
from evaluation.models import Rubric, Study
from evaluation.services import EvaluationError, StudySpec, study_create
from healthagent.models import AgentVariant
from healthagent.roles import Role, user_assign_roles
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def results_pages(study: Study) -> list[str]:
    return [
        reverse("evaluation:study_detail", args=[study.pk]),
        reverse("evaluation:study_dashboard", args=[study.pk]),
        reverse("evaluation:study_export", args=[study.pk, "csv"]),
        reverse("evaluation:study_incident_log", args=[study.pk, "csv"]),
        reverse("evaluation:study_protocol", args=[study.pk]),
        reverse("api:ratings", args=[study.pk]),
        reverse("api:items", args=[study.pk]),
    ]


def test_a_rater_who_becomes_a_researcher_sees_none_of_the_study_until_it_closes(grounded_study, client):
    rater = grounded_study.clinicians.first()
    user_assign_roles(user=rater, roles=[Role.CLINICIAN, Role.RESEARCHER])  # given the role after enrolment
    client.force_login(rater)
    for url in results_pages(grounded_study):
        assert client.get(url).status_code == 403, url
    assert grounded_study.name not in client.get(reverse("evaluation:study_list")).content.decode()
    assert grounded_study.pk not in [row["id"] for row in client.get(reverse("api:studies")).json()["results"]]
    # An admin rater too; a researcher who does not rate it still sees it.
    user_assign_roles(user=rater, roles=[Role.CLINICIAN, Role.ADMIN])
    rater.refresh_from_db()
    assert client.get(reverse("evaluation:study_dashboard", args=[grounded_study.pk])).status_code == 403
    client.force_login(grounded_study.created_by)
    assert client.get(reverse("evaluation:study_dashboard", args=[grounded_study.pk])).status_code == 200
    # Once closed, its raters may read its results like anyone with the role.
    Study.objects.filter(pk=grounded_study.pk).update(status="closed")
    client.force_login(rater)
    assert client.get(reverse("evaluation:study_dashboard", args=[grounded_study.pk])).status_code == 200


def test_the_dashboard_websocket_refuses_a_rater_of_the_study(grounded_study):
    from evaluation.selectors import studies_visible_to

    rater = grounded_study.clinicians.first()
    user_assign_roles(user=rater, roles=[Role.CLINICIAN, Role.RESEARCHER])
    assert not studies_visible_to(user=rater).filter(pk=grounded_study.pk).exists()  # what the consumer checks


def test_no_one_with_a_results_role_can_be_enrolled(tiny_cohort):
    two_roles = UserFactory(role=Role.CLINICIAN, username="two_roles")
    user_assign_roles(user=two_roles, roles=[Role.CLINICIAN, Role.RESEARCHER])
    plain = UserFactory(role=Role.CLINICIAN)
    spec = StudySpec(
        name="Blind",
        mode="absolute",
        rubric=Rubric.objects.get(name__endswith="(1-5)"),
        cohort=tiny_cohort,
        variants=[AgentVariant.objects.get(name="grounded agent")],
        raters_per_item=1,
        clinicians=[plain, two_roles],
    )
    with pytest.raises(EvaluationError, match="two_roles also hold a researcher or admin role"):
        study_create(spec=spec, user=UserFactory(role=Role.RESEARCHER))
    assert not Study.objects.exists()
    offered = StudyForm().fields["clinicians"].queryset
    assert plain in offered and two_roles not in offered


def test_a_restore_that_would_make_a_researcher_a_rater_is_refused(grounded_study, tmp_path):
    call_command("export_studies", "--output", str(tmp_path))
    document = json.loads((tmp_path / "studies.json").read_text())
    rater = grounded_study.clinicians.first().username
    for user in document["users"]:
        if user["username"] == rater:
            user["roles"] = ["clinician", "researcher"]
    (tmp_path / "studies.json").write_text(json.dumps(document))
    Study.objects.all().delete()
    grounded_study.clinicians.model.objects.filter(username=rater).delete()
    with pytest.raises(CommandError, match=rf"nothing was written.*raters who also hold.*{rater}"):
        call_command("import_studies", str(tmp_path))
    assert not Study.objects.exists()


def test_a_taken_name_gets_the_same_words_whether_or_not_the_study_is_visible(grounded_study, tiny_cohort):
    Study.objects.filter(pk=grounded_study.pk).update(restricted=True)
    spec = StudySpec(
        name=grounded_study.name,
        mode="absolute",
        rubric=Rubric.objects.get(name__endswith="(1-5)"),
        cohort=tiny_cohort,
        variants=[AgentVariant.objects.get(name="grounded agent")],
        raters_per_item=1,
        clinicians=[UserFactory(role=Role.CLINICIAN)],
    )
    with pytest.raises(EvaluationError, match=r"^that study name is not available: choose another$"):
        study_create(spec=spec, user=UserFactory(role=Role.RESEARCHER))
