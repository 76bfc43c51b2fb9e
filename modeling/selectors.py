"""Reads of the modeling app for the rooms above it (the agent, the evaluation app)."""

from modeling.models import Job

GENERATION_KIND = "generate_recommendations"


def generation_pending() -> dict[tuple[int, int], int]:
    """(cohort id, variant id) -> the oldest queued or running job generating that variant's answers for the cohort.

    A study item whose answer is missing waits only on a variant listed here; any other missing answer
    will not come unless someone queues its generation again.
    """
    pending: dict[int, int] = {}
    jobs = Job.objects.filter(kind=GENERATION_KIND, state__in=(Job.State.QUEUED, Job.State.RUNNING)).order_by("pk")
    for job_id, config in jobs.values_list("pk", "config"):
        for variant_id in config.get("variants", []):
            pending.setdefault((config.get("cohort"), variant_id), job_id)
    return pending
