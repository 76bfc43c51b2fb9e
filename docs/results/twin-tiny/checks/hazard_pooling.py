"""Session 41 development study (not a report; README, session 41): does the hazard head predict held-out people's
events better when its endpoints share their weights (`fit_hazard_head(pooling=...)`: one weight vector for every
endpoint plus each endpoint's ridge-penalized deviation) than when each endpoint is fitted alone, as session 39's
head was?

Only on the head's own fitting cohort (seed 21, 24,000 new participants, as `twin hazard` simulates them, read by the
committed trunk): 3-fold cross-validation by person, so every figure is on people the fit never saw, and no report's
seed (5000, 7000, 9300) or development cohort is touched. Per setting and endpoint: the held-out Poisson log
likelihood, as the difference from session 39's setting (each endpoint alone, penalty 1e-5) per 1,000 people, with a
95 % bootstrap CI over people (paired: the same people, the same rows, the same draws for every setting); and, as
weaker evidence, the rows' AUROC of the event against the expected count (rate times exposure, so the exposure each
row already has weighs in) among the rows at risk, each row scored by the fold's head that did not see it.

The rows read only the trunk and the position's inputs, never the head, so they are the same whichever head the
model holds: they are cached under runs/cache/, named by a hash of the trunk's weights (4 min to make, 1 GB).

    PYTHONPATH=. .venv/bin/python docs/results/twin-tiny/checks/hazard_pooling.py docs/results/twin-tiny/model
"""

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from modeling.ml.common.bootstrap import percentile_interval
from modeling.ml.common.metrics import auroc
from modeling.ml.twin.data import simulated_records
from modeling.ml.twin.hazard import HAZARD_ENDPOINTS, HazardRows, fit_hazard_head, hazard_rows
from modeling.ml.twin.training import load_twin


def trunk_hash(model_dir: Path) -> str:
    """A hash of every weight but the hazard head's: the rows' cache key."""
    digest = hashlib.sha256()
    with safe_open(str(model_dir / "model.safetensors"), "pt") as weights:
        for name in sorted(weights.keys()):
            if not name.startswith("hazard_head."):
                digest.update(name.encode() + weights.get_tensor(name).numpy().tobytes())
    return digest.hexdigest()[:16]


torch.set_num_threads(2)
load_before = os.getloadavg()
started = time.time()
model_dir = Path(sys.argv[1])
cache = Path("runs/cache") / f"hazard_rows_seed21_{trunk_hash(model_dir)}.pt"
if cache.exists():
    rows = HazardRows(**torch.load(cache, weights_only=False))  # written by this script, below
else:
    model, tokenizer = load_twin(model_dir, "cpu")
    simulated = simulated_records(participants=24000, days=730, seed=21, unknown_smoking_probability=0.25)
    rows = hazard_rows(model, tokenizer, simulated.records, HAZARD_ENDPOINTS)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(rows.__dict__, cache)
print(f"{len(rows.exposure):,} rows in {time.time() - started:.0f} s", flush=True)

REFERENCE = "alone, 1e-5 (session 39's head)"
SETTINGS = {  # name: (penalty on the shared or, alone, on each endpoint's weights; pooling)
    REFERENCE: (1e-5, None),
    "alone, 0": (0.0, None),
    "alone, 1e-6": (1e-6, None),
    "alone, 1e-4": (1e-4, None),
    "alone, 1e-3": (1e-3, None),
    "pooled, 1e-5 / 1e-4": (1e-5, 1e-4),
    "pooled, 1e-5 / 1e-3": (1e-5, 1e-3),
    "pooled, 1e-5 / 1e-2 (adopted)": (1e-5, 1e-2),
    "pooled, 1e-5 / 1e-1": (1e-5, 1e-1),
    "pooled, 1e-6 / 1e-2": (1e-6, 1e-2),
    "pooled, 5e-5 / 1e-2": (5e-5, 1e-2),
    "pooled, 1e-4 / 1e-2": (1e-4, 1e-2),
}
people = int(rows.person.max()) + 1
fold = np.random.default_rng(0).permutation(people) % 3
row_fold = fold[rows.person]
draws = [np.random.default_rng(1 + draw).integers(0, people, people) for draw in range(1000)]
per_person, results = {}, {"rows": len(rows.exposure), "people": people, "seconds_per_setting": {}, "settings": {}}
for name, (penalty, pooling) in SETTINGS.items():
    started = time.time()
    log_likelihood = np.zeros((len(rows.exposure), len(HAZARD_ENDPOINTS)))
    expected = np.zeros_like(log_likelihood)
    for held in range(3):
        train, test = torch.from_numpy(row_fold != held), torch.from_numpy(row_fold == held)
        fitted = HazardRows(
            rows.features[train], rows.exposure[train], rows.at_risk[train], rows.events[train], rows.person[train]
        )
        head = fit_hazard_head(fitted, penalty=penalty, pooling=pooling)
        with torch.no_grad():
            log_rate = head(rows.features[test]).double()
        exposure, events = rows.exposure[test].double()[:, None], rows.events[test].double()
        log_likelihood[test.numpy()] = (
            (events * log_rate - torch.exp(log_rate) * exposure) * rows.at_risk[test]
        ).numpy()
        expected[test.numpy()] = (torch.exp(log_rate) * exposure).numpy()
    results["seconds_per_setting"][name] = round(time.time() - started)
    per_person[name] = np.stack(
        [np.bincount(rows.person, log_likelihood[:, column], people) for column in range(len(HAZARD_ENDPOINTS))], 1
    )
    difference = per_person[name] - per_person[REFERENCE]
    boot = np.array([difference[pick].sum(0) for pick in draws]) * 1000 / people
    row = {}
    for column, endpoint in enumerate(HAZARD_ENDPOINTS):
        at_risk = rows.at_risk[:, column].numpy()
        row[endpoint] = {
            "log_likelihood_minus_reference_per_1000": float(difference[:, column].sum() * 1000 / people),
            "ci": list(percentile_interval(boot[:, column])),
            "row_auroc": auroc(rows.events[:, column].numpy()[at_risk].astype(int), expected[at_risk, column]),
        }
    row["all"] = {
        "log_likelihood_minus_reference_per_1000": float(difference.sum() * 1000 / people),
        "ci": list(percentile_interval(boot.sum(1))),
    }
    results["settings"][name] = row
    summary = {key: round(value["log_likelihood_minus_reference_per_1000"], 2) for key, value in row.items()}
    print(name, results["seconds_per_setting"][name], "s", json.dumps(summary), flush=True)
results["load_average_before"], results["load_average_after"] = load_before, os.getloadavg()
Path(__file__).with_name("hazard_pooling.json").write_text(json.dumps(results, indent=1))
