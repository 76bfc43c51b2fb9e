"""Reads of the evaluation app for clinicians' and researchers' pages."""

import math

from django.db.models import Count, Q

from evaluation.models import Assignment, Study


def rater_progress(*, study: Study, rater) -> dict:
    """How far a clinician is: done, and their share of the study's ratings (at least what they did)."""
    counts = Assignment.objects.filter(study=study, rater=rater).aggregate(
        done=Count("pk", filter=Q(state=Assignment.State.DONE)), skipped=Count("pk", filter=Q(state=Assignment.State.SKIPPED)),
        in_progress=Count("pk", filter=Q(state=Assignment.State.IN_PROGRESS)))
    raters = max(study.clinicians.count(), 1)
    share = math.ceil(study.items.count() * study.raters_per_item / raters)
    finished = counts["done"] + counts["skipped"]
    return {**counts, "finished": finished, "total": max(share, finished + counts["in_progress"]),
            "position": finished + (1 if counts["in_progress"] else 0)}


def clinician_studies(*, rater) -> list[dict]:
    """Open and closed studies the clinician is enrolled in, with their progress."""
    studies = Study.objects.filter(clinicians=rater).exclude(status=Study.Status.DRAFT).order_by("-opened_at")
    return [{"study": study, "progress": rater_progress(study=study, rater=rater)} for study in studies]


def rater_completed(*, study: Study, rater):
    return (Assignment.objects.filter(study=study, rater=rater, state=Assignment.State.DONE)
            .select_related("rating").order_by("-completed_at"))


def study_overview(*, study: Study) -> dict:
    items = study.items.count()
    assignments = Assignment.objects.filter(study=study)
    per_rater = list(assignments.values("rater__username").annotate(
        done=Count("pk", filter=Q(state=Assignment.State.DONE)), skipped=Count("pk", filter=Q(state=Assignment.State.SKIPPED)),
        in_progress=Count("pk", filter=Q(state=Assignment.State.IN_PROGRESS))).order_by("rater__username"))
    return {"items": items, "ratings_needed": items * study.raters_per_item,
            "ratings_done": assignments.filter(state=Assignment.State.DONE).count(), "per_rater": per_rater}
