"""The API's OpenAPI schema (drf-spectacular, ``/api/schema/``) and a schemathesis run against it (issue 23): every
operation, with generated page numbers, page sizes and study ids, as a researcher with a token, answers as its schema
says (status, content type, body) and never with a server error. Bounded: a few dozen cases per operation."""

import pytest
import schemathesis
import yaml
from django.core import signals
from django.db import close_old_connections
from django.urls import reverse
from hypothesis import HealthCheck, settings
from knox.models import AuthToken
from schemathesis.specs.openapi.checks import positive_data_acceptance

from evaluation.services import rating_submit
from healthagent.roles import Role
from healthagent.tokens import api_token_create
from healthagent.wsgi import application
from tests.factories import UserFactory

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


def test_the_schema_is_public_valid_and_names_every_api_url(client):
    response = client.get(reverse("api:schema"))
    assert response.status_code == 200
    document = yaml.safe_load(response.content)
    assert document["openapi"].startswith("3.") and document["info"]["title"] == "Health agent evaluation API"
    assert set(document["paths"]) == {
        "/api/studies/",
        "/api/studies/{study_id}/items/",
        "/api/studies/{study_id}/items/{item_id}/reference/",
        "/api/studies/{study_id}/criteria/",
        "/api/studies/{study_id}/ratings/",
        "/api/studies/{study_id}/skips/",
        "/api/studies/{study_id}/status/",
        "/api/studies/{study_id}/clinicians/",
        "/api/studies/{study_id}/statistics/",
        "/api/jobs/",
        "/api/jobs/{job_id}/",
    }
    assert "knoxApiToken" in document["components"]["securitySchemes"]


@pytest.fixture
def wsgi_keeps_the_test_connection():
    """Requests go straight to the WSGI application, whose request signals would close the test's database
    connection (and its transaction); Django's test client disconnects them the same way."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def researcher_token(grounded_study, wsgi_keeps_the_test_connection) -> dict[str, str]:
    """A researcher's token, over a study with items and one rating (so lists are not all empty)."""
    from evaluation.assignment import assignment_next

    clinician = grounded_study.clinicians.order_by("pk").first()
    assignment = assignment_next(study=grounded_study, rater=clinician)
    scores = {dimension.key: "3" for dimension in grounded_study.rubric.dimensions.filter(scale="likert")}
    harm = {"extent": "none", "likelihood": "low"}
    rating_submit(assignment_id=assignment.pk, rater=clinician, scores=scores, comment="=cmd", harm=harm)
    _, secret = AuthToken.objects.create(user=UserFactory(role=Role.RESEARCHER))
    return {"Authorization": f"Token {secret}"}


@pytest.fixture
def admin_write_token(grounded_study, wsgi_keeps_the_test_connection) -> dict[str, str]:
    """An admin's token with the write scope: every write is allowed past the permission checks, so the generated
    bodies reach the views' own validation."""
    _, secret = api_token_create(user=UserFactory(role=Role.ADMIN), days=1, scope="write")
    return {"Authorization": f"Token {secret}"}


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_operation_answers_as_its_schema_says(case, researcher_token):
    # A body the schema allows may still be refused with a 400 that says why (a NUL character, a study that cannot
    # open): what is checked is that every answer is one the schema names, in its shape, and never a server error.
    case.call_and_validate(headers=researcher_token, excluded_checks=[positive_data_acceptance])


@pytest.mark.django_db
@schema.include(method="POST").parametrize()
@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_write_with_a_write_token_answers_as_its_schema_says(case, admin_write_token):
    case.call_and_validate(headers=admin_write_token, excluded_checks=[positive_data_acceptance])
