"""Request size limits: an over-size form or draft is refused with a clear 400 and changes nothing.
(Cohort files over COHORT_IMPORT_MAX_BYTES: tests/healthagent/cohort/test_importers.py.)"""

import json

import pytest
from django.urls import reverse

from evaluation.assignment import assignment_next
from evaluation.models import Rating
from tests.factories import submit_led_to

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_assignment(client, grounded_study):
    clinician = grounded_study.clinicians.order_by("pk").first()
    client.force_login(clinician)
    return assignment_next(study=grounded_study, rater=clinician)


def test_an_over_size_rating_form_is_refused_and_nothing_is_saved(client, own_assignment, settings):
    form = {
        "score-relevance": "4",
        "score-context": "3",
        "score-safety": "5",
        "comment": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1),
    }
    response = client.post(reverse("evaluation:assignment_submit", args=[own_assignment.pk]), form)
    assert response.status_code == 400
    assert "larger than the limit" in response.content.decode() and "Nothing was saved" in response.content.decode()
    assert not Rating.objects.exists()
    del form["comment"]
    assert submit_led_to(
        client.post(reverse("evaluation:assignment_submit", args=[own_assignment.pk]), form)
    ) != reverse("evaluation:assignment", args=[own_assignment.pk])  # the limit, not the form


def test_an_over_size_draft_is_refused_and_the_draft_kept(client, own_assignment, settings):
    url = reverse("evaluation:assignment_draft", args=[own_assignment.pk])
    assert client.post(url, json.dumps({"comment": "kept"}), content_type="application/json").status_code == 200
    huge = json.dumps({"comment": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    assert client.post(url, huge, content_type="application/json").status_code == 400
    own_assignment.refresh_from_db()
    assert own_assignment.draft == {"comment": "kept"}


def test_too_many_form_fields_are_refused(client, own_assignment, settings):
    form = {f"field-{number}": "1" for number in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    response = client.post(reverse("evaluation:assignment_submit", args=[own_assignment.pk]), form)
    assert response.status_code == 400 and not Rating.objects.exists()
