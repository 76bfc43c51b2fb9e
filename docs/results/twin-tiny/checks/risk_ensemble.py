"""Session 38 development study (not a report; README, session 38): do two training seeds together rank risk better?

On the development cohort of session 37 (seed 11, never a report's, nor the training's 0 and 2 or calibration's 1),
reads each endpoint's risk from the committed model (training seed 0), from the same configuration trained with
seed 2, and from the two averaged (each member's hazards summed along its own sampled futures, the table's read-out).
Paired bootstrap (stratified) of each against the clinical score, and of the average against each member.

    PYTHONPATH=. .venv/bin/python docs/results/twin-tiny/checks/risk_ensemble.py \
        docs/results/twin-tiny/model runs/twin-s37-seed2/model 8000 4

The same comparison serves any two twins: the 6th and 7th arguments name them (default seed_0 and seed_2) and the
8th is the output file (default risk_ensemble.json beside this script); session 38 compared the committed model
with its continuation on new participants (README):

    PYTHONPATH=. .venv/bin/python docs/results/twin-tiny/checks/risk_ensemble.py docs/results/twin-tiny/model \
        runs/twin-s38-cont-p32000-s7200/model 8000 4 seed_0 continued risk_continued.json
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
from modeling.ml.twin.ceilings import true_state_hazard
from modeling.ml.twin.evaluate import TwinReportSettings, risk_cohort
from modeling.ml.twin.generate import simulate
from modeling.ml.twin.scores import clinical_scores
from modeling.ml.twin.training import load_twin

FIRST, SECOND = Path(sys.argv[1]), Path(sys.argv[2])
PARTICIPANTS = int(sys.argv[3]) if len(sys.argv) > 3 else 8000
SAMPLES = int(sys.argv[4]) if len(sys.argv) > 4 else 4
FIRST_NAME, SECOND_NAME = (sys.argv[5], sys.argv[6]) if len(sys.argv) > 6 else ("seed_0", "seed_2")
OUTPUT = Path(__file__).with_name(sys.argv[7] if len(sys.argv) > 7 else "risk_ensemble.json")
SEED = 11
ENDS = tuple(endpoint for endpoint in ENDPOINTS if endpoint != "depression")  # the endpoints with a clinical score

torch.set_num_threads(2)
load_before = os.getloadavg()
print(f"load average before: {load_before}", flush=True)
model, tokenizer = load_twin(FIRST, "cpu")
settings = TwinReportSettings(participants=PARTICIPANTS, seed=SEED, samples=SAMPLES)
started = time.time()
cohort = risk_cohort(model, tokenizer, settings)
seconds = {"cohort_and_first_model": round(time.time() - started)}
print(f"cohort + rollouts, first model: {seconds['cohort_and_first_model']} s", flush=True)
readouts = {FIRST_NAME: cohort.rollouts.endpoint_risk(calibrated=False)[:, 0]}

second, second_tokenizer = load_twin(SECOND, "cpu")
# each model reads the histories through its own tokenizer (the same codes, bin edges fitted on its own training cohort)
started = time.time()
rollouts = simulate(
    second,
    second_tokenizer,
    [second_tokenizer.encode(history) for history in cohort.histories],
    arms=[None],
    horizon_days=settings.horizon_days,
    samples=SAMPLES,
    seed=SEED + 1,  # its own futures, as a second member would sample them
    max_new_tokens=320,
    grid_step_days=settings.horizon_days,
    risk_from_measurements=settings.risk_from_measurements,
)
seconds["second_model"] = round(time.time() - started)
print(f"rollouts, second model: {seconds['second_model']} s", flush=True)
readouts[SECOND_NAME] = rollouts.endpoint_risk(calibrated=False)[:, 0]
readouts["average"] = (readouts[FIRST_NAME] + readouts[SECOND_NAME]) / 2

scores = [
    clinical_scores(history, height_m=float(cohort.simulated.traits.height_m[i]))
    for i, history in zip(cohort.kept, cohort.histories, strict=True)
]
results: dict = {
    "load_average_before": load_before,
    "load_average_after": os.getloadavg(),
    "seconds": seconds,
    "participants": len(cohort.kept),
    "samples": SAMPLES,
}
for endpoint in ENDS:
    column = ENDPOINTS.index(endpoint)
    eligible = ~cohort.prevalent[endpoint]
    labels = cohort.outcome[endpoint][eligible].astype(int)
    score = np.array([s[endpoint] for s in scores])[eligible]
    row: dict = {"events": int(labels.sum()), "at_risk": int(eligible.sum()), "score": auroc(labels, score)}
    if endpoint in ("cardiovascular_event", "stroke", "heart_failure", "death"):
        row["true_hazard"] = auroc(labels, true_state_hazard(cohort.simulated, cohort.kept, endpoint)[eligible])
    for name, values in readouts.items():
        draws = paired_draws(auroc, labels, values[eligible, column], score, resamples=300, seed=column, stratify=True)
        row[name] = {
            "auroc": auroc(labels, values[eligible, column]),
            "minus_score_ci": list(percentile_interval(draws[:, 2])),
        }
    for member in (FIRST_NAME, SECOND_NAME):
        draws = paired_draws(
            auroc,
            labels,
            readouts["average"][eligible, column],
            readouts[member][eligible, column],
            resamples=300,
            seed=column,
            stratify=True,
        )
        row["average"][f"minus_{member}"] = float(np.mean(draws[:, 2]))
        row["average"][f"minus_{member}_ci"] = list(percentile_interval(draws[:, 2]))
    results[endpoint] = row
    cells = "  ".join(f"{name} {row[name]['auroc']:.3f}" for name in readouts)
    print(
        f"{endpoint:22s} events {row['events']:4d} score {row['score']:.3f} true {row.get('true_hazard') or 0:.3f}  {cells}"
    )
OUTPUT.write_text(json.dumps(results, indent=1))
