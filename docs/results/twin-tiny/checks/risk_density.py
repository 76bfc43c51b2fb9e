"""Session 38 development study (not a report; README, session 38): does the twin's hard-endpoint risk depend on how
densely a history is tokenized, beyond the simulator's own hazard, and would a calibration by density rank better?

On the development cohort of session 37 (seed 11, 8,000 new participants, 4 futures, the committed model):
- per endpoint, OLS of log risk on the log true hazard and the log of the history's tokens in its last year, and the
  observed over predicted events in the sparser and the denser half;
- the AUROC of the risk recalibrated per stratum, cross-fitted (factors fitted on one random half, applied to the
  other; 2 folds x 20 splits): (a) one factor per (endpoint, history has summarized wearable or CGM tokens in its last
  year); (b) a Poisson fit of the events on log risk (offset) and the log density.

    PYTHONPATH=. .venv/bin/python docs/results/twin-tiny/checks/risk_density.py docs/results/twin-tiny/model
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import statsmodels.api as sm
import torch

from modeling.ml.common.metrics import auroc
from modeling.ml.data.clinical import ENDPOINTS
from modeling.ml.twin.ceilings import true_state_hazard
from modeling.ml.twin.evaluate import TwinReportSettings, risk_cohort
from modeling.ml.twin.scores import clinical_scores
from modeling.ml.twin.tokens import MODALITY_INDEX, SUMMARIZED_MODALITIES
from modeling.ml.twin.training import load_twin

ENDS = ("hypertension", "cardiovascular_event", "stroke", "heart_failure", "atrial_fibrillation", "death")
HARD = ("cardiovascular_event", "stroke", "heart_failure", "death")

torch.set_num_threads(2)
load_before = os.getloadavg()
model, tokenizer = load_twin(Path(sys.argv[1]), "cpu")
started = time.time()
cohort = risk_cohort(model, tokenizer, TwinReportSettings(participants=8000, seed=11, samples=4))
seconds = round(time.time() - started)
risk = cohort.rollouts.endpoint_risk(calibrated=False)[:, 0]
summarized = [MODALITY_INDEX[modality] for modality in SUMMARIZED_MODALITIES]
encoded = [tokenizer.encode(history) for history in cohort.histories]
last_year = [tokens.days > tokens.last_day - 365 for tokens in encoded]
density = np.array([recent.sum() for recent in last_year], dtype=float)
with_summaries = np.array(
    [
        np.isin(tokenizer.id_modality[tokens.ids[recent]], summarized).any()
        for tokens, recent in zip(encoded, last_year, strict=True)
    ]
)
scores = [
    clinical_scores(history, height_m=float(cohort.simulated.traits.height_m[i]))
    for i, history in zip(cohort.kept, cohort.histories, strict=True)
]


def crossfit(labels: np.ndarray, values: np.ndarray, fit_apply, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    aurocs = []
    for _ in range(20):
        half = rng.permutation(len(labels)) < len(labels) // 2
        adjusted = values.copy()
        for fit_on in (half, ~half):
            adjusted[~fit_on] = fit_apply(fit_on, ~fit_on)
        aurocs.append(auroc(labels, adjusted))
    return float(np.mean(aurocs)), float(np.std(aurocs))


results: dict = {
    "participants": len(cohort.kept),
    "tokens_in_last_year_percentiles_5_25_50_75_95": np.percentile(density, [5, 25, 50, 75, 95]).tolist(),
    "share_with_summaries": float(with_summaries.mean()),
}
for endpoint in ENDS:
    column = ENDPOINTS.index(endpoint)
    eligible = ~cohort.prevalent[endpoint]
    labels = cohort.outcome[endpoint][eligible].astype(int)
    values = risk[eligible, column]
    log_density = np.log(density[eligible] + 1)
    stratum = with_summaries[eligible]
    dense = density[eligible] > np.median(density[eligible])
    score = np.array([s[endpoint] for s in scores])[eligible]
    row: dict = {"events": int(labels.sum()), "score": auroc(labels, score), "twin": auroc(labels, values)}
    for name, mask in (("denser_half", dense), ("sparser_half", ~dense), ("with_summaries", stratum)):
        row[f"observed_over_predicted_{name}"] = float(labels[mask].sum() / values[mask].sum())
    if endpoint in HARD:
        true = np.log(np.maximum(true_state_hazard(cohort.simulated, cohort.kept, endpoint)[eligible], 1e-12))
        design = sm.add_constant(np.column_stack([true, log_density]))
        ols = sm.OLS(np.log(np.maximum(values, 1e-12)), design).fit()
        row["ols_log_risk"] = {
            "on_log_true_hazard": float(ols.params[1]),
            "on_log_density": float(ols.params[2]),
            "on_log_density_se": float(ols.bse[2]),
            "r2": float(ols.rsquared),
        }

    def by_stratum(fit_on, apply_to, labels=labels, values=values, stratum=stratum):
        out = values[apply_to].copy()
        for level in (True, False):
            fit, apply = fit_on & (stratum == level), stratum[apply_to] == level
            out[apply] *= labels[fit].sum() / max(values[fit].sum(), 1e-12)
        return out

    def by_density(fit_on, apply_to, labels=labels, values=values, log_density=log_density):
        design = sm.add_constant(log_density)
        glm = sm.GLM(
            labels[fit_on], design[fit_on], family=sm.families.Poisson(), offset=np.log(values[fit_on] + 1e-12)
        )
        return values[apply_to] * np.exp(design[apply_to] @ glm.fit().params)

    row["crossfit_by_summaries"] = crossfit(labels, values, by_stratum, column)
    row["crossfit_by_density"] = crossfit(labels, values, by_density, column)
    results[endpoint] = row
    print(endpoint, json.dumps(row), flush=True)
results["seconds_rollouts"] = seconds
results["load_average_before"], results["load_average_after"] = load_before, os.getloadavg()
Path(__file__).with_name("risk_density.json").write_text(json.dumps(results, indent=1))
