"""What the twin's bars ask against what any model of the history could reach, without a model.

1. The trait ceiling of an 80-person antihypertensive trial in hypertensive people (the only diastolic trial of the
   23), over many draws of its participants and their responses: how often could a predictor that knew every trait
   exactly reach the issue's pooled r of 0.5 on diastolic pressure?
2. The hard endpoints' true hazard (the simulator's own, on the true values at the prediction day) against the
   clinical scores, on a risk cohort built as ``twin evaluate --parts risk`` builds it (a year of history, a year of
   horizon, no randomized treatment), with the risk table's paired stratified bootstrap.

    PYTHONPATH=. .venv/bin/python docs/results/twin-tiny/checks/ceilings.py --draws 1000 --participants 16000 --seed 9000
"""

import argparse
import time

import numpy as np

from modeling.ml.data.clinical import HARD_ENDPOINT_YEARLY_RATES, individual_effect, sample_response
from modeling.ml.data.traits import sample_traits
from modeling.ml.twin.ceilings import trait_ceiling, true_state_hazard
from modeling.ml.twin.data import simulated_records
from modeling.ml.twin.evaluate import paired_bootstrap, populations, record_until
from modeling.ml.twin.scores import ENDPOINT_SCORES, clinical_scores


def trial_ceilings(draws: int, participants: int = 80) -> None:
    pool = sample_traits(20000, np.random.default_rng(11))
    hypertensive = np.flatnonzero(populations(pool)["hypertensive"])
    rng = np.random.default_rng(12)
    ceilings: dict[str, list[float]] = {"systolic_bp": [], "diastolic_bp": []}
    for _ in range(draws):
        people = pool.subset(rng.choice(hypertensive, participants, replace=False))
        response = sample_response(participants, rng)
        for biomarker, found in ceilings.items():
            truth = individual_effect(people, "antihypertensive", response, 90)[biomarker]
            found.append(float(np.corrcoef(trait_ceiling(people, "antihypertensive", biomarker, 90), truth)[0, 1]))
    print(f"Trait ceiling, antihypertensive in {participants} hypertensive people, {draws} draws:")
    for biomarker, found in ceilings.items():
        values = np.array(found)
        low, high = np.percentile(values, [5, 95])
        print(
            f"  {biomarker}: median {np.median(values):.3f}, 5-95 % {low:.3f} to {high:.3f}, "
            f"reaches 0.5 in {(values >= 0.5).mean():.1%} of draws"
        )


def risk_headroom(participants: int, seed: int, resamples: int = 500) -> None:
    history_days, horizon_days = 365, 365
    cutoff = history_days - 1
    simulated = simulated_records(
        participants=participants,
        days=history_days + horizon_days,
        seed=seed,
        intervention_probability=0.0,
        latent_on_day=cutoff,
    )
    kept = [i for i, record in enumerate(simulated.records) if record.last_day >= cutoff]
    histories = [record_until(simulated.records[i], cutoff) for i in kept]
    scores = [
        clinical_scores(h, height_m=float(simulated.traits.height_m[i])) for i, h in zip(kept, histories, strict=True)
    ]
    print(f"True hazard against the clinical score, {len(kept)} participants (seed {seed}):")
    for endpoint in HARD_ENDPOINT_YEARLY_RATES:
        prevalent = np.array([any(e["name"] == endpoint for e in h.events) for h in histories])
        outcome = np.array(
            [
                any(
                    e["name"] == endpoint and cutoff < e["day"] <= cutoff + horizon_days
                    for e in simulated.records[i].events
                )
                for i in kept
            ]
        )
        at_risk = ~prevalent
        score = np.array([s[endpoint] for s in scores])
        result = paired_bootstrap(
            outcome[at_risk].astype(int),
            true_state_hazard(simulated, kept, endpoint)[at_risk],
            score[at_risk],
            resamples=resamples,
            seed=seed,
        )
        if result["difference"] is None:
            print(f"  {endpoint}: too few events to score")
            continue
        low, high = result["difference_ci"]
        print(
            f"  {endpoint} ({ENDPOINT_SCORES[endpoint][0]}): {int(outcome[at_risk].sum())} events, true hazard "
            f"{result['model']:.3f}, score {result['score']:.3f}, difference {result['difference']:+.3f} "
            f"[{low:+.3f}, {high:+.3f}]"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--participants", type=int, default=16000)
    parser.add_argument("--seed", type=int, default=9000)
    args = parser.parse_args()
    started = time.monotonic()
    trial_ceilings(args.draws)
    risk_headroom(args.participants, args.seed)
    print(f"{(time.monotonic() - started) / 60:.1f} min")
