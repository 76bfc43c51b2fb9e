"""The model room's writes and the computations they store (HackSoft style): job kinds call these and stay short."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from healthagent.models import Cohort
from modeling.models import Checkpoint, Job, Prediction
from modeling.selectors import usable_heads


@dataclass
class CohortPredictions:
    predictions: list[Prediction]  # unsaved rows, one per participant and task
    participants: int  # participants with wearable data, predicted
    skipped: int  # participants never worn: nothing to predict from
    probes: list = field(default_factory=list)  # the fitted TaskProbes, with their held-out quality


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
