"""Captions judged (issue 26): generated captions of the evaluation's test days, every way of decoding them, against
the nearest training caption by hand-crafted statistics and by the model's similarity; the facts they state
(``facts.py``), BLEU and ROUGE-L. Part of :func:`evaluate.evaluate`; its table is :func:`captioning_table`."""

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from rouge_score import rouge_scorer
from sacrebleu.metrics.bleu import BLEU
from sklearn.preprocessing import StandardScaler
from tokenizers import Tokenizer

from modeling.ml.sensorlm.decoding import (
    SAMPLING_TEMPERATURE,
    SAMPLING_TOP_P,
    fit_activity_detector,
    grounded_captions,
    reranked_captions,
)
from modeling.ml.sensorlm.facts import fact_scores
from modeling.ml.sensorlm.model import SensorLMModel
from modeling.ml.sensorlm.tagging import tagged_captions
from modeling.ml.sensorlm.tokenizer import decode, normalized
from modeling.ml.sensorlm.train import embed_texts, standardized

if TYPE_CHECKING:  # evaluate.py calls this module: its types only, for annotations
    from modeling.ml.sensorlm.evaluate import EvaluationData, EvaluationSettings


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


GREEDY = "CoCa greedy caption"
RERANKED = "CoCa sampled, the caption most similar to the day"
GROUNDED = "CoCa greedy, held to the activities detected at precision {precision}"
TAGGED = "CoCa greedy, held to the activities the tagging head finds"
DETECTION_PRECISIONS = (0.8, 0.9)  # the detector's operating points (``decoding.fit_activity_detector``)


def caption_scores(
    evaluation: "EvaluationData",
    model: SensorLMModel,
    tokenizer: Tokenizer,
    mean: torch.Tensor,
    std: torch.Tensor,
    settings: "EvaluationSettings",
) -> dict[str, Any]:
    """Generated captions (CoCa) and two nearest-caption baselines against the test days' captions, all in the
    tokenizer's normalized text and truncated to the model's caption length. Generated three ways (``decoding.py``):
    greedy; the most similar to the day of ``settings.caption_samples`` sampled captions; greedy with the activities
    sentence held to the kinds a detector fitted on the probe-training days finds, at each of
    :data:`DETECTION_PRECISIONS`."""
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
    truths = [evaluation.truths[row] for row in test]
    results["nearest caption by hand-crafted statistics"] = text_scores(
        [training_captions[row] for row in nearest], references
    ) | {"facts": fact_scores([training_captions[row] for row in nearest], truths)}
    text = embed_texts(model, tokenizer, [evaluation.captions[row] for row in train])
    retrieved = (torch.tensor(evaluation.sensor_embeddings[test]) @ text.T).argmax(dim=1).numpy()
    results["nearest caption by SensorLM similarity"] = text_scores(
        [training_captions[row] for row in retrieved], references
    ) | {"facts": fact_scores([training_captions[row] for row in retrieved], truths)}
    if model.config.loss == "coca":
        values, observed = standardized(evaluation.data.subset(test), mean.numpy(), std.numpy())
        values, observed = values.to(model.device), observed.to(model.device)
        weekday = torch.tensor(evaluation.data.weekday[test]).to(model.device)
        generated: dict[str, list[str]] = {}
        started = time.perf_counter()
        generated[GREEDY] = [
            decode(tokenizer, row)
            for start in range(0, len(test), 64)
            for row in model.generate_captions(
                values[start : start + 64], observed[start : start + 64], weekday[start : start + 64], max_tokens=limit
            )
        ]
        results[GREEDY] = {"seconds": time.perf_counter() - started}
        if settings.caption_samples:
            started = time.perf_counter()
            generated[RERANKED] = reranked_captions(
                model,
                tokenizer,
                values,
                observed,
                weekday,
                samples=settings.caption_samples,
                generator=torch.Generator(device=model.device).manual_seed(settings.seed),
                max_tokens=limit,
            ).captions
            results[RERANKED] = {
                "seconds": time.perf_counter() - started,
                "samples": settings.caption_samples,
                "temperature": SAMPLING_TEMPERATURE,
                "top_p": SAMPLING_TOP_P,
            }
        for precision in DETECTION_PRECISIONS:
            started = time.perf_counter()
            detector = fit_activity_detector(
                embeddings=evaluation.sensor_embeddings[train],
                truths=[evaluation.truths[row] for row in train],
                groups=evaluation.data.owner[train],
                precision=precision,
            )
            name = GROUNDED.format(precision=precision)
            generated[name] = grounded_captions(
                model,
                tokenizer,
                values,
                observed,
                weekday,
                detector.detect(evaluation.sensor_embeddings[test]),
                max_tokens=limit,
            )
            results[name] = {
                "seconds": time.perf_counter() - started,
                "detector": {"thresholds": detector.thresholds, "counts": detector.counts},
            }
        if evaluation.tagged is not None:
            started = time.perf_counter()
            generated[TAGGED] = tagged_captions(
                model,
                tokenizer,
                values,
                observed,
                weekday,
                [evaluation.tagged[row] for row in test],
                max_tokens=limit,
            )
            results[TAGGED] = {"seconds": time.perf_counter() - started}
        for name, captions in generated.items():
            results[name] |= text_scores(captions, references) | {"facts": fact_scores(captions, truths)}
        results["examples"] = [
            {"reference": reference} | {name: captions[position] for name, captions in generated.items()}
            for position, reference in enumerate(references[:3])
        ]
    return results


def captioning_table(captioning: dict[str, Any]) -> dict[str, Any]:
    """The captioning table (``evaluation_tables``): a row per captioning method of ``caption_scores``."""

    def number(value: float | None, digits: int) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

    generation = ""  # how the captions of the CoCa rows were decoded
    if GREEDY in captioning:
        ways = ["greedy"]
        if sampled := captioning.get(RERANKED):
            ways.append(
                f"{sampled['samples']} captions sampled per day (temperature {sampled['temperature']}, top-p "
                f"{sampled['top_p']}), the one whose text embedding is the most similar to the day's sensor embedding"
            )
        ways.append(
            "greedy with the activities sentence held to the kinds a probe on the sensor embedding detects (one "
            "logistic regression per kind fitted on the probe-training days, thresholded where its detections were "
            "right at the stated precision on held-out participants of those days)"
        )
        if TAGGED in captioning:
            ways.append(
                "greedy with the activities sentence held to the activities the model's tagging head finds (a head on "
                "the frozen sensor tower's patch tokens, fitted with the model on its training days; each activity's "
                "kind, start and duration, written in the captioner's words: `sensorlm/tagging.py`)"
            )
        generation = "Generated by the CoCa decoder (`sensorlm/decoding.py`): " + "; ".join(ways) + ". "
    rows = []
    for method, scores in captioning.items():
        if not isinstance(scores, dict):
            continue
        facts = scores.get("facts", {})
        rows.append(
            [
                method,
                number(facts.get("activity_precision"), 2),
                number(facts.get("activity_recall"), 2),
                number(facts.get("days_without_false_activity"), 2),
                number(facts.get("start_error_min_median"), 0),
                number(facts.get("duration_error_min_median"), 0),
                number(facts.get("nights_stated"), 2),
                number(facts.get("sleep_hours_error_median"), 2),
                number(facts.get("awakenings_error_median"), 1),
                f"{scores['bleu']:.1f}",
                f"{scores['rouge_l']:.3f}",
            ]
        )
    return {
        "title": "Captioning",
        "summary": f"{captioning['days']} test days. {generation}"
        "Facts (`sensorlm/facts.py`): the activities a caption states, "
        "matched by kind to the day's own (precision, recall, the share of days with no activity that did not "
        "happen: a caption stating none has none), the median absolute error of a matched activity's start and "
        "duration (minutes), the share of true nights the caption states, and the median error of a stated night's "
        "hours and awakenings. BLEU 0-100 (sacrebleu) and ROUGE-L F1 (rouge-score), secondary, against the "
        "captions in the tokenizer's normalized text, truncated to the model's caption length.",
        "columns": [
            "method",
            "activity precision",
            "activity recall",
            "days without a false activity",
            "start error (min)",
            "duration error (min)",
            "nights stated",
            "sleep error (h)",
            "awakenings error",
            "BLEU",
            "ROUGE-L",
        ],
        "rows": rows,
    }
