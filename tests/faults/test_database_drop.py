"""Fault: the database connection dies in the middle of a rating submit.

Another connection terminates the web request's PostgreSQL backend after the rating's rows are
written (the rating, its revision, the assignment done: one statement, evaluation.writes) and before
the submit's transaction commits: the clinician gets a 503 that says nothing was saved, no
half-written row remains, and submitting again saves the rating exactly once.
"""

import psycopg
import pytest
from django.db import connection

from evaluation.models import Assignment, Rating, RatingRevision
from tests.conftest import postgres_connect_kwargs, service_missing
from tests.factories import submit_led_to

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def postgresql():
    if connection.vendor != "postgresql":
        service_missing("PostgreSQL is not configured (DATABASE_URL is not a postgres:// URL)")


def _other_connection() -> psycopg.Connection:
    return psycopg.connect(**postgres_connect_kwargs())


def test_a_dropped_connection_during_submit_leaves_nothing_and_a_retry_saves_once(
    postgresql, grounded_study, client, monkeypatch
):
    clinician = grounded_study.clinicians.order_by("pk").first()
    client.force_login(clinician)
    item_url = client.get(f"/evaluation/queue/{grounded_study.pk}/next/")["Location"]
    assignment = Assignment.objects.get(pk=int(item_url.rstrip("/").rsplit("/", 1)[1]))
    form = {f"score-{dimension.key}": "4" for dimension in grounded_study.rubric.dimensions.all()}
    form["time_spent_s"] = "30"

    from evaluation import services

    real_write = services.first_rating
    killed = []

    def write_then_drop_connection(**fields):
        rating = real_write(**fields)
        backend = connection.connection.info.backend_pid
        with _other_connection() as other:
            other.execute("SELECT pg_terminate_backend(%s, 5000)", [backend])
        killed.append(backend)
        return rating

    monkeypatch.setattr(services, "first_rating", write_then_drop_connection)
    response = client.post(f"{item_url}submit/", form)
    assert killed, "the connection was not dropped during the submit"
    assert response.status_code == 503
    assert "Not saved" in response.content.decode() and response["Retry-After"]
    assert not Rating.objects.filter(assignment=assignment).exists()
    assert not RatingRevision.objects.filter(rating__assignment=assignment).exists()
    assert Assignment.objects.get(pk=assignment.pk).state == Assignment.State.IN_PROGRESS

    monkeypatch.setattr(services, "first_rating", real_write)
    locations = set()
    for _ in range(2):  # the retry, and a double click on it
        response = client.post(f"{item_url}submit/", form)
        assert submit_led_to(response) != item_url  # saved: on to the next item
        locations.add(submit_led_to(response))
    assert len(locations) == 1  # the double click is sent to the same next item, not handed a second one
    rating = Rating.objects.get(assignment=assignment)
    assert rating.revision == 1 and rating.revisions.count() == 1
    assert Assignment.objects.get(pk=assignment.pk).state == Assignment.State.DONE
