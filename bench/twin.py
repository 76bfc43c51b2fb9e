"""Digital-twin simulation at scale: participants x interventions x days simulated per second on CPU.

A cohort of 1,000 simulated participants (a year of history each) is rolled forward 90 days with no
intervention and with each of the 5 interventions, one sampled future per participant and arm, in
batches over the KV cache. The goal is 1,000 x 5 x 90 days in under 10 s on CPU. The model is the
trained tiny twin at ``TWIN_BENCH_MODEL`` (default ``runs/twin-tiny/model``) when it exists, else
an untrained tiny twin of the same size (the throughput depends on the size and on how many tokens
a model writes per day, not on what it learned; both are reported).
"""

import os
import time
from pathlib import Path

PARTICIPANTS = 1000
DAYS = 90
GOAL_S = 10.0


def _model():
    import torch

    from modeling.ml.healthformer.data import simulated_records
    from modeling.ml.healthformer.model import HealthFormerConfig, HealthFormerModel
    from modeling.ml.healthformer.tokens import Tokenizer
    from modeling.ml.healthformer.training import load_twin

    path = Path(os.environ.get("TWIN_BENCH_MODEL", "runs/twin-tiny/model"))
    if (path / "tokenizer.json").exists():
        model, tokenizer = load_twin(path)
        return model, tokenizer, str(path)
    tokenizer = Tokenizer.fit(simulated_records(participants=200, days=365, seed=11).records)
    torch.manual_seed(0)
    return HealthFormerModel(HealthFormerConfig.named("tiny", tokenizer)).eval(), tokenizer, "untrained tiny"


def run() -> dict:
    import numpy as np
    import torch

    from modeling.ml.data.clinical import INTERVENTIONS
    from modeling.ml.healthformer.data import simulated_records
    from modeling.ml.healthformer.generate import simulate

    model, tokenizer, source = _model()
    records = simulated_records(participants=PARTICIPANTS, days=365, seed=12, intervention_probability=0.0).records
    histories = [tokenizer.encode(record) for record in records]
    arms = [None, *(intervention.name for intervention in INTERVENTIONS)]
    simulate(model, tokenizer, histories[:50], arms=arms, horizon_days=DAYS, samples=1, seed=0, max_new_tokens=16)  # warm-up
    started = time.perf_counter()
    rollouts = simulate(model, tokenizer, histories, arms=arms, horizon_days=DAYS, samples=1, seed=0, grid_step_days=DAYS,
                        max_new_tokens=128, batch_rows=3000)
    seconds = time.perf_counter() - started
    simulated = PARTICIPANTS * (len(arms) - 1) * DAYS
    tokens = int((rollouts.sampled_ids > 0).sum())
    return {"model": source, "parameters": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads(),
            "participants": PARTICIPANTS, "interventions": len(arms) - 1, "control_arm": True, "days": DAYS, "seconds": round(seconds, 2),
            "participant_intervention_days_per_s": round(simulated / seconds), "tokens_generated": tokens,
            "tokens_per_row_mean": round(tokens / (PARTICIPANTS * len(arms)), 1), "history_tokens_mean": round(float(np.mean([len(h) for h in histories])), 1),
            "goal_s": GOAL_S, "goal_met": seconds < GOAL_S}
