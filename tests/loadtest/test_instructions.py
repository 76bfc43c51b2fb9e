"""The instruction counter's driver (loadtest/instructions.py) rates items as the load test's clinicians do, through
the WSGI application, and counts the statements of the measured ones."""

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client

from evaluation.models import Assignment, Rating
from loadtest.instructions import Browser, Rater, drive

pytestmark = pytest.mark.django_db


def test_the_driver_rates_items_through_the_site_and_counts_their_statements(grounded_study, settings):
    from healthagent.wsgi import application

    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")  # as behind the production proxy
    dimensions = {dimension.key: list(dimension.points) for dimension in grounded_study.rubric.dimensions.all()}
    raters = []
    for number, clinician in enumerate(grounded_study.clinicians.order_by("pk")):
        client = Client()
        client.force_login(clinician)
        browser = Browser(application, client.cookies["sessionid"].value)
        raters.append(Rater(browser, study_id=grounded_study.pk, dimensions=dimensions, seed=number))
    # As Django's test client does: a request's end must not close the connection holding the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        result = drive(raters, items=3, warmup=2)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert Rating.objects.filter(assignment__study=grounded_study).count() == 5
    assert Assignment.objects.filter(study=grounded_study, state="done").count() == 5
    # An item's page, chart and submit (with the next item's hand-out): the hot path's bounds (test_hot_path) hold.
    assert result["items"] == 3 and 5 <= result["statements_per_item"] <= 20
