"""The load test's simulated clinicians (loadtest/client.py) on the site itself: they open, chart and rate items
as a browser would, and every rating they count as acknowledged is in the database, once."""

import asyncio

import pytest
from django.db import connection
from django.test import Client

from evaluation.models import Assignment, Rating
from loadtest.client import Clinician, Recorder, closed_loop, shared_client
from tests.conftest import service_missing

pytestmark = pytest.mark.django_db(transaction=True)


def test_clinicians_rate_items_and_each_acknowledged_rating_is_saved_once(live_server, grounded_study, settings):
    if connection.vendor != "postgresql":  # the live server's threads share in-memory SQLite's one connection
        service_missing("clinicians rating at once need PostgreSQL: SQLite's test database is one shared connection")
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")  # the client says https, as behind nginx
    recorder = Recorder()
    dimensions = {dimension.key: list(dimension.points) for dimension in grounded_study.rubric.dimensions.all()}
    people = []
    for clinician in grounded_study.clinicians.order_by("pk")[:2]:
        browser = Client()
        browser.force_login(clinician)
        people.append((clinician.username, browser.cookies["sessionid"].value))

    async def run() -> None:
        async with shared_client(max_connections=4) as client:
            clinicians = [
                Clinician(
                    client=client,
                    base_url=live_server.url,
                    study_id=grounded_study.pk,
                    dimensions=dimensions,
                    recorder=recorder,
                    username=username,
                    session=session,
                )
                for username, session in people
            ]
            await closed_loop(clinicians, duration_s=4.0)

    asyncio.run(run())
    assert not recorder.errors, dict(recorder.errors)
    assert len(recorder.acknowledged) >= 2 and not recorder.unconfirmed
    assert len(recorder.samples["chart"]) >= 1 and all(size > 1000 for size in recorder.chart_bytes)  # gzip, whole
    saved = Rating.objects.filter(assignment__study=grounded_study)
    assert sorted(saved.values_list("assignment_id", flat=True)) == sorted(recorder.acknowledged)
    assert Assignment.objects.filter(pk__in=recorder.acknowledged, state=Assignment.State.DONE).count() == len(
        recorder.acknowledged
    )
