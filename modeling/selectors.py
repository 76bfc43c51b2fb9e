"""Reads of the modeling app for the rooms above it (the agent, the evaluation app)."""

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from healthagent.cohort.measurements import HEIGHT
from healthagent.cohort.panels import Panel
from healthagent.models import Participant
from healthagent.roles import Role, user_has_role
from modeling.ml.data.clinical import ENDPOINTS
from modeling.ml.twin.tokens import BIOMARKER_NAMES, SUMMARY_BLOCK_DAYS, ParticipantRecord
from modeling.models import Checkpoint, Job, Prediction, SimulationRun

GENERATION_KIND = "generate_recommendations"


NAMED_AT_MOST = 10  # a config's list of participants shows this many names, then how many more


def job_config_named(job: Job) -> dict[str, Any]:
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


def generation_pending_job(
    pending: dict[tuple[int, int], list[tuple[int, set[int] | None]]],
    *,
    cohort_id: int,
    variant_id: int,
    participant_id: int,
) -> int | None:
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
    """Per task, the newest head over ``checkpoint`` that clearly beat the linear probe on participants the search never
    saw: the probe predictions use now (a head searched against an earlier probe is not used)."""
    from modeling.ml.lsm.evaluate import PROBE  # scikit-learn and torch: loaded when predictions are made

    heads = {}
    for head in Checkpoint.objects.filter(family="lsm_head", metrics__base_checkpoint=checkpoint.pk).order_by(
        "-created_at"
    ):
        beats = head.metrics.get("beats_probe") and head.metrics.get("probe") == PROBE
        if beats and head.metrics.get("task") not in heads:
            heads[head.metrics["task"]] = head
    return heads


# The digital twin's reads: a participant's stored (anonymized) data as a twin record, the stored simulations,
# and what the twin page shows of them.

# Daily-summary field -> twin biomarker (the tokenizer summarizes them per block): only those whose site definition is the one its training data used. The
# site's resting heart rate (10th percentile of awake, still minutes) reads about 10 bpm above the simulator's
# resting rate, and its sleep (the night's minutes asleep) about 30 minutes below its sleep: fed to the twin, the
# last block of the history sat off its training distribution just before every simulation
# (docs/results/twin-tiny/diagnosis.md, cause 4). Steps are counted the same way in both.
TWIN_DAILY_BIOMARKERS = {"steps": "daily_steps"}
TIMELINE_EVENT_KINDS = ("diet", "medication", "intervention", "diagnosis", "endpoint")
BIOMARKER_LABELS = {
    "hba1c": "HbA1c",
    "fasting_glucose": "fasting glucose",
    "ldl": "LDL cholesterol",
    "hdl": "HDL cholesterol",
    "triglycerides": "triglycerides",
    "crp": "CRP",
    "egfr": "eGFR",
    "systolic_bp": "systolic blood pressure",
    "diastolic_bp": "diastolic blood pressure",
    "weight": "weight",
    "body_fat": "body fat",
    "cgm_mean_glucose": "mean CGM glucose",
    "cgm_time_in_range": "CGM time in range",
    "resting_heart_rate": "resting heart rate",
    "daily_steps": "daily steps",
    "sleep_minutes": "sleep",
}

# A change a clinician would call meaningful, per biomarker (rough minimal important differences): how
# effects on different biomarkers are compared, and the agent's scale of benefit.
MEANINGFUL_CHANGE = {
    "hba1c": 0.2,
    "fasting_glucose": 5.0,
    "ldl": 10.0,
    "hdl": 3.0,
    "triglycerides": 20.0,
    "crp": 0.5,
    "egfr": 5.0,
    "systolic_bp": 5.0,
    "diastolic_bp": 3.0,
    "weight": 2.0,
    "body_fat": 1.0,
    "cgm_mean_glucose": 5.0,
    "cgm_time_in_range": 5.0,
    "resting_heart_rate": 3.0,
    "daily_steps": 1000.0,
    "sleep_minutes": 20.0,
}
# The biomarkers where a rise is good; for every other one a fall is. The agent only recommends a change for the better.
HIGHER_IS_BETTER = frozenset({"hdl", "egfr", "cgm_time_in_range", "daily_steps", "sleep_minutes"})


def age_at_day_zero(participant: Participant) -> float | None:
    """The middle of the participant's age band (the band is all the site keeps)."""
    band = participant.age_band
    if band.endswith("+"):
        return float(band[:-1]) + 2.0
    if "-" in band:
        low, high = band.split("-")
        return (float(low) + float(high) + 1) / 2
    return None


def participant_record(*, participant: Participant) -> ParticipantRecord:
    """The participant's timeline from the database: measurements, daily summaries and events.

    Of the wearable summaries, only steps are read (``TWIN_DAILY_BIOMARKERS``). A day's summary counts when
    the device was worn at least ``MIN_WEAR_MINUTES``, and only in a summary block with enough such days: the
    rules the twin's training data follows. Smoking status is not kept by the site, so it is unknown (the twin is
    trained with it withheld for a share of records). The latest height measured, if any, is the record's height (no
    token: the twin reads obesity against it, healthagent.cohort.measurements)."""
    from modeling.ml.twin.data import MIN_WEAR_MINUTES, worn_blocks  # torch: loaded when a record is read

    measurements: list[dict[str, Any]] = [
        {"day": row.day_index, "name": row.name, "value": row.value}
        for row in participant.measurements.filter(name__in=[*BIOMARKER_NAMES, HEIGHT])
    ]
    heights = [m["value"] for m in measurements if m["name"] == HEIGHT]  # not a token: the obesity limit's height
    measurements = [m for m in measurements if m["name"] != HEIGHT]
    worn = list(
        participant.daily_summaries.filter(wear_minutes__gte=MIN_WEAR_MINUTES).values(
            "day_index", *TWIN_DAILY_BIOMARKERS
        )
    )
    blocks = worn_blocks([summary["day_index"] for summary in worn])
    for summary in worn:
        if summary["day_index"] // SUMMARY_BLOCK_DAYS in blocks:
            measurements += [
                {"day": summary["day_index"], "name": name, "value": float(summary[field])}
                for field, name in TWIN_DAILY_BIOMARKERS.items()
                if summary[field] is not None
            ]
    events: list[dict[str, Any]] = [
        {"day": row.day_index, "kind": row.kind, "name": row.name}
        for row in participant.events.filter(kind__in=TIMELINE_EVENT_KINDS)
    ]
    last_day = max(
        [participant.history_days - 1, participant.minute_start_day + participant.minute_days - 1]
        + [m["day"] for m in measurements]
        + [e["day"] for e in events]
    )
    return ParticipantRecord(
        age_years=age_at_day_zero(participant),
        sex=participant.sex if participant.sex in ("female", "male") else None,
        smoker=None,
        measurements=measurements,
        events=events,
        last_day=max(last_day, 0),
        height_m=heights[-1] / 100 if heights else None,
    )


def twin_checkpoint_latest() -> Checkpoint | None:
    return Checkpoint.objects.filter(family="twin").order_by("-created_at", "-pk").first()


def simulation_latest(*, participant: Participant) -> SimulationRun | None:
    return participant.simulations.select_related("checkpoint").order_by("-created_at", "-pk").first()


FALLBACK_FEATURED = ("systolic_bp", "ldl", "weight", "hba1c")


def twin_page_data(*, run: SimulationRun, featured_count: int = 6) -> dict[str, Any]:
    """What the twin page shows of a run: the biomarkers the interventions move most (fan charts),
    the effects table and the endpoint risks per arm."""
    results = run.results
    ranked = sorted(
        (
            (abs(summary["mean"]) / MEANINGFUL_CHANGE[name], name)
            for by_biomarker in results["effects"].values()
            for name, summary in by_biomarker.items()
            if summary["low"] > 0 or summary["high"] < 0
        ),
        reverse=True,
    )
    featured = list(dict.fromkeys(name for _, name in ranked))[:featured_count] or list(FALLBACK_FEATURED)
    effects = [
        {
            "intervention": intervention.replace("_", " "),
            "biomarker": BIOMARKER_LABELS[name],
            "unit": results["units"][name],
            **by_biomarker[name],
        }
        for intervention, by_biomarker in results["effects"].items()
        for name in featured
    ]
    risks = [
        {"endpoint": endpoint.replace("_", " "), "by_arm": [results["risk"][arm][endpoint] for arm in results["arms"]]}
        for endpoint in ENDPOINTS
    ]
    return {
        "results": results,
        "featured": featured,
        "effects": effects,
        "risks": risks,
        "arms": [arm.replace("_", " ") for arm in results["arms"]],
    }


def simulations_visible_to(user: User | AnonymousUser) -> QuerySet[Job]:
    """The simulate jobs ``user`` may follow: their own, or every one for admins (a simulation's request names a
    participant and the interventions a researcher is weighing: not for other researchers)."""
    jobs = Job.objects.filter(kind="simulate")
    return jobs if user_has_role(user, Role.ADMIN) else jobs.filter(queued_by_id=user.pk)
