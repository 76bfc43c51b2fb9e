"""Evaluation of a SensorLM model on simulated participants it never saw (another seed than training).

The evaluation participants are split 50/50 by participant: supervised references (linear probes)
are fitted on the first half; every method is scored once on the second half's days.

- zero-shot activity recognition: each day's longest activity bout against text prompts of every
  activity class (AUROC, macro-F1, balanced accuracy with bootstrap 95 % CIs), and the paper's binary
  groupings (cardio vs strength/flexibility, locomotion vs stationary);
- sensor -> text and text -> sensor retrieval among the test days (R@1/5/10 against chance);
- captioning (CoCa): BLEU (sacrebleu) and ROUGE-L (rouge-score) of greedy captions against the held-out
  captions, beside the nearest training caption by hand-crafted statistics and by SensorLM similarity.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rouge_score import rouge_scorer
from sacrebleu.metrics.bleu import BLEU
from sklearn.preprocessing import StandardScaler
from tokenizers import Tokenizer

from modeling.ml.common.bootstrap import BOOTSTRAP
from modeling.ml.data.activities import ACTIVITY_KINDS, ACTIVITY_NAMES
from modeling.ml.data.cohort import participant_split
from modeling.ml.lsm.evaluate import class_probabilities, probe_pipeline, score
from modeling.ml.lsm.pretrain import check_new_participants
from modeling.ml.sensorlm.captions import activity_words
from modeling.ml.sensorlm.model import SensorLMModel, load_sensorlm
from modeling.ml.sensorlm.tokenizer import decode, normalized
from modeling.ml.sensorlm.train import (
    CaptionedDays,
    captioned_days,
    embed_texts,
    embed_windows,
    recall_at,
    standardized,
)

# Prompt templates for zero-shot classification, worded like the semantic captions; their embeddings are averaged.
TEMPLATES = (
    "Activities: a {name}.",
    "Activities: a 30-minute {name} in the morning.",
    "Activities: a 45-minute {name} in the evening.",
    "a day with a {name}.",
)
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
    caption_days: int = 200  # test days captioned by the CoCa decoder (greedy decoding is the slow part)
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
    model: SensorLMModel, mean: torch.Tensor, std: torch.Tensor, settings: EvaluationSettings
) -> EvaluationData:
    data = captioned_days(participants=settings.participants, days=settings.days, seed=settings.seed)
    probe_participants, _ = participant_split(settings.participants, 0.5, settings.seed)
    is_train = np.isin(data.owner, probe_participants)
    values, observed = standardized(data, mean.numpy(), std.numpy())
    embeddings = embed_windows(model, values, observed, torch.tensor(data.weekday)).numpy()
    return EvaluationData(
        data,
        data.captions(model.config.caption_levels),
        np.flatnonzero(is_train),
        np.flatnonzero(~is_train),
        embeddings,
        data.statistics(),
    )


# ---------------------------------------------------------------- zero-shot activity recognition


def class_text_embeddings(model: SensorLMModel, tokenizer: Tokenizer, names: list[str]) -> torch.Tensor:
    """(classes, embed_dim): each class's prompt embeddings averaged over the templates, renormalized."""
    texts = [template.format(name=activity_words(name)) for name in names for template in TEMPLATES]
    embedded = embed_texts(model, tokenizer, texts).reshape(len(names), len(TEMPLATES), -1).mean(dim=1)
    return torch.nn.functional.normalize(embedded, dim=-1)


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
        similarity = (
            torch.tensor(evaluation.sensor_embeddings[test])
            @ class_text_embeddings(model, tokenizer, list(ACTIVITY_NAMES)).T
        )
        probabilities["zero-shot SensorLM"] = torch.softmax(
            model.logit_scale.exp().clamp(max=100).cpu() * similarity, dim=1
        ).numpy()
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


def retrieval_scores(evaluation: EvaluationData, model: SensorLMModel, tokenizer: Tokenizer) -> dict[str, float]:
    test = evaluation.test
    text = embed_texts(model, tokenizer, [evaluation.captions[row] for row in test])
    similarity = torch.tensor(evaluation.sensor_embeddings[test]) @ text.T  # (sensors, texts)
    result: dict[str, float] = {"candidates": len(test)}
    for k in (1, 5, 10):
        result[f"sensor_to_text_r@{k}"] = recall_at(similarity, k)
        result[f"text_to_sensor_r@{k}"] = recall_at(similarity.T, k)
        result[f"chance_r@{k}"] = min(1.0, k / len(test))
    return result


# ---------------------------------------------------------------- captioning


def text_scores(candidates: list[str], references: list[str]) -> dict[str, float]:
    """Corpus BLEU (sacrebleu, 0-100) and mean ROUGE-L F1 (rouge-score, 0-1)."""
    bleu = BLEU().corpus_score(candidates, [references]).score
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = float(
        np.mean(
            [
                scorer.score(reference, candidate)["rougeL"].fmeasure
                for candidate, reference in zip(candidates, references, strict=True)
            ]
        )
    )
    return {"bleu": float(bleu), "rouge_l": rouge}


def caption_scores(
    evaluation: EvaluationData,
    model: SensorLMModel,
    tokenizer: Tokenizer,
    mean: torch.Tensor,
    std: torch.Tensor,
    settings: EvaluationSettings,
) -> dict[str, Any]:
    """Generated captions (CoCa) and two nearest-caption baselines against the test days' captions, all in the
    tokenizer's normalized text and truncated to the model's caption length."""
    rng = np.random.default_rng(settings.seed)
    test = np.sort(rng.choice(evaluation.test, size=min(settings.caption_days, len(evaluation.test)), replace=False))
    train = evaluation.train
    limit = model.config.max_text_tokens
    references = [normalized(tokenizer, evaluation.captions[row], limit) for row in test]
    training_captions = [normalized(tokenizer, evaluation.captions[row], limit) for row in train]
    results: dict[str, Any] = {"days": len(test)}
    scaler = StandardScaler().fit(evaluation.statistics[train])
    train_statistics, test_statistics = (
        scaler.transform(evaluation.statistics[train]),
        scaler.transform(evaluation.statistics[test]),
    )
    nearest = ((test_statistics[:, None, :] - train_statistics[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    results["nearest caption by hand-crafted statistics"] = text_scores(
        [training_captions[row] for row in nearest], references
    )
    text = embed_texts(model, tokenizer, [evaluation.captions[row] for row in train])
    retrieved = (torch.tensor(evaluation.sensor_embeddings[test]) @ text.T).argmax(dim=1).numpy()
    results["nearest caption by SensorLM similarity"] = text_scores(
        [training_captions[row] for row in retrieved], references
    )
    if model.config.loss == "coca":
        values, observed = standardized(evaluation.data.subset(test), mean.numpy(), std.numpy())
        weekday = torch.tensor(evaluation.data.weekday[test])
        generated = []
        for start in range(0, len(test), 64):
            ids = model.generate_captions(
                values[start : start + 64].to(model.device),
                observed[start : start + 64].to(model.device),
                weekday[start : start + 64].to(model.device),
                max_tokens=limit,
            )
            generated += [decode(tokenizer, row) for row in ids]
        results["CoCa greedy caption"] = text_scores(generated, references)
        results["examples"] = [
            {"reference": reference, "generated": caption}
            for reference, caption in zip(references[:3], generated[:3], strict=True)
        ]
    return results


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
    evaluation = prepare(model, mean, std, settings)
    if settings.lsm_model:
        evaluation.extra["linear probe on the foundation model (supervised)"] = lsm_features(
            settings.lsm_model, evaluation.data, settings.device
        )
    progress(0.3, "zero-shot activity recognition")
    activity = activity_scores(evaluation, model, tokenizer, settings)
    progress(0.5, "retrieval")
    retrieval = retrieval_scores(evaluation, model, tokenizer)
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
    }


def _cell(value: Sequence[float | None] | None) -> str:
    if value is None or value[0] is None or not np.isfinite(value[0]):
        return "—"
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
    rows = [
        [direction] + [f"{retrieval[f'{key}_r@{k}']:.3f}" for k in (1, 5, 10)]
        for direction, key in (
            ("sensor → text", "sensor_to_text"),
            ("text → sensor", "text_to_sensor"),
            ("chance", "chance"),
        )
    ]
    tables.append(
        {
            "title": "Retrieval among the test days",
            "summary": f"{retrieval['candidates']} test days, each with its own caption.",
            "columns": ["direction", "R@1", "R@5", "R@10"],
            "rows": rows,
        }
    )
    captioning = result["captioning"]
    rows = [
        [method, f"{scores['bleu']:.1f}", f"{scores['rouge_l']:.3f}"]
        for method, scores in captioning.items()
        if isinstance(scores, dict)
    ]
    tables.append(
        {
            "title": "Captioning",
            "summary": f"{captioning['days']} test days; references are their captions in the tokenizer's "
            "normalized text, truncated to the model's caption length. BLEU 0-100 (sacrebleu), ROUGE-L F1 (rouge-score).",
            "columns": ["method", "BLEU", "ROUGE-L"],
            "rows": rows,
        }
    )
    return tables
