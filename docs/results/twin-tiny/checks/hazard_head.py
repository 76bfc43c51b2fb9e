"""Session 39 development study (not a report; README, session 39): does the hazard head (`twin hazard`: each
endpoint's first event as a rate per day, integrated along the sampled futures) rank the hard endpoints and AF better
than the next-token probabilities summed token by token, and better than the clinical scores?

On the development cohort of sessions 37-38 (seed 11, 8,000 new participants, 4 futures; never a report's, a
training's, the head's or the calibration's seed), both models uncalibrated (a factor leaves every AUROC as it is):
per endpoint, the AUROC of the committed model, of the same model with the head, and of the clinical score, with
paired bootstrap 95 % CIs of head minus committed and head minus score; and the observed over predicted events in
the denser and the sparser half of the histories (tokens in their last year), the bias the head is meant to remove.

    PYTHONPATH=. .venv/bin/python docs/results/twin-tiny/checks/hazard_head.py docs/results/twin-tiny/model \\
        runs/twin-s39-hazard/model
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from modeling.ml.common.bootstrap import paired_draws, percentile_interval
from modeling.ml.common.metrics import auroc
from modeling.ml.data.clinical import ENDPOINTS
from modeling.ml.twin.evaluate import TwinReportSettings, risk_cohort
from modeling.ml.twin.hazard import HAZARD_ENDPOINTS
from modeling.ml.twin.scores import clinical_scores
from modeling.ml.twin.training import load_twin

torch.set_num_threads(2)
load_before = os.getloadavg()
settings = TwinReportSettings(participants=8000, seed=11, samples=4)
risks, seconds = {}, {}
for name, path in (("committed", sys.argv[1]), ("head", sys.argv[2])):
    model, tokenizer = load_twin(Path(path), "cpu")
    started = time.time()
    cohort = risk_cohort(model, tokenizer, settings)
    seconds[name] = round(time.time() - started)
    risks[name] = cohort.rollouts.endpoint_risk(calibrated=False)[:, 0]
encoded = [tokenizer.encode(history) for history in cohort.histories]
density = np.array([(tokens.days > tokens.last_day - 365).sum() for tokens in encoded], dtype=float)
scores = [
    clinical_scores(history, height_m=float(cohort.simulated.traits.height_m[i]))
    for i, history in zip(cohort.kept, cohort.histories, strict=True)
]


def interval(labels: np.ndarray, first: np.ndarray, second: np.ndarray, seed: int) -> list[float | None]:
    draws = paired_draws(auroc, labels, first, second, resamples=1000, seed=seed, stratify=True)
    return list(percentile_interval(draws[:, 2]))


results: dict = {"participants": len(cohort.kept), "seconds_rollouts": seconds, "endpoints": {}}
for endpoint in HAZARD_ENDPOINTS:
    column = ENDPOINTS.index(endpoint)
    eligible = ~cohort.prevalent[endpoint]
    labels = cohort.outcome[endpoint][eligible].astype(int)
    committed, head = risks["committed"][eligible, column], risks["head"][eligible, column]
    score = np.array([s[endpoint] for s in scores])[eligible]
    dense = density[eligible] > np.median(density[eligible])
    row = {
        "events": int(labels.sum()),
        "score": auroc(labels, score),
        "committed": auroc(labels, committed),
        "head": auroc(labels, head),
        "head_minus_committed_ci": interval(labels, head, committed, column),
        "head_minus_score_ci": interval(labels, head, score, column + 100),
    }
    for name, values in (("committed", committed), ("head", head)):
        row[f"observed_over_predicted_{name}"] = float(labels.sum() / values.sum())
        for half, mask in (("denser", dense), ("sparser", ~dense)):
            row[f"observed_over_predicted_{name}_{half}_half"] = float(labels[mask].sum() / values[mask].sum())
    results["endpoints"][endpoint] = row
    print(endpoint, json.dumps(row), flush=True)
results["load_average_before"], results["load_average_after"] = load_before, os.getloadavg()
Path(__file__).with_name("hazard_head.json").write_text(json.dumps(results, indent=1))
