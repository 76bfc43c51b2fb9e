"""``python -m bench sensorlm_fidelity``: re-score the committed sensor-language model (issue 26) on new participants.

On a fresh seed (``SENSORLM_FIDELITY_SEED``, default: from the clock), so the figures are not tuned to one cohort,
``sensorlm.evaluate`` runs every question of ``docs/results/sensorlm-tiny/``:

- zero-shot activity recognition (macro AUROC over the activity kinds present) and the two binary groupings, on the
  test half's days (``SENSORLM_FIDELITY_PARTICIPANTS`` x 3 days, split by participant);
- retrieval among pools of 300 test days (text -> sensor R@1 and R@10);
- the facts of generated captions (``sensorlm/facts.py``) on ``SENSORLM_FIDELITY_CAPTION_DAYS`` test days, for each
  way of writing them (greedy, reranked, held to the detected activities: ``sensorlm/decoding.py``; held to the
  activities the model's tagging head finds: ``sensorlm/tagging.py``). ``caption_activity_*`` are the tagging head's
  captions where the model has one (the way the model writes captions), greedy's otherwise (``caption_method``);
- "Find days": recall@5 of the labelled queries (``sensorlm/find_days_eval.py``) for the page's ranking and the
  lexical baseline, with an event log, without one, and without one but with the tagging head's activities.

Sizes are chosen to finish in about 5 minutes on 2 cores (2.6 minutes alone for 800 participants, session 19; the
reranked captions add about 2 minutes at 300 caption days, session 22).
"""

import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The committed results model (docs/results/sensorlm-tiny/README.md says how it was trained); the demo's otherwise.
MODELS = (ROOT / "docs/results/sensorlm-tiny/model", ROOT / "modeling/demo_weights/sensorlm")


def run() -> dict:
    from modeling.ml.sensorlm.caption_eval import GREEDY, TAGGED
    from modeling.ml.sensorlm.evaluate import EvaluationSettings, evaluate

    model_dir = next(path for path in MODELS if (path / "model.safetensors").exists())
    seed = int(os.environ.get("SENSORLM_FIDELITY_SEED", int(time.time()) % 100_000 + 10_000))
    settings = EvaluationSettings(
        # 1,000 participants: about 1,000 test days with an activity
        participants=int(os.environ.get("SENSORLM_FIDELITY_PARTICIPANTS", 1000)),
        days=3,
        seed=seed,
        bootstrap=int(os.environ.get("SENSORLM_FIDELITY_BOOTSTRAP", 200)),
        caption_days=int(os.environ.get("SENSORLM_FIDELITY_CAPTION_DAYS", 300)),
    )
    started = time.perf_counter()
    result = evaluate(model_dir, settings)  # refuses a seed any model in the chain trained on
    activity, retrieval, captioning, find_days = (
        result["activity"],
        result["retrieval"],
        result["captioning"],
        result["find_days"],
    )
    zero_shot = activity["zero-shot SensorLM"]
    caption_method = TAGGED if TAGGED in captioning else GREEDY
    generated = captioning.get(caption_method, {}).get("facts", {})
    tagged_find_days = result.get("find_days_tagged")
    page = find_days["methods"]
    return {
        "model": str(model_dir.relative_to(ROOT)),
        "seed": seed,
        "evaluation_days": result["evaluation_days"],
        "zero_shot_test_days": activity["_counts"]["test_days"],
        "zero_shot_auroc": zero_shot["activity"]["auroc"][0],
        "zero_shot_auroc_ci": zero_shot["activity"]["auroc"][1:],
        "zero_shot_groupings_auroc": {
            grouping: scores["auroc"][0] for grouping, scores in zero_shot.items() if grouping != "activity"
        },
        "probe_auroc_sensorlm": activity["linear probe on SensorLM (supervised)"]["activity"]["auroc"][0],
        "probe_auroc_handcrafted": activity["linear probe on hand-crafted statistics (supervised)"]["activity"][
            "auroc"
        ][0],
        "retrieval_pool": retrieval["candidates"],
        "text_to_sensor_r1": retrieval["text_to_sensor_r@1"],
        "text_to_sensor_r10": retrieval["text_to_sensor_r@10"],
        "caption_days": captioning["days"],
        "caption_method": caption_method,
        "caption_activity_precision": generated.get("activity_precision"),
        "caption_activity_recall": generated.get("activity_recall"),
        "caption_days_without_false_activity": generated.get("days_without_false_activity"),
        # Every way of writing the captions (greedy, reranked, held to the detected activities: sensorlm/decoding.py)
        "caption_facts_by_method": {
            method: {
                key: scores["facts"].get(key)
                for key in ("activity_precision", "activity_recall", "days_without_false_activity")
            }
            for method, scores in captioning.items()
            if isinstance(scores, dict) and "facts" in scores
        },
        "find_days_queries": find_days["queries"],
        "find_days_recall_at_5": {method: scores["recall_at_5"] for method, scores in page.items()},
        "find_days_recall_at_5_without_event_log": {
            method: scores["recall_at_5"] for method, scores in result["find_days_without_events"]["methods"].items()
        },
        "find_days_recall_at_5_without_event_log_tagged": (
            {method: scores["recall_at_5"] for method, scores in tagged_find_days["methods"].items()}
            if tagged_find_days
            else None
        ),
        "evaluate_seconds": round(time.perf_counter() - started, 1),
    }
