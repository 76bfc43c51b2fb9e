"""``python -m bench lsm_probe``: re-score the committed foundation model's frozen embeddings against hand-crafted
features on new simulated participants (issue 24), with the probe study of ``modeling/ml/lsm/probe_study.py``.

A fresh seed each run (``LSM_PROBE_SEED``, default: from the clock), so the figures are not tuned to one cohort; at
least 1,000 test participants; the standard methods (hand-crafted and the embedding, each with the
cross-validated probe). Writes the four figures of the issue's "Done when" and the study itself.
"""

import os
import time
from pathlib import Path

from modeling.ml.lsm import probe_study

ROOT = Path(__file__).resolve().parent.parent
# The committed results model (docs/results/lsm-tiny/README.md says how it was trained); the demo's weights otherwise.
MODELS = (ROOT / "docs/results/lsm-tiny/model", ROOT / "modeling/demo_weights/lsm")


def run() -> dict:
    model = next(path for path in MODELS if (path / "model.safetensors").exists())
    seed = int(os.environ.get("LSM_PROBE_SEED", int(time.time()) % 100_000 + 10_000))
    settings = probe_study.ProbeStudySettings(
        participants=int(os.environ.get("LSM_PROBE_PARTICIPANTS", 1600)),
        test_share=0.625,  # 1,000 of 1,600 held out
        days=int(os.environ.get("LSM_PROBE_DAYS", 3)),
        seed=seed,
        few_shot=[5, 10],
        draws=20,
        resamples=500,
        few_shot_resamples=100,
    )
    methods = {name: probe_study.STANDARD_METHODS[name] for name in ("handcrafted", probe_study.PROBE)}
    started = time.perf_counter()
    result = probe_study.run(model, ROOT / "var/bench/lsm_probe", settings, methods, log=lambda message: None)
    summary = result["summary"][probe_study.PROBE]
    return {
        "model": str(model.relative_to(ROOT)),
        "seed": seed,
        "test_participants": result["test_participants"],
        "train_participants": result["train_participants"],
        "tasks_total": summary["tasks_total"],
        "tasks_probe_at_least_handcrafted": summary["tasks_at_least_baseline"],
        "tasks_probe_ci_above": summary["tasks_ci_above"],
        "tasks_probe_ci_below": summary["tasks_ci_below"],
        "few_shot_5_delta_auroc": summary["few_shot_difference"]["5"],
        "few_shot_10_delta_auroc": summary["few_shot_difference"]["10"],
        "cpu_seconds": result["cpu_seconds"],
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
