"""Digital-twin simulation at scale: participants x interventions x days simulated per second on CPU.

A cohort of 1,000 simulated participants (a year of history each) is rolled forward 90 days with no
intervention and with each of the 5 interventions, one sampled future per participant and arm, in
batches over the KV cache. The goal is 1,000 x 5 x 90 days in under 10 s on CPU.

The model is the twin at ``TWIN_BENCH_MODEL`` when that is set, else a tiny twin the bench trains
itself (``TRAINING``, a few minutes on one thread) and keeps under ``runs/bench-twin-tiny`` for the
next run. An untrained twin would measure the wrong workload: it writes about twice as many tokens
per day as a trained one, and how many tokens a model writes is what the time depends on. The
training time is reported apart from the timed simulation.
"""

import os
import time
from pathlib import Path

PARTICIPANTS = 1000
DAYS = 90
GOAL_S = 10.0
BENCH_MODEL_DIR = Path("runs/bench-twin-tiny")
# A small version of docs/results/twin-tiny's training (4,000 participants, 1,400 steps): enough for the
# token rate of a trained model, short enough to train inside the bench.
TRAINING = {
    "size": "tiny",
    "participants": 2000,
    "days": 730,
    "seed": 0,
    "steps": 600,
    "batch_size": 32,
    "learning_rate": 2e-3,
    "block_size": 256,
}


def bench_model() -> tuple[Path, float | None]:
    """The model directory to time, and the seconds spent training it now (None: given or trained before)."""
    given = os.environ.get("TWIN_BENCH_MODEL")
    if given:
        return Path(given), None
    model_dir = BENCH_MODEL_DIR / "model"
    if (model_dir / "tokenizer.json").exists():
        return model_dir, None
    from modeling.ml.train import TrainConfig
    from modeling.ml.twin.training import train_twin

    settings = dict(TRAINING)
    config = TrainConfig(
        steps=settings.pop("steps"),
        batch_size=settings.pop("batch_size"),
        learning_rate=settings.pop("learning_rate"),
        warmup_steps=30,
        checkpoint_every=100,
        log_every=50,
        seed=settings["seed"],
    )
    started = time.perf_counter()
    train_twin(train_config=config, output_dir=BENCH_MODEL_DIR, device="cpu", bins=24, **settings)
    return model_dir, time.perf_counter() - started


def run() -> dict:
    import json

    import numpy as np
    import torch

    from modeling.ml.data.clinical import INTERVENTIONS
    from modeling.ml.twin.data import simulated_records
    from modeling.ml.twin.generate import simulate
    from modeling.ml.twin.training import load_twin

    model_dir, training_s = bench_model()
    model, tokenizer = load_twin(model_dir)
    training_json = model_dir / "training.json"
    training = json.loads(training_json.read_text()) if training_json.exists() else {}
    records = simulated_records(participants=PARTICIPANTS, days=365, seed=12, intervention_probability=0.0).records
    histories = [tokenizer.encode(record) for record in records]
    arms = [None, *(intervention.name for intervention in INTERVENTIONS)]
    simulate(
        model, tokenizer, histories[:50], arms=arms, horizon_days=DAYS, samples=1, seed=0, max_new_tokens=16
    )  # warm-up
    started = time.perf_counter()
    rollouts = simulate(
        model,
        tokenizer,
        histories,
        arms=arms,
        horizon_days=DAYS,
        samples=1,
        seed=0,
        grid_step_days=DAYS,
        max_new_tokens=128,
        batch_rows=3000,
    )
    seconds = time.perf_counter() - started
    simulated = PARTICIPANTS * (len(arms) - 1) * DAYS
    tokens = int((rollouts.sampled_ids > 0).sum())
    return {
        "model": str(model_dir),
        "training_steps": training.get("steps"),
        "training_participants": training.get("participants"),
        "held_out_loss": training.get("held_out_loss", {}).get("loss"),
        "training_s_this_run": None if training_s is None else round(training_s, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "participants": PARTICIPANTS,
        "interventions": len(arms) - 1,
        "control_arm": True,
        "days": DAYS,
        "seconds": round(seconds, 2),
        "participant_intervention_days_per_s": round(simulated / seconds),
        "tokens_generated": tokens,
        "tokens_per_row_mean": round(tokens / (PARTICIPANTS * len(arms)), 1),
        "history_tokens_mean": round(float(np.mean([len(h) for h in histories])), 1),
        "goal_s": GOAL_S,
        "goal_met": seconds < GOAL_S,
    }
