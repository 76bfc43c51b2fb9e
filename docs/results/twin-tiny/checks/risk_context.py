"""Session 37 development study (README, session 37): does the length of the context the rollouts attend over
matter? The twin is trained on 256-token windows; the risk rollouts prefill up to 192 history tokens and add up to
320 new ones. Dev seed 11.

    PYTHONPATH=. .venv/bin/python docs/results/twin-tiny/checks/risk_context.py 8000
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from modeling.ml.common.metrics import auroc
from modeling.ml.data.clinical import ENDPOINTS
from modeling.ml.twin.evaluate import TwinReportSettings, risk_cohort
from modeling.ml.twin.generate import simulate
from modeling.ml.twin.scores import clinical_scores
from modeling.ml.twin.training import load_twin

PARTICIPANTS = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
SEED = 11
ENDS = ("hypertension", "cardiovascular_event", "stroke", "heart_failure", "atrial_fibrillation", "death")
torch.set_num_threads(2)
model, tokenizer = load_twin("docs/results/twin-tiny/model", "cpu")
settings = TwinReportSettings(participants=PARTICIPANTS, seed=SEED, samples=4)
# the cohort's own rollouts (192) are the baseline; reuse them
started = time.time()
cohort = risk_cohort(model, tokenizer, settings)
new_tokens = (cohort.rollouts.sampled_ids != 0).sum(-1).ravel()
print(
    f"baseline {time.time() - started:.0f} s; new tokens per row: median {np.median(new_tokens):.0f}, "
    f"90% {np.percentile(new_tokens, 90):.0f}, max {new_tokens.max()}",
    flush=True,
)
encoded = [tokenizer.encode(history) for history in cohort.histories]
lengths = np.array([len(t) for t in encoded])
print(f"history tokens: median {np.median(lengths):.0f}, share over 192 {np.mean(lengths > 192):.2f}", flush=True)
readouts = {"history_192": cohort.rollouts.endpoint_risk(calibrated=False)[:, 0]}
for history_tokens in (96, 256):
    started = time.time()
    rollouts = simulate(
        model,
        tokenizer,
        encoded,
        arms=[None],
        horizon_days=365,
        samples=4,
        seed=SEED,
        max_new_tokens=320,
        grid_step_days=365,
        max_history_tokens=history_tokens,
    )
    readouts[f"history_{history_tokens}"] = rollouts.endpoint_risk(calibrated=False)[:, 0]
    print(f"history {history_tokens}: {time.time() - started:.0f} s", flush=True)
scores = [
    clinical_scores(h, height_m=float(cohort.simulated.traits.height_m[i]))
    for i, h in zip(cohort.kept, cohort.histories, strict=True)
]
results = {}
for endpoint in ENDS:
    column = ENDPOINTS.index(endpoint)
    eligible = ~cohort.prevalent[endpoint]
    labels = cohort.outcome[endpoint][eligible].astype(int)
    score = np.array([s[endpoint] for s in scores])[eligible]
    row = {"events": int(labels.sum()), "score": auroc(labels, score)}
    row.update({name: auroc(labels, values[eligible, column]) for name, values in readouts.items()})
    results[endpoint] = row
    print(endpoint, json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
Path(__file__).with_name("risk_context.json").write_text(json.dumps(results, indent=1))
