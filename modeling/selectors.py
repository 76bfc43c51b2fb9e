"""Reads of the modeling app for the rooms above it (the agent, the evaluation app)."""

from healthagent.cohort.panels import Panel
from healthagent.models import Participant
from modeling.models import Checkpoint, Job, Prediction

GENERATION_KIND = "generate_recommendations"


NAMED_AT_MOST = 10  # a config's list of participants shows this many names, then how many more


def job_config_named(job: Job) -> dict:
    """The job's config for its page, with what a model field of its form holds named ("Tiny", "grounded agent, LLM
    only", "twin-tiny #3", the participants' pseudonyms) instead of ids; an id the database no longer has reads
    "#7 (deleted)". One query per model field."""
    from django import forms

    from modeling.jobs import JobError, job_kind

    try:
        fields = job_kind(job.kind).form.base_fields
    except JobError:  # a kind this site no longer has
        return dict(job.config)
    named = {}
    for key, value in job.config.items():
        field = fields.get(key)
        if not isinstance(field, forms.ModelChoiceField) or field.queryset is None or value in (None, "", []):
            named[key] = value
            continue
        ids = value if isinstance(value, list) else [value]
        found = field.queryset.model._default_manager.in_bulk(ids)
        names = [str(found[pk]) if pk in found else f"#{pk} (deleted)" for pk in ids]
        if len(names) > NAMED_AT_MOST:
            names = [*names[:NAMED_AT_MOST], f"and {len(names) - NAMED_AT_MOST} more"]
        named[key] = names if isinstance(value, list) else names[0]
    return named


def generation_pending() -> dict[tuple[int, int], list[tuple[int, set[int] | None]]]:
    """(cohort id, variant id) -> the queued or running jobs generating that variant's answers for the cohort,
    oldest first, each as (job id, the participant ids it is limited to, or None for the whole cohort).

    A study item whose answer is missing waits only on a job listed here that covers its participant
    (:func:`generation_pending_job`); any other missing answer will not come unless its generation is queued again.
    """
    pending: dict[tuple[int, int], list[tuple[int, set[int] | None]]] = {}
    jobs = Job.objects.filter(kind=GENERATION_KIND, state__in=(Job.State.QUEUED, Job.State.RUNNING)).order_by("pk")
    for job_id, config in jobs.values_list("pk", "config"):
        participants = set(config["participants"]) if config.get("participants") else None
        for variant_id in config.get("variants", []):
            pending.setdefault((config.get("cohort"), variant_id), []).append((job_id, participants))
    return pending


def generation_pending_job(pending: dict, *, cohort_id: int, variant_id: int, participant_id: int) -> int | None:
    """The oldest job of :func:`generation_pending` that writes this participant's answer of this variant, if any."""
    for job_id, participants in pending.get((cohort_id, variant_id), []):
        if participants is None or participant_id in participants:
            return job_id
    return None


def participant_predictions(*, participant: Participant) -> list[Prediction]:
    """The newest foundation model's estimates for ``participant`` (one per task), with that model joined."""
    newest = (
        Prediction.objects.filter(participant=participant)
        .order_by("-checkpoint__created_at", "-checkpoint_id")
        .values_list("checkpoint_id", flat=True)
        .first()
    )
    if newest is None:
        return []
    return list(
        Prediction.objects.filter(participant=participant, checkpoint_id=newest)
        .select_related("checkpoint")
        .order_by("task")
    )


def twin_panel(participant: Participant) -> Panel | None:
    """The participant page's section of the digital twin: the latest simulation of this participant and the way to the
    twin page, where it is drawn and a new one is asked for (registered in ModelingConfig.ready); None without a twin."""
    from modeling.twin import simulation_latest, twin_checkpoint_latest

    checkpoint = twin_checkpoint_latest()
    if checkpoint is None:
        return None
    return Panel(
        template="modeling/partials/participant_twin.html",
        context={"participant": participant, "run": simulation_latest(participant=participant)},
    )


def predictions_panel(participant: Participant) -> Panel | None:
    """The participant page's section of the foundation model's estimates (registered in ModelingConfig.ready)."""
    predictions = participant_predictions(participant=participant)
    if not predictions:
        return None
    return Panel(
        template="modeling/partials/participant_predictions.html",
        context={"predictions": predictions, "checkpoint": predictions[0].checkpoint},
    )


def usable_heads(checkpoint: Checkpoint) -> dict[str, Checkpoint]:
    """Per task, the newest head over ``checkpoint`` that clearly beat the linear probe on participants the search never saw."""
    heads = {}
    for head in Checkpoint.objects.filter(family="lsm_head", metrics__base_checkpoint=checkpoint.pk).order_by(
        "-created_at"
    ):
        if head.metrics.get("beats_probe") and head.metrics.get("task") not in heads:
            heads[head.metrics["task"]] = head
    return heads
