"""Recommendation generation as a Celery task, run by a real worker on Redis."""

import pytest

from healthagent.agent.tasks import generate_recommendations
from healthagent.models import AgentVariant, Recommendation


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_worker_generates_a_cohort_and_a_rerun_adds_nothing(redis_url, tiny_cohort):
    from celery.contrib.testing.worker import start_worker

    from healthagent.celery import app

    grounded = AgentVariant.objects.get(name="grounded agent")
    with start_worker(app, queues=["cpu"], pool="solo", perform_ping_check=False, shutdown_timeout=30):
        first = generate_recommendations.apply_async(kwargs={"cohort_id": tiny_cohort.pk, "variant_ids": [grounded.pk]}, queue="cpu")
        assert first.get(timeout=60) == {"succeeded": 3, "failed": 0, "blocked": 0, "kept": 0}
        again = generate_recommendations.apply_async(kwargs={"cohort_id": tiny_cohort.pk, "variant_ids": [grounded.pk]}, queue="cpu")
        assert again.get(timeout=60)["kept"] == 3
    assert Recommendation.objects.filter(variant=grounded, status="succeeded").count() == 3
