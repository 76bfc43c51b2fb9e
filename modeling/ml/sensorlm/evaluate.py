"""Evaluation of a SensorLM model on simulated participants it never saw (another seed than training).

The evaluation participants are split 50/50 by participant: supervised references (linear probes)
are fitted on the first half; every method is scored once on the second half's days.

- zero-shot activity recognition: each day's longest activity bout against text prompts of every
  activity class (AUROC, macro-F1, balanced accuracy with bootstrap 95 % CIs), and the paper's binary
  groupings (cardio vs strength/flexibility, locomotion vs stationary);
- sensor -> text and text -> sensor retrieval among the test days (R@1/5/10 against chance);
- captioning (CoCa; ``caption_eval.py``): the facts the captions state (``facts.py``), BLEU (sacrebleu) and ROUGE-L (rouge-score) of
  generated captions against the held-out captions (greedy, reranked among samples by similarity to the day, held to
  the activities a probe detects: ``decoding.py``; held to the activities the model's tagging head finds:
  ``tagging.py``), beside the nearest training caption by hand-crafted statistics and by SensorLM similarity;
- "Find days" over the test days indexed as the site indexes a cohort with an event log, without one, and without
  one but with the tagging head's activities stated.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from modeling.ml.common.bootstrap import BOOTSTRAP
from modeling.ml.data.activities import ACTIVITY_KINDS, ACTIVITY_NAMES
from modeling.ml.data.cohort import participant_split
from modeling.ml.lsm.evaluate import class_probabilities, probe_pipeline, score
from modeling.ml.lsm.pretrain import check_new_participants
from modeling.ml.sensorlm.caption_eval import caption_scores, captioning_table
from modeling.ml.sensorlm.captions import READER_LEVELS, DayEvent
from modeling.ml.sensorlm.find_days import DayIndex
from modeling.ml.sensorlm.find_days_eval import METHODS as FIND_DAYS_METHODS
from modeling.ml.sensorlm.find_days_eval import find_days_scores
from modeling.ml.sensorlm.model import SensorLMModel, load_sensorlm
from modeling.ml.sensorlm.tagging import load_tagger, opened_with_activities, slot_tokens_and_embeddings
from modeling.ml.sensorlm.train import (
    CaptionedDays,
    captioned_days,
    embed_texts,
    embed_windows,
    recall_at,
    standardized,
)
from modeling.ml.sensorlm.zero_shot import kind_probabilities

GROUPINGS = {  # name: the activity kinds of the positive group (the rest are the negative one)
    "cardio vs strength": {kind.name for kind in ACTIVITY_KINDS if kind.cardio},
    "locomotion vs stationary": {kind.name for kind in ACTIVITY_KINDS if kind.locomotion},
}


@dataclass
class EvaluationSettings:
    participants: int = 200
    days: int = 3
    seed: int = 1000  # another seed than training: new participants
    bootstrap: int = BOOTSTRAP
    caption_days: int = 200  # test days captioned by the CoCa decoder (decoding is the slow part)
    caption_samples: int = 16  # captions sampled per day for the reranked captions (0: none)
    retrieval_pool: int = 300  # retrieval ranks each day's caption among this many test days
    retrieval_pools: int = 20  # pools drawn from the test days (all of them, once, when there are no more)
    lsm_model: Path | None = None  # a foundation-model checkpoint for the optional supervised reference
    device: str = "cpu"


@dataclass
class EvaluationData:
    data: CaptionedDays
    captions: list[str]
    train: np.ndarray  # day rows of the probe-training participants
    test: np.ndarray  # day rows scored
    sensor_embeddings: np.ndarray  # (days, embed_dim)
    statistics: np.ndarray  # (days, features)
    truths: list[str]  # each day's semantic caption: its ground truth for facts (``facts.stated_facts``)
    tagged: list[list[DayEvent]] | None = (
        None  # per day, the activities the model's tagging head states (``tagging.py``)
    )
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def check_unseen_participants(model_dir: Path, settings: "EvaluationSettings") -> None:
    """Refuse an evaluation seed whose participants any model in the chain has trained on: this model,
    the foundation model its sensor encoder was initialized from (``init_from``), and the foundation
    model of the supervised reference (``lsm_model``)."""
    check_new_participants(model_dir, settings.seed)
    pretraining = json.loads((Path(model_dir) / "normalization.json").read_text()).get("pretraining", {})
    initialized_from = pretraining.get("initialized_from") or {}
    if initialized_from.get("seed") == settings.seed:
        raise ValueError(
            f"seed {settings.seed} is the pre-training seed of the foundation model this one was initialized from "
            f"({initialized_from.get('path')}): use another seed so the participants are new"
        )
    if settings.lsm_model:
        check_new_participants(settings.lsm_model, settings.seed)


def prepare(
    model: SensorLMModel,
    mean: torch.Tensor,
    std: torch.Tensor,
    settings: EvaluationSettings,
    model_dir: Path | None = None,
) -> EvaluationData:
    """The evaluation participants' days, split, embedded, and tagged where ``model_dir`` holds a tagger."""
    data = captioned_days(participants=settings.participants, days=settings.days, seed=settings.seed)
    probe_participants, _ = participant_split(settings.participants, 0.5, settings.seed)
    is_train = np.isin(data.owner, probe_participants)
    values, observed = standardized(data, mean.numpy(), std.numpy())
    weekday = torch.tensor(data.weekday)
    tagger = load_tagger(model_dir, model) if model_dir else None
    tagged = None
    if tagger is None:
        embeddings = embed_windows(model, values, observed, weekday).numpy()
    else:  # one pass of the sensor tower for both
        tokens, embedded = slot_tokens_and_embeddings(model, values, observed, weekday)
        embeddings, tagged = embedded.numpy(), tagger.activities(tokens)
    return EvaluationData(
        data,
        data.captions(model.config.caption_levels),
        np.flatnonzero(is_train),
        np.flatnonzero(~is_train),
        embeddings,
        data.statistics(),
        data.captions(("semantic",)),
        tagged=tagged,
    )


# ---------------------------------------------------------------- zero-shot activity recognition


def _present(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Restrict to the classes present among the scored days (renormalized), so macro metrics are defined."""
    present = np.unique(labels)
    remap = {value: position for position, value in enumerate(present)}
    restricted = probabilities[:, present]
    restricted = restricted / restricted.sum(axis=1, keepdims=True).clip(min=1e-12)
    return np.array([remap[value] for value in labels]), restricted


def activity_scores(
    evaluation: EvaluationData, model: SensorLMModel, tokenizer: Tokenizer, settings: EvaluationSettings
) -> dict[str, dict[str, Any]]:
    """{method: {"activity": metrics, grouping: metrics}} on the test days that have an activity."""
    activities = evaluation.data.activities()
    labelled = np.array([activity is not None for activity in activities])
    labels = np.array([ACTIVITY_NAMES.index(activity) if activity else -1 for activity in activities])
    train, test = evaluation.train[labelled[evaluation.train]], evaluation.test[labelled[evaluation.test]]
    classes = len(ACTIVITY_NAMES)
    probabilities = {}
    with torch.no_grad():
        probabilities["zero-shot SensorLM"] = kind_probabilities(model, tokenizer, evaluation.sensor_embeddings[test])
    probabilities["chance"] = np.full((len(test), classes), 1.0 / classes)
    references = {
        "linear probe on SensorLM (supervised)": evaluation.sensor_embeddings,
        "linear probe on hand-crafted statistics (supervised)": evaluation.statistics,
        **evaluation.extra,
    }
    for name, features in references.items():
        probe = probe_pipeline("classification").fit(features[train], labels[train])
        probabilities[name] = class_probabilities(probe, features[test], classes)
    results: dict[str, dict[str, Any]] = {}
    for method, predicted in probabilities.items():
        truth, restricted = _present(labels[test], predicted)
        results[method] = {"activity": score("classification", truth, restricted, bootstrap=settings.bootstrap)}
        for grouping, positive in GROUPINGS.items():
            is_positive = np.array([ACTIVITY_NAMES[label] in positive for label in labels[test]]).astype(int)
            positive_probability = predicted[:, [ACTIVITY_NAMES.index(name) for name in positive]].sum(
                axis=1
            ) / predicted.sum(axis=1)
            binary = np.stack([1 - positive_probability, positive_probability], axis=1)
            results[method][grouping] = score("classification", is_positive, binary, bootstrap=settings.bootstrap)
    results["_counts"] = {
        "train_days": len(train),
        "test_days": len(test),
        "classes_present": len(np.unique(labels[test])),
    }
    return results


# ---------------------------------------------------------------- retrieval


def retrieval_scores(
    evaluation: EvaluationData, model: SensorLMModel, tokenizer: Tokenizer, settings: EvaluationSettings
) -> dict[str, Any]:
    """R@1/5/10 in both directions among pools of ``settings.retrieval_pool`` test days (means over
    ``settings.retrieval_pools`` pools drawn without replacement within a pool, with the 2.5-97.5 % range over pools):
    the size of the issue's bar, whatever the number of test days."""
    test = evaluation.test
    text = embed_texts(model, tokenizer, [evaluation.captions[row] for row in test])
    similarity = torch.tensor(evaluation.sensor_embeddings[test]) @ text.T  # (sensors, texts)
    size = min(settings.retrieval_pool, len(test))
    rng = np.random.default_rng(settings.seed)
    pools = (
        [np.arange(len(test))]
        if size == len(test)
        else [rng.choice(len(test), size=size, replace=False) for _ in range(settings.retrieval_pools)]
    )
    result: dict[str, Any] = {"candidates": size, "pools": len(pools), "test_days": len(test)}
    for k in (1, 5, 10):
        for key, oriented in (("sensor_to_text", similarity), ("text_to_sensor", similarity.T)):
            values = [recall_at(oriented[pool][:, pool], k) for pool in pools]
            result[f"{key}_r@{k}"] = float(np.mean(values))
            result[f"{key}_r@{k}_range"] = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
        result[f"chance_r@{k}"] = min(1.0, k / size)
    return result


# ---------------------------------------------------------------- Find days


def find_days_evaluation(
    evaluation: EvaluationData,
    model: SensorLMModel,
    tokenizer: Tokenizer,
    settings: EvaluationSettings,
    levels: Sequence[str] = READER_LEVELS,
    *,
    tagged: bool = False,
) -> dict[str, Any]:
    """Labelled queries against the test days, indexed as the site indexes a cohort (``find_days_eval``): captions of
    ``levels``, the reader's (events and shapes) for a cohort with an event log, ``("structural",)`` for one without;
    with ``tagged``, a caption opens with the activities the model's tagging head reads, where it reads any
    (``tagging.py``)."""
    test = evaluation.test
    captions = evaluation.data.subset(test).captions(levels)
    if tagged:
        if evaluation.tagged is None:
            raise ValueError("the model has no activity tagger: fit one with `sensorlm tag`")
        captions, _ = opened_with_activities(captions, [evaluation.tagged[row] for row in test])
    index = DayIndex(
        evaluation.sensor_embeddings[test].astype(np.float32),
        evaluation.data.owner[test].astype(np.int64),
        evaluation.data.day[test].astype(np.int64),
        np.array(captions, dtype=str),
    )
    result = find_days_scores(
        model,
        tokenizer,
        index,
        [evaluation.truths[row] for row in test],
        bootstrap=settings.bootstrap,
        seed=settings.seed,
    )
    return {**result, "caption_levels": list(levels), "tagged": tagged}


# ---------------------------------------------------------------- the report


def lsm_features(lsm_model: Path, data: CaptionedDays, device: str) -> np.ndarray:
    """(days, embedding width) frozen foundation-model embeddings of the evaluation days, for its linear probe."""
    from modeling.ml.lsm.pretrain import load_pretrained

    model, mean, std = load_pretrained(lsm_model, device)
    values, observed = standardized(data, mean.numpy(), std.numpy())
    weekday = torch.tensor(data.weekday)
    with torch.no_grad():
        return torch.cat(
            [
                model.embed_windows(
                    values[i : i + 64].to(device), observed[i : i + 64].to(device), weekday[i : i + 64].to(device)
                ).cpu()
                for i in range(0, len(values), 64)
            ]
        ).numpy()


def evaluate(
    model_dir: Path,
    settings: EvaluationSettings,
    progress: Callable[[float, str], None] = lambda fraction, message: None,
) -> dict[str, Any]:
    """Every score of the model in one JSON-ready dict."""
    check_unseen_participants(model_dir, settings)
    model, tokenizer, mean, std = load_sensorlm(model_dir, settings.device)
    progress(0.0, "simulating and embedding the evaluation participants")
    evaluation = prepare(model, mean, std, settings, model_dir)
    if settings.lsm_model:
        evaluation.extra["linear probe on the foundation model (supervised)"] = lsm_features(
            settings.lsm_model, evaluation.data, settings.device
        )
    progress(0.3, "zero-shot activity recognition")
    activity = activity_scores(evaluation, model, tokenizer, settings)
    progress(0.5, "retrieval")
    retrieval = retrieval_scores(evaluation, model, tokenizer, settings)
    progress(0.55, "Find days")
    find_days = find_days_evaluation(evaluation, model, tokenizer, settings)
    find_days_without_events = find_days_evaluation(evaluation, model, tokenizer, settings, ("structural",))
    find_days_tagged = (
        find_days_evaluation(evaluation, model, tokenizer, settings, ("structural",), tagged=True)
        if evaluation.tagged is not None
        else None
    )
    progress(0.6, "captioning")
    captioning = caption_scores(evaluation, model, tokenizer, mean, std, settings)
    progress(1.0, "done")
    return {
        "model": str(model_dir),
        "loss": model.config.loss,
        "caption_levels": list(model.config.caption_levels),
        "size": model.config.size,
        "participants": settings.participants,
        "days": settings.days,
        "seed": settings.seed,
        "evaluation_days": len(evaluation.captions),
        "activity": activity,
        "retrieval": retrieval,
        "captioning": captioning,
        "find_days": find_days,
        "find_days_without_events": find_days_without_events,
        "find_days_tagged": find_days_tagged,
    }


def _cell(value: Sequence[float | None] | None) -> str:
    if value is None or value[0] is None or not np.isfinite(value[0]):
        return "—"
    if len(value) < 3 or value[1] is None or value[2] is None:
        return f"{value[0]:.2f}"
    return f"{value[0]:.2f} ({value[1]:.2f}–{value[2]:.2f})"


def evaluation_tables(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Tables ``{"title", "summary", "columns", "rows"}`` of strings, for markdown and the job page."""
    activity = result["activity"]
    counts = activity["_counts"]
    methods = [name for name in activity if not name.startswith("_")]
    rows = [
        [method]
        + [_cell(activity[method]["activity"].get(metric)) for metric in ("auroc", "f1_macro", "balanced_accuracy")]
        for method in methods
    ]
    tables = [
        {
            "title": "Zero-shot activity recognition",
            "summary": f"Each test day's longest activity bout, {counts['classes_present']} of {len(ACTIVITY_NAMES)} classes present; "
            f"{counts['test_days']} test days (probes fitted on {counts['train_days']} days of other participants). "
            "Macro AUROC (one-vs-rest), macro-F1, balanced accuracy; bootstrap 95 % CIs.",
            "columns": ["method", "AUROC", "macro-F1", "balanced accuracy"],
            "rows": rows,
        }
    ]
    rows = [[method] + [_cell(activity[method][grouping].get("auroc")) for grouping in GROUPINGS] for method in methods]
    tables.append(
        {
            "title": "Binary groupings (AUROC)",
            "summary": "Class probabilities summed within each group; "
            "cardio vs strength/flexibility/housework, locomotion vs stationary kinds.",
            "columns": ["method", *GROUPINGS],
            "rows": rows,
        }
    )
    retrieval = result["retrieval"]

    def recall_cell(key: str, k: int) -> str:
        spread = retrieval.get(f"{key}_r@{k}_range")
        value = f"{retrieval[f'{key}_r@{k}']:.3f}"
        return f"{value} ({spread[0]:.3f}–{spread[1]:.3f})" if spread and retrieval.get("pools", 1) > 1 else value

    rows = [
        [direction] + [recall_cell(key, k) for k in (1, 5, 10)]
        for direction, key in (
            ("sensor → text", "sensor_to_text"),
            ("text → sensor", "text_to_sensor"),
            ("chance", "chance"),
        )
    ]
    pools = retrieval.get("pools", 1)
    tables.append(
        {
            "title": "Retrieval among the test days",
            "summary": f"{retrieval['candidates']} test days, each with its own caption"
            + (
                f"; means over {pools} pools drawn from {retrieval['test_days']} test days (2.5–97.5 % of the pools)."
                if pools > 1
                else "."
            ),
            "columns": ["direction", "R@1", "R@5", "R@10"],
            "rows": rows,
        }
    )
    for key, title, where in (
        ("find_days", "Find days", "captions of events and shapes, as for a cohort with an event log"),
        (
            "find_days_without_events",
            "Find days without an event log",
            "captions of shapes only, as for a cohort without an event log",
        ),
        (
            "find_days_tagged",
            "Find days without an event log, the tagging head's activities stated",
            "captions of shapes, opened by the activities the model's tagging head states, as for a cohort without an "
            "event log",
        ),
    ):
        find_days = result.get(key)
        if not find_days:
            continue
        kinds = list(find_days["query_kinds"])
        rows = [
            [
                method,
                _cell([scores["recall_at_5"], *(scores["recall_at_5_ci"] or [None, None])]),
                _cell([scores["recall_at_5_minus_hybrid"], *(scores["recall_at_5_minus_hybrid_ci"] or [None, None])]),
                _cell([scores["mrr"], *(scores["mrr_ci"] or [None, None])]),
                *(f"{scores['by_kind'][kind]:.2f}" for kind in kinds),
            ]
            for method, scores in ((method, find_days["methods"][method]) for method in FIND_DAYS_METHODS)
        ]
        tables.append(
            {
                "title": title,
                "summary": f"{find_days['queries']} labelled queries ("
                + ", ".join(f"{count} {kind}" for kind, count in find_days["query_kinds"].items())
                + f") against {find_days['days']} test days indexed as the site indexes a cohort ({where}); a day is "
                "relevant when its ground truth says so. Recall@5 (of at most five relevant days), its paired "
                "difference to the hybrid ranking, and MRR: means over queries with bootstrap 95 % CIs over queries; "
                "then recall@5 by kind of query.",
                "columns": ["method", "recall@5", "recall@5 − hybrid", "MRR", *(f"recall@5: {kind}" for kind in kinds)],
                "rows": rows,
            }
        )
    tables.append(captioning_table(result["captioning"]))
    return tables
