"""Celery tasks of the agent: thin, id in, the service does the work."""

from celery import shared_task

from healthagent.agent.generate import cohort_generate
from healthagent.models import AgentVariant, Cohort


@shared_task(name="healthagent.generate_recommendations", acks_late=True)
def generate_recommendations(*, cohort_id: int, variant_ids: list[int], regenerate: bool = False) -> dict:
    """Recommendations for a cohort × variants. Safe to run again: finished ones are kept."""
    cohort = Cohort.objects.get(pk=cohort_id)
    variants = list(AgentVariant.objects.filter(pk__in=variant_ids).order_by("pk"))
    return cohort_generate(cohort=cohort, variants=variants, regenerate=regenerate)
