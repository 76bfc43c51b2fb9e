"""Finding participant-days with words: the day index of a cohort (a service) and the ranked search (a selector).

The index is built by a SensorLM job from anonymized, stored data only (the Parquet minutes and the
event log) and kept as an ``.npz`` beside the model; the checkpoint's metrics say which cohorts it covers.
"""

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from healthagent.cohort.find_days import FindDaysError
from healthagent.cohort.store import read_window, trajectory_root
from healthagent.models import Cohort, Event
from modeling.jobs import job_pending
from modeling.models import Checkpoint

FAMILY = "sensorlm"


def _participant_windows(cohort: Cohort):
    """(participant id, values, mask, minute events, start weekday, first day) for every participant with minute-level data."""
    for participant in cohort.participants.exclude(trajectory_path="").order_by("pk"):
        values, mask = read_window(
            path=trajectory_root() / participant.trajectory_path, start_day=0, end_day=participant.minute_days
        )
        events = list(
            Event.objects.filter(participant=participant, start_minute__isnull=False).only(
                "name", "kind", "start_minute", "end_minute"
            )
        )
        yield participant.pk, values, mask, events, participant.start_weekday, 0


def day_index_build(
    *,
    checkpoint: Checkpoint,
    cohort: Cohort,
    device: str = "cpu",
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> dict:
    """Embed and caption every worn day of ``cohort`` with ``checkpoint`` and record the index on the checkpoint.
    Locks the checkpoint row while recording, so two index jobs for one model both keep their cohort."""
    from modeling.ml.sensorlm.find_days import build_index, save_index
    from modeling.ml.sensorlm.model import load_sensorlm
    from modeling.ml.sensorlm.tagging import load_tagger

    model, _, mean, std = load_sensorlm(Path(checkpoint.path), device)
    tagger = load_tagger(Path(checkpoint.path), model)  # reads the activities of participants without an event log
    total = cohort.participants.exclude(trajectory_path="").count()

    def counted():
        for done, row in enumerate(_participant_windows(cohort)):
            progress(done, total)
            yield row

    index = build_index(model, mean, std, counted(), tagger)
    path = Path(checkpoint.path) / f"days-cohort-{cohort.pk}.npz"
    save_index(index, path)
    with transaction.atomic():
        locked = Checkpoint.objects.select_for_update().get(pk=checkpoint.pk)
        entry = {"path": str(path), "days": len(index), "indexed_at": timezone.now().isoformat()}
        indexes = {**locked.metrics.get("day_indexes", {}), str(cohort.pk): entry}
        locked.metrics = {**locked.metrics, "day_indexes": indexes}
        locked.save(update_fields=["metrics"])
    _loaded_index.cache_clear()
    read = 0 if index.read_by_model is None else int(index.read_by_model.sum())
    return {"cohort": cohort.pk, "days": len(index), "path": str(path), "read_by_model": read}


MODEL_FILE = "model.safetensors"
UNKNOWN_WORDS = (
    "None of these words occur in the day captions the model learned from, so there is nothing to match. Describe the day "
    "with the captions' words: an activity (walk, run, cycle, swim, hike, yoga, tennis, commute…), the part of the day "
    "(morning, evening), sleep (short, long, fragmented), or stress."
)


def find_days_indexes() -> dict[str, tuple[Checkpoint, Path]]:
    """For every indexed cohort (by id): its latest index whose model and index files are both still on disk, with
    the model that built it. Latest by when it was indexed (an index recorded before that was kept counts as of its
    model's creation): indexing a cohort again with an older model is what the search then uses. A model that
    indexed other cohorts does not hide this one."""
    chosen: dict[str, tuple[str, Checkpoint, Path]] = {}
    for checkpoint in Checkpoint.objects.filter(family=FAMILY).order_by("-created_at", "-pk"):
        if not (Path(checkpoint.path) / MODEL_FILE).exists():
            continue
        for cohort_id, entry in checkpoint.metrics.get("day_indexes", {}).items():
            when = entry.get("indexed_at") or checkpoint.created_at.isoformat()
            if Path(entry["path"]).exists() and (cohort_id not in chosen or when > chosen[cohort_id][0]):
                chosen[cohort_id] = (when, checkpoint, Path(entry["path"]))
    return {cohort_id: (checkpoint, path) for cohort_id, (_, checkpoint, path) in chosen.items()}


@lru_cache(maxsize=2)
def _loaded_model(path: str, modified: float):
    """Cached by path and the weights' modification time, like the index, so a model saved again is reloaded."""
    from modeling.ml.sensorlm.model import load_sensorlm

    model, tokenizer, _, _ = load_sensorlm(Path(path), "cpu")
    return model, tokenizer


@lru_cache(maxsize=8)
def _loaded_index(path: str, modified: float):
    from modeling.ml.sensorlm.find_days import load_index

    return load_index(Path(path))


def days_matching(*, query: str, limit: int = 10) -> list[dict]:
    """The participant-days most like ``query``, best first: ``{"participant_id", "day_index", "caption", "score"}``.
    Each cohort is searched with the newest model that indexed it. Raises FindDaysError when no
    model has indexed a cohort yet, or none of the indexed models is on disk any more."""
    from modeling.ml.sensorlm.find_days import DayIndex, query_words, rank_days

    indexes = find_days_indexes()
    if not indexes:
        indexing = job_pending(kind_name="sensorlm_index")
        if indexing is not None:
            raise FindDaysError(
                f"No day index yet: a cohort is being indexed (job #{indexing.pk}, "
                f"{indexing.get_state_display().lower()}, {indexing.progress:.0%}); its days can be searched once it is done."
            )
        pending = job_pending(kind_name="sensorlm_train")
        if pending is not None:
            raise FindDaysError(
                f"No day index yet: the sensor-language model is being trained (job #{pending.pk}, {pending.get_state_display().lower()}, "
                f"{pending.progress:.0%}); days can be searched once it has indexed its cohort."
            )
        if any(checkpoint.metrics.get("day_indexes") for checkpoint in Checkpoint.objects.filter(family=FAMILY)):
            raise FindDaysError(
                "The indexed models' files are missing from disk: an admin queues a “Sensor-language model: index a "
                "cohort” job with a model on disk, or a training job with a cohort to index."
            )
        raise FindDaysError(
            "No day index yet: an admin queues a “Sensor-language model: index a cohort” job (or a training job with a "
            "cohort to index)."
        )
    results: list[dict[str, Any]] = []
    understood = False
    for checkpoint, path in indexes.values():
        model, tokenizer = _loaded_model(checkpoint.path, (Path(checkpoint.path) / MODEL_FILE).stat().st_mtime)
        understood = understood or bool(query_words(tokenizer, query))
        index: DayIndex = _loaded_index(str(path), path.stat().st_mtime)
        for ranked in rank_days(model, tokenizer, index, query, limit):
            results.append(
                {
                    "participant_id": int(index.participant_ids[ranked.row]),
                    "day_index": int(index.day_indices[ranked.row]),
                    "caption": str(index.captions[ranked.row]),
                    "read_by_model": index.read_by_model is not None and bool(index.read_by_model[ranked.row]),
                    "score": ranked.score,
                    "matched": ranked.matched,
                    "similarity": ranked.similarity,
                    "words": list(ranked.words),
                }
            )
    if not understood:
        raise FindDaysError(UNKNOWN_WORDS)
    return sorted(results, key=lambda result: -result["score"])[:limit]
