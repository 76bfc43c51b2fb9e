"""How often would a perfectly calibrated model meet the incidence bar on the risk table's cohort?

The issue asks, on each of the risk table's endpoints with at least 10 events, for a predicted incidence within
0.8-1.25x of the observed one. Take a model whose risks are exactly right: its predicted count is the expected count,
and the observed count is a draw around it. This draws each endpoint's events as a sum of independent Bernoulli
trials, one per participant at risk, with the probability the twin predicted for that participant (``risk.json`` holds
the mean; the draw uses it for everyone, a Poisson-binomial with equal probabilities, i.e. a binomial), and counts how
often every ratio falls inside the window. No model is run: it reads ``risk.json``.

    python docs/results/twin-tiny/checks/incidence_bar.py docs/results/twin-tiny/risk.json --draws 100000 --seed 0
"""

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("risk_json", type=Path)
    parser.add_argument("--draws", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--low", type=float, default=0.8)
    parser.add_argument("--high", type=float, default=1.25)
    args = parser.parse_args()
    table = json.loads(args.risk_json.read_text())
    rng = np.random.default_rng(args.seed)
    inside_all = np.ones(args.draws, dtype=bool)
    print(
        f"{'endpoint':24s} {'at risk':>8s} {'expected':>9s} {'observed':>9s} {'ratio':>6s} {'P(inside) if calibrated':>24s}"
    )
    for row in table["rows"]:
        if row["few_events"]:
            continue
        expected = row["at_risk"] * row["predicted_incidence"]
        events = rng.binomial(row["at_risk"], row["predicted_incidence"], args.draws)
        ratio = np.divide(expected, events, out=np.full(args.draws, np.inf), where=events > 0)
        inside = (ratio >= args.low) & (ratio <= args.high)
        inside_all &= inside
        observed_ratio = row["predicted_incidence"] / row["observed_incidence"]
        print(
            f"{row['endpoint']:24s} {row['at_risk']:8d} {expected:9.1f} {row['events']:9d} {observed_ratio:6.2f} "
            f"{inside.mean():24.3f}"
        )
    print(f"every endpoint inside {args.low}-{args.high}x: {inside_all.mean():.3f} of {args.draws} draws")


if __name__ == "__main__":
    main()
