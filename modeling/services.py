"""The model room's writes and the computations they store (HackSoft style): job kinds and views call these and
stay short. The twin's simulation service and the caps on what a researcher may queue are here too."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction

from healthagent.models import Cohort, Participant
from healthagent.roles import Role, user_has_role
from modeling.jobs import (
    INTERACTIVE_PRIORITY,
    QUICK_QUEUE,
    JobError,
    job_checkpoint_record,
    job_queue,
    queue_by_checkpoint,
)
from modeling.ml.data.clinical import BIOMARKER_BY_NAME, ENDPOINTS, INTERVENTION_BY_NAME
from modeling.ml.twin.tokens import BIOMARKER_NAMES, ParticipantRecord
from modeling.models import Checkpoint, Job, Prediction, SimulationRun
from modeling.selectors import BIOMARKER_LABELS, participant_record, twin_checkpoint_latest, usable_heads

if TYPE_CHECKING:  # torch is imported when a simulation runs, not with the site
    from modeling.ml.lsm.predict import TaskProbe
    from modeling.ml.twin.generate import Rollouts


@dataclass
class CohortPredictions:
    predictions: list[Prediction]  # unsaved rows, one per participant and task
    participants: int  # participants with wearable data, predicted
    skipped: int  # participants never worn: nothing to predict from
    probes: list["TaskProbe"] = field(default_factory=list)  # the fitted TaskProbes, with their held-out quality


def cohort_predictions_compute(
    *,
    checkpoint: Checkpoint,
    cohort: Cohort,
    job: Job | None,
    reference_participants: int,
    reference_days: int,
    replicates: int,
    seed: int,
    use_heads: bool = True,
    device: str = "cpu",
    progress: Callable[..., None] = lambda *args, **kwargs: None,
    log: Callable[[str], None] = lambda message: None,
) -> CohortPredictions:
    """Every participant of ``cohort`` with wearable data, embedded from their last ``reference_days`` days by the
    foundation model ``checkpoint``: per task, the probes' estimate with its 90 % interval, or a searched head's where
    it clearly beat the probe on participants the search never saw. Writes nothing."""
    import numpy as np

    from healthagent.cohort.store import read_window, trajectory_root
    from modeling.ml.data.labels import TASK_BY_NAME
    from modeling.ml.heads.compare import participant_tokens
    from modeling.ml.heads.ensemble import head_prediction, load_ensemble
    from modeling.ml.lsm.evaluate import embed_days
    from modeling.ml.lsm.predict import predict, reference_probes
    from modeling.ml.lsm.pretrain import load_pretrained

    progress(0.0, "fitting probes on the reference participants")
    probes = reference_probes(
        checkpoint.path,
        participants=reference_participants,
        days=reference_days,
        seed=seed,
        replicates=replicates,
        device=device,
    )
    model, mean, std = load_pretrained(Path(checkpoint.path), device)
    heads = {}
    if use_heads:
        heads = {
            task: (head, load_ensemble(Path(head.path), device)) for task, head in usable_heads(checkpoint).items()
        }
        if heads:
            log(
                f"searched heads for {', '.join(sorted(heads))} "
                "(they clearly beat the linear probe on participants the search never saw)"
            )
    participants = list(cohort.participants.exclude(trajectory_path="").order_by("pk"))
    rows, skipped = [], 0
    for position, participant in enumerate(participants):
        progress(0.2 + 0.8 * position / max(1, len(participants)), f"participant {position + 1} of {len(participants)}")
        # The participant's last reference_days days: embeddings averaged over as many days as the reference's.
        first = max(0, participant.minute_days - reference_days)
        values, observed = read_window(
            path=trajectory_root() / participant.trajectory_path, start_day=first, end_day=participant.minute_days
        )
        embedding = embed_days(model, mean, std, values, observed, (participant.start_weekday + first) % 7)
        if embedding is None:
            skipped += 1
            continue
        if heads:  # a searched head reads the token grids of the worn days
            worn = observed.any(axis=(1, 2))
            tokens = participant_tokens(
                model, mean, std, values[worn], observed[worn], participant.start_weekday + first + np.flatnonzero(worn)
            )
        for entry in predict(probes, embedding):
            if entry["task"] in heads:
                head, ensemble = heads[entry["task"]]
                entry = {
                    **entry,
                    **head_prediction(ensemble, TASK_BY_NAME[entry["task"]], *tokens),
                    "quality": ensemble.metadata["quality"] | {"head_checkpoint": head.pk},
                }
            rows.append(
                Prediction(
                    participant=participant,
                    checkpoint=checkpoint,
                    job=job,
                    task=entry["task"],
                    kind=entry["kind"],
                    label=entry.get("label", ""),
                    estimate=entry["estimate"],
                    low=entry["low"],
                    high=entry["high"],
                    details={key: entry[key] for key in ("family", "description", "unit", "quality")}
                    | ({"probabilities": entry["probabilities"]} if "probabilities" in entry else {}),
                )
            )
    return CohortPredictions(rows, len(participants) - skipped, skipped, probes)


def cohort_predictions_replace(*, checkpoint: Checkpoint, cohort: Cohort, predictions: list[Prediction]) -> None:
    """The cohort's predictions by ``checkpoint`` replaced whole, never half. Locks the checkpoint's row: two jobs of
    the same model replace in turn."""
    with transaction.atomic():
        Checkpoint.objects.select_for_update().get(pk=checkpoint.pk)
        Prediction.objects.filter(checkpoint=checkpoint, participant__cohort=cohort).delete()
        Prediction.objects.bulk_create(predictions, batch_size=1000)


class TwinError(Exception):
    """A twin request that cannot be served (no twin model, a participant without data...)."""


def simulation_results(
    rollouts: "Rollouts", *, participant_index: int, record: ParticipantRecord, history_days_shown: int = 180
) -> dict[str, Any]:
    """JSON-ready results of one participant: bands per arm, endpoint risks, effects, recent observations."""
    from modeling.ml.twin.generate import bands, effect_summary

    arm_names = ["none" if arm is None else arm for arm in rollouts.arms]
    recent = [m for m in record.measurements if m["day"] > record.last_day - history_days_shown]
    history = {
        name: [[m["day"], round(m["value"], 2)] for m in sorted(recent, key=lambda m: m["day"]) if m["name"] == name]
        for name in BIOMARKER_NAMES
    }
    risk = rollouts.endpoint_risk()
    return {
        "start_day": record.last_day,
        "grid_days": [int(day) for day in rollouts.grid_days],
        "arms": arm_names,
        "units": {name: BIOMARKER_BY_NAME[name].unit for name in BIOMARKER_NAMES},
        "labels": BIOMARKER_LABELS,
        "bands": {name: bands(rollouts, participant=participant_index, arm=arm) for arm, name in enumerate(arm_names)},
        "risk": {
            name: {
                endpoint: round(float(risk[participant_index, arm, column]), 4)
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
    job: Job | None = None,
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
    *, user: User, participant: Participant, interventions: list[str], horizon_days: int, samples: int
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


def head_checkpoints_replace(
    *, job: Job, base: Checkpoint, saved: list[tuple[Path, dict[str, Any]]]
) -> list[Checkpoint]:
    """Register a head search's saved heads (directory, metrics) as ``lsm_head`` checkpoints of ``job`` over ``base``:
    all of them or none, and a job delivered again replaces the heads it registered before."""
    with transaction.atomic():
        checkpoints = [
            job_checkpoint_record(job=job, family="lsm_head", size=base.size, path=str(directory), metrics=metrics)
            for directory, metrics in saved
        ]
        Checkpoint.objects.filter(job=job, family="lsm_head").exclude(
            pk__in=[checkpoint.pk for checkpoint in checkpoints]
        ).delete()
    return checkpoints
