"""Session 40 check (not a report; README, session 40): the committed model's risk table on a cohort six times the
table's, large enough for the incidence bar to tell a biased model from an unlucky cohort.

The committed table (seed 5000, 3,973 participants) has 13-47 events on each hard endpoint; there, a perfectly
calibrated model meets "predicted incidence within 0.8-1.25x of observed on every endpoint" in 4 % of draws
(`incidence_bar.py`). Here the same table (`evaluate.risk_table`, the calibrated risks the site and the reports read)
is computed on 24,000 new participants of seed 9300, never a training's, the head's, the calibration's, a report's
or a check's seed: with 4 sampled futures each (the calibration's count, 19 min) and with the table's 16 (the same
people, four times as long), written to risk_large_cohort_s4.md and _s16.md. Each endpoint's predicted over observed incidence gets an exact Poisson 95 % interval of the observed
count, and the chance that a perfectly calibrated model's ratio falls inside the window on this cohort.

    PYTHONPATH=. .venv/bin/python docs/results/twin-tiny/checks/risk_large_cohort.py docs/results/twin-tiny/model
    PYTHONPATH=. .venv/bin/python docs/results/twin-tiny/checks/risk_large_cohort.py docs/results/twin-tiny/model \
        --samples 16
    # session 41, the head's endpoints pooled: risk_large_cohort_pooled_s16.md and .json. The _s4 and _s16 files
    # are session 40's, made by the head of each endpoint alone (the model as of commit f6d88bc)
    PYTHONPATH=. .venv/bin/python docs/results/twin-tiny/checks/risk_large_cohort.py docs/results/twin-tiny/model \
        --samples 16 --name risk_large_cohort_pooled
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from modeling.ml.twin.evaluate import TwinReportSettings, number_cell, risk_markdown, risk_table
from modeling.ml.twin.training import load_twin

LOW, HIGH = 0.8, 1.25


def poisson_interval(count: int) -> tuple[float, float]:
    """Exact (Garwood) 95 % interval of a Poisson mean from one observed count."""
    low = stats.chi2.ppf(0.025, 2 * count) / 2 if count else 0.0
    return float(low), float(stats.chi2.ppf(0.975, 2 * count + 2) / 2)


def inside_if_calibrated(expected: float, at_risk: int) -> float:
    """P(predicted over observed inside the window) when the observed count is binomial around the predicted one."""
    low, high = expected / HIGH, expected / LOW  # observed counts that keep the ratio inside
    probability = stats.binom.cdf(np.floor(high), at_risk, expected / at_risk) - stats.binom.cdf(
        np.ceil(low) - 1, at_risk, expected / at_risk
    )
    return float(probability)


torch.set_num_threads(2)
load_before = os.getloadavg()
started = time.time()
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("model", type=Path)
parser.add_argument("--participants", type=int, default=24000, help="fewer only to try the script")
parser.add_argument("--samples", type=int, default=4, help="sampled futures per participant")
parser.add_argument("--name", default="risk_large_cohort", help="the outputs' name, before _s<samples>.md and .json")
args = parser.parse_args()
participants = args.participants
settings = TwinReportSettings(participants=participants, seed=9300, samples=args.samples)
model, tokenizer = load_twin(args.model, "cpu")
table = risk_table(model, tokenizer, settings)
seconds = round(time.time() - started)
for row in table["rows"]:
    expected = row["predicted_incidence"] * row["at_risk"]
    low, high = poisson_interval(row["events"])
    row["predicted_events"] = expected
    row["predicted_over_observed"] = expected / row["events"] if row["events"] else None
    row["predicted_over_observed_ci"] = [expected / high, expected / low if low else None]
    row["inside_window"] = row["events"] > 0 and LOW <= expected / row["events"] <= HIGH
    row["inside_window_if_calibrated"] = inside_if_calibrated(expected, row["at_risk"])
table["seconds"] = seconds
table["load_average_before"], table["load_average_after"] = load_before, os.getloadavg()
lines = [
    risk_markdown(
        table, f"# Risk on {participants:,} new participants (seed {settings.seed}, {settings.samples} futures each)"
    ),
    "| endpoint | events | predicted events | predicted / observed [exact Poisson 95 % CI] | inside 0.8-1.25x | "
    "P(inside) if calibrated |",
    "|---|---:|---:|---:|---|---:|",
]
for row in table["rows"]:
    ci = row["predicted_over_observed_ci"]
    lines.append(
        f"| {row['endpoint']} | {row['events']} | {row['predicted_events']:.1f} | "
        f"{number_cell(row['predicted_over_observed'])} [{number_cell(ci[0])}, {number_cell(ci[1])}] | "
        f"{'yes' if row['inside_window'] else '**no**'} | "
        f"{row['inside_window_if_calibrated']:.3f} |"
    )
lines.append(
    f"\nEvery endpoint inside the window: {all(row['inside_window'] for row in table['rows'])}; "
    f"if calibrated, all inside with probability {np.prod([row['inside_window_if_calibrated'] for row in table['rows']]):.3f}."
    f"\n\nRun in {seconds / 60:.1f} min; load average (1, 5, 15 min) {[round(x, 2) for x in load_before]} before, "
    f"{[round(x, 2) for x in table['load_average_after']]} after.\n"
)
output = Path(__file__).with_name(f"{args.name}_s{settings.samples}")
output.with_suffix(".md").write_text("\n".join(lines))
output.with_suffix(".json").write_text(json.dumps(table, indent=1, default=float))
print("\n".join(lines))
