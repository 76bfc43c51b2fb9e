"""The digital twin on the site: a participant's stored (anonymized) data as a twin record, the
simulations a ``simulate`` job stores, and what the agent and the twin page read from them."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from healthagent.models import Participant
from healthagent.roles import Role, user_has_role
from modeling.jobs import INTERACTIVE_PRIORITY, QUICK_QUEUE, JobError, job_queue, queue_by_checkpoint
from modeling.ml.data.clinical import BIOMARKER_BY_NAME, ENDPOINTS, INTERVENTION_BY_NAME
from modeling.ml.twin.data import MIN_WEAR_MINUTES, worn_blocks
from modeling.ml.twin.tokens import BIOMARKER_NAMES, SUMMARY_BLOCK_DAYS, ParticipantRecord
from modeling.models import Checkpoint, Job, SimulationRun


class TwinError(Exception):
    """A twin request that cannot be served (no twin model, a participant without data...)."""


# Daily-summary field -> twin biomarker (daily wearable values; the tokenizer summarizes them).
DAILY_BIOMARKERS = {
    "steps": "daily_steps",
    "sleep_minutes": "sleep_minutes",
    "resting_heart_rate_bpm": "resting_heart_rate",
}
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
# How the agent names each intervention: plain words, no numbers (every number it writes is cited).
INTERVENTION_TEXT = {
    "diet_change": (
        "Try a Mediterranean-style diet",
        "A Mediterranean-style diet with a modest daily calorie deficit",
        ("diet", "weight", "food", "eat"),
    ),
    "exercise_programme": (
        "Add regular aerobic exercise",
        "Regular moderate aerobic exercise such as brisk walking",
        ("exercise", "activity", "walk", "fitness"),
    ),
    "sleep_extension": ("Go to bed earlier, regularly", "A regular, earlier bedtime", ("sleep", "tired", "bed")),
    "statin": ("Ask about a statin", "A daily statin, if your clinician agrees,", ("cholesterol", "heart", "statin")),
    "antihypertensive": (
        "Ask about blood-pressure treatment",
        "Blood-pressure medicine, if your clinician agrees,",
        ("blood pressure", "heart"),
    ),
}


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

    A day's wearable summary counts when the device was worn at least ``MIN_WEAR_MINUTES``, and only in
    a summary block with enough such days: the rules the twin's training data follows. Smoking status
    is not kept by the site, so it is unknown (the twin is trained with it withheld for a share of records)."""
    measurements: list[dict[str, Any]] = [
        {"day": row.day_index, "name": row.name, "value": row.value}
        for row in participant.measurements.filter(name__in=BIOMARKER_NAMES)
    ]
    worn = list(
        participant.daily_summaries.filter(wear_minutes__gte=MIN_WEAR_MINUTES).values("day_index", *DAILY_BIOMARKERS)
    )
    blocks = worn_blocks([summary["day_index"] for summary in worn])
    for summary in worn:
        if summary["day_index"] // SUMMARY_BLOCK_DAYS in blocks:
            measurements += [
                {"day": summary["day_index"], "name": name, "value": float(summary[field])}
                for field, name in DAILY_BIOMARKERS.items()
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
    )


def twin_checkpoint_latest() -> Checkpoint | None:
    return Checkpoint.objects.filter(family="twin").order_by("-created_at", "-pk").first()


def simulation_results(
    rollouts, *, participant_index: int, record: ParticipantRecord, history_days_shown: int = 180
) -> dict:
    """JSON-ready results of one participant: bands per arm, endpoint risks, effects, recent observations."""
    from modeling.ml.twin.generate import bands, effect_summary

    arm_names = ["none" if arm is None else arm for arm in rollouts.arms]
    recent = [m for m in record.measurements if m["day"] > record.last_day - history_days_shown]
    history = {
        name: [[m["day"], round(m["value"], 2)] for m in sorted(recent, key=lambda m: m["day"]) if m["name"] == name]
        for name in BIOMARKER_NAMES
    }
    return {
        "start_day": record.last_day,
        "grid_days": [int(day) for day in rollouts.grid_days],
        "arms": arm_names,
        "units": {name: BIOMARKER_BY_NAME[name].unit for name in BIOMARKER_NAMES},
        "labels": BIOMARKER_LABELS,
        "bands": {name: bands(rollouts, participant=participant_index, arm=arm) for arm, name in enumerate(arm_names)},
        "risk": {
            name: {
                endpoint: round(float(rollouts.risk[participant_index, arm, :, column].mean()), 4)
                for column, endpoint in enumerate(ENDPOINTS)
            }
            for arm, name in enumerate(arm_names)
        },
        "effects": {
            name: {
                biomarker: {key: round(value, 3) for key, value in summary.items()}
                for biomarker, summary in effect_summary(rollouts, participant=participant_index, arm=arm).items()
            }
            for arm, name in enumerate(arm_names)
            if name != "none"
        },
        "history": history,
    }


def twin_simulate(
    *,
    checkpoint: Checkpoint,
    participants: list[Participant],
    interventions: list[str],
    horizon_days: int,
    samples: int,
    seed: int,
    device: str = "cpu",
    job=None,
    progress: Callable[[float, str], None] = lambda *args: None,
) -> list[SimulationRun]:
    """Simulate every participant with and without each intervention and store one run per participant.

    All runs are written in one transaction after the rollouts: a failed job leaves nothing half-stored, and
    a job delivered again (its worker died) overwrites the runs it stored before instead of adding to them,
    keeping their ids (the agent may already cite them).
    """
    from modeling.ml.twin.generate import simulate
    from modeling.ml.twin.training import load_twin

    unknown = [name for name in interventions if name not in INTERVENTION_BY_NAME]
    if unknown:
        raise TwinError(f"unknown interventions: {', '.join(unknown)}")
    model, tokenizer = load_twin(Path(checkpoint.path), device)
    arms = [None, *interventions]
    runs, chunk = [], 64
    for first in range(0, len(participants), chunk):
        progress(
            first / max(len(participants), 1),
            f"simulating participants {first + 1}-{min(first + chunk, len(participants))} of {len(participants)}",
        )
        group = participants[first : first + chunk]
        records = [participant_record(participant=participant) for participant in group]
        rollouts = simulate(
            model,
            tokenizer,
            [tokenizer.encode(record) for record in records],
            arms=arms,
            horizon_days=horizon_days,
            samples=samples,
            seed=seed + first,
        )
        runs += [
            SimulationRun(
                participant=participant,
                checkpoint=checkpoint,
                job=job,
                interventions=list(interventions),
                horizon_days=horizon_days,
                samples=samples,
                results=simulation_results(rollouts, participant_index=index, record=record),
            )
            for index, (participant, record) in enumerate(zip(group, records, strict=True))
        ]
    with transaction.atomic():
        if job is not None:
            earlier = dict(
                SimulationRun.objects.select_for_update().filter(job=job).values_list("participant_id", "pk")
            )
            for run in runs:
                run.pk = earlier.pop(run.participant_id, None)
            SimulationRun.objects.filter(
                pk__in=earlier.values()
            ).delete()  # participants this delivery did not simulate
            SimulationRun.objects.bulk_update(
                [run for run in runs if run.pk], ["checkpoint", "interventions", "horizon_days", "samples", "results"]
            )
        SimulationRun.objects.bulk_create([run for run in runs if not run.pk])
    return runs


# What a researcher may queue from the twin page (admins are not capped): a simulation's cost grows with its
# samples, and it waits for the CPU workers everyone's jobs share.
RESEARCHER_MAX_SAMPLES = 64
RESEARCHER_MAX_PENDING_SIMULATIONS = 2
RESEARCHER_LIMITS_TEXT = (
    f"Researchers: at most {RESEARCHER_MAX_SAMPLES} samples, one participant per simulation and "
    f"{RESEARCHER_MAX_PENDING_SIMULATIONS} simulations waiting or running at a time; admins are not capped."
)


def simulation_request_queue(
    *, user, participant: Participant, interventions: list[str], horizon_days: int, samples: int
) -> Job:
    """Queue a simulate job of one participant with the newest twin, for ``user``. A user who is not an admin
    is capped (RESEARCHER_MAX_SAMPLES, RESEARCHER_MAX_PENDING_SIMULATIONS): TwinError says which cap.
    Locks the user's row while counting their pending simulations, so two requests at once cannot both pass."""
    checkpoint = twin_checkpoint_latest()
    if checkpoint is None:
        raise TwinError("no twin model has been trained yet")
    capped = not user_has_role(user, Role.ADMIN)
    if capped and samples > RESEARCHER_MAX_SAMPLES:
        raise TwinError(
            f"a researcher can ask for at most {RESEARCHER_MAX_SAMPLES} samples per arm (you asked for {samples}); "
            "an admin can queue a larger simulation"
        )
    config = {
        "checkpoint": checkpoint.pk,
        "cohort": participant.cohort_id,
        "participant": participant.pk,
        "interventions": interventions,
        "horizon_days": horizon_days,
        "samples": samples,
        "seed": 0,
    }
    with transaction.atomic():
        if capped:
            get_user_model().objects.select_for_update().get(pk=user.pk)
            pending = list(
                Job.objects.filter(kind="simulate", queued_by=user, state__in=(Job.State.QUEUED, Job.State.RUNNING))
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            if len(pending) >= RESEARCHER_MAX_PENDING_SIMULATIONS:
                raise TwinError(
                    f"you already have {len(pending)} simulations waiting or running "
                    f"({', '.join(f'job #{pk}' for pk in pending)}); a researcher can have at most "
                    f"{RESEARCHER_MAX_PENDING_SIMULATIONS}, so queue this one when one of them has finished"
                )
        try:
            # A tiny twin answers in seconds: on the quick queue it never waits behind a training run.
            quick = QUICK_QUEUE if queue_by_checkpoint(config) == "cpu" else None
            return job_queue(kind_name="simulate", user=user, config=config, priority=INTERACTIVE_PRIORITY, queue=quick)
        except JobError as error:
            raise TwinError(str(error)) from error


def simulation_latest(*, participant: Participant) -> SimulationRun | None:
    return participant.simulations.select_related("checkpoint").order_by("-created_at", "-pk").first()


def simulated_effects(*, participant: Participant) -> list[dict]:
    """For the agent: per intervention of the latest simulation, the biomarker it is predicted to improve
    most (relative to a meaningful change of that biomarker). Only improvements count, and only when the
    whole 90 % interval is on the side of improvement and the mean is at least half a meaningful change:
    the agent never recommends an intervention for a change the twin predicts for the worse."""
    run = simulation_latest(participant=participant)
    if run is None:
        return []
    effects = []
    for intervention, by_biomarker in run.results.get("effects", {}).items():
        candidates = []
        for name, summary in by_biomarker.items():
            better = 1.0 if name in HIGHER_IS_BETTER else -1.0
            improvement = better * summary["mean"] / MEANINGFUL_CHANGE[name]
            if better * summary["low"] > 0 and better * summary["high"] > 0 and improvement >= 0.5:
                candidates.append((improvement, name, summary))
        if not candidates:
            continue
        _, biomarker, summary = max(candidates)
        title, description, topics = INTERVENTION_TEXT[intervention]
        decimals = 0 if BIOMARKER_BY_NAME[biomarker].unit in ("steps", "min", "mg/dL") else 1
        effects.append(
            {
                "intervention": intervention,
                "title": title,
                "description": description,
                "topics": topics,
                "biomarker": biomarker,
                "biomarker_label": BIOMARKER_LABELS[biomarker],
                "unit": BIOMARKER_BY_NAME[biomarker].unit,
                "mean": round(summary["mean"], decimals),
                "low": round(summary["low"], decimals),
                "high": round(summary["high"], decimals),
                "interval": "90 %",
                "horizon_days": run.horizon_days,
                "scale": MEANINGFUL_CHANGE[biomarker],
                "model": f"{run.checkpoint.family}-{run.checkpoint.size} #{run.checkpoint_id}",
                "simulation": run.pk,
            }
        )
    return effects


def simulation_job_results(*, job_id: int) -> list[dict]:
    """The runs a simulate job stored: participant and results."""
    return [
        {"participant": run.participant_id, "pseudonym": run.participant.pseudonym, "results": run.results}
        for run in SimulationRun.objects.filter(job_id=job_id).select_related("participant").order_by("participant_id")
    ]


FALLBACK_FEATURED = ("systolic_bp", "ldl", "weight", "hba1c")


def twin_page_data(*, run: SimulationRun, featured_count: int = 6) -> dict:
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
