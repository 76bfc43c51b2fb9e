"""Session 37 development study (not a report; README, session 37): how should the twin's hard-endpoint risk be read?

On a development cohort (seed 11, never a report's, nor the training's 0 or calibration's 1), compares per endpoint
the AUROC of: (a) the table's read-out (hazards summed along 4 sampled futures, at most 320 new tokens); (b) the same
with 640 new tokens (a row that runs out of tokens before the horizon adds no hazard for the rest of the year);
(c) the model's hazards summed along the participant's own last T days of history (no sampling). Paired bootstrap
against the clinical score and between read-outs.

    PYTHONPATH=. .venv/bin/python docs/results/twin-tiny/checks/risk_readouts.py docs/results/twin-tiny/model 8000
"""

import json
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
from modeling.ml.twin.generate import crop_indices, simulate
from modeling.ml.twin.risk import event_weights
from modeling.ml.twin.scores import clinical_scores
from modeling.ml.twin.training import load_twin

MODEL = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/twin-tiny/model")
PARTICIPANTS = int(sys.argv[2]) if len(sys.argv) > 2 else 8000
SEED = 11
ENDS = ("hypertension", "cardiovascular_event", "stroke", "heart_failure", "atrial_fibrillation", "death")

torch.set_num_threads(2)
model, tokenizer = load_twin(MODEL, "cpu")
settings = TwinReportSettings(participants=PARTICIPANTS, seed=SEED, samples=4)
started = time.time()
cohort = risk_cohort(model, tokenizer, settings)
print(f"cohort + rollouts (320): {time.time() - started:.0f} s", flush=True)
readouts = {"futures_320": cohort.rollouts.endpoint_risk(calibrated=False)[:, 0]}
truncated = cohort.rollouts.sampled_ids[..., -1] != 0
print(f"rows still going at the 320th new token: {truncated.mean():.3f}", flush=True)

encoded = [tokenizer.encode(history) for history in cohort.histories]
started = time.time()
long = simulate(
    model,
    tokenizer,
    encoded,
    arms=[None],
    horizon_days=365,
    samples=4,
    seed=SEED,
    max_new_tokens=640,
    grid_step_days=365,
)
readouts["futures_640"] = long.endpoint_risk(calibrated=False)[:, 0]
print(
    f"rollouts (640): {time.time() - started:.0f} s; still going at 640: {(long.sampled_ids[..., -1] != 0).mean():.3f}"
)

# (c) hazards along the history itself
weights = torch.tensor(event_weights(tokenizer))
windows = {90: [], 180: [], 365: []}
started = time.time()
with torch.inference_mode():
    for first in range(0, len(encoded), 256):
        chunk = encoded[first : first + 256]
        keeps = [crop_indices(tokens, 256) for tokens in chunk]
        cropped = [(tokens.ids[keep], tokens.days[keep]) for tokens, keep in zip(chunk, keeps, strict=True)]
        # the first day of each crop's contiguous tail (the pinned static and treatment tokens lead it)
        tail = [
            int(t.days[keep[np.flatnonzero(np.diff(keep) != 1).max(initial=-1) + 1]])
            for t, keep in zip(chunk, keeps, strict=True)
        ]
        width = max(len(ids) for ids, _ in cropped)
        input_ids = torch.zeros(len(chunk), width, dtype=torch.long)
        days = torch.zeros(len(chunk), width, dtype=torch.long)
        valid = torch.zeros(len(chunk), width, dtype=torch.bool)
        for row, (ids, token_days) in enumerate(cropped):
            input_ids[row, width - len(ids) :] = torch.from_numpy(ids)
            days[row, width - len(ids) :] = torch.from_numpy(token_days)
            days[row, : width - len(ids)] = int(token_days[0])
            valid[row, width - len(ids) :] = True
        ages = torch.tensor([np.nan if t.age_years is None else t.age_years for t in chunk], dtype=torch.float32)
        output = model(input_ids, days, ages, valid, compute_loss=False)
        hazards = torch.softmax(output.logits.float(), -1) @ weights  # (batch, tokens, endpoints)
        last = torch.tensor([t.last_day for t in chunk])[:, None]
        for span, out in windows.items():
            begin = torch.maximum(last - span, torch.tensor(tail)[:, None] - 1)
            inside = valid & (days > begin)
            covered = (last - begin).clamp(min=1).float()
            out.append(((hazards * inside[..., None]).sum(1) * 365.0 / covered).numpy())
for span, parts in windows.items():
    readouts[f"history_{span}"] = np.concatenate(parts)
print(f"history read-outs: {time.time() - started:.0f} s", flush=True)
readouts["futures_640+history_365"] = (readouts["futures_640"] + readouts["history_365"]) / 2

scores = [
    clinical_scores(history, height_m=float(cohort.simulated.traits.height_m[i]))
    for i, history in zip(cohort.kept, cohort.histories, strict=True)
]
results = {}
for endpoint in ENDS:
    column = ENDPOINTS.index(endpoint)
    eligible = ~cohort.prevalent[endpoint]
    labels = cohort.outcome[endpoint][eligible].astype(int)
    score = np.array([s[endpoint] for s in scores])[eligible]
    row = {"events": int(labels.sum()), "at_risk": int(eligible.sum()), "score": auroc(labels, score)}
    if endpoint in ("cardiovascular_event", "stroke", "heart_failure", "death"):
        row["true_hazard"] = auroc(labels, true_state_hazard(cohort.simulated, cohort.kept, endpoint)[eligible])
    for name, values in readouts.items():
        model_values = values[eligible, column]
        draws = paired_draws(auroc, labels, model_values, score, resamples=300, seed=column, stratify=True)
        row[name] = {
            "auroc": auroc(labels, model_values),
            "minus_score_ci": list(percentile_interval(draws[:, 2])),
        }
    base = readouts["futures_320"][eligible, column]
    for name in readouts:
        if name != "futures_320":
            draws = paired_draws(
                auroc, labels, readouts[name][eligible, column], base, resamples=300, seed=column, stratify=True
            )
            row[name]["minus_futures_320"] = float(np.mean(draws[:, 2]))
            row[name]["minus_futures_320_ci"] = list(percentile_interval(draws[:, 2]))
    results[endpoint] = row
    cells = "  ".join(f"{name} {row[name]['auroc']:.3f}" for name in readouts)
    print(
        f"{endpoint:22s} events {row['events']:4d} score {row['score']:.3f} true {row.get('true_hazard') or 0:.3f}  {cells}"
    )
Path(__file__).with_name("risk_readouts.json").write_text(json.dumps(results, indent=1))
