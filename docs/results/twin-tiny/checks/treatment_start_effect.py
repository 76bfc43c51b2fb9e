"""Teacher-forced: how much lower the twin expects each true measurement in the days after a treatment start, with
the start token than with a neutral token in its place (every other token, the measurements included, kept).

    PYTHONPATH=. .venv/bin/python docs/results/twin-tiny/checks/treatment_start_effect.py MODEL_DIR DAYS_AFTER_START
"""

import sys
from pathlib import Path

import numpy as np
import torch

from modeling.ml.twin.data import simulated_records
from modeling.ml.twin.generate import crop_indices
from modeling.ml.twin.tokens import CODE_INDEX
from modeling.ml.twin.training import load_twin

CHECKS = (("antihypertensive", ("systolic_bp", "diastolic_bp")), ("statin", ("ldl",)))


def main(model_dir: Path, days_after: int) -> None:
    model, tokenizer = load_twin(model_dir)
    simulated = simulated_records(participants=600, days=365, seed=424242, intervention_probability=1.0)
    for intervention, names in CHECKS:
        code = CODE_INDEX[f"intervention:{intervention}"]
        differences: dict[str, list[float]] = {name: [] for name in names}
        for record, given in zip(simulated.records, simulated.interventions, strict=True):
            if not given or given[0][0] != intervention:
                continue
            tokens = tokenizer.encode(record)
            keep = crop_indices(tokens, 256)
            ids, days = tokens.ids[keep], tokens.days[keep]
            starts = np.flatnonzero(tokens.codes[keep] == code)
            if not len(starts):
                continue
            start = starts[0]
            without = ids.copy()
            without[start] = tokenizer.token_id("diet:balanced")  # a neutral token on the same day
            age = torch.tensor([tokens.age_years], dtype=torch.float32)
            valid = torch.ones(1, len(ids), dtype=torch.bool)
            with torch.inference_mode():
                probabilities = [
                    torch.softmax(
                        model(torch.from_numpy(x)[None], torch.from_numpy(days)[None], age, valid, compute_loss=False)
                        .logits[0]
                        .float(),
                        -1,
                    ).numpy()
                    for x in (ids, without)
                ]
            for name in names:
                bins, centers = tokenizer.measurement_ids(name), tokenizer.centers[name]
                after = np.isin(ids, bins) & (days > days[start]) & (days <= days[start] + days_after)
                for position in np.flatnonzero(after):
                    read = [
                        (p[position - 1, bins] / p[position - 1, bins].sum() * centers).sum() for p in probabilities
                    ]
                    differences[name].append(float(read[0] - read[1]))
        for name in names:
            print(
                f"{intervention} {name}: {len(differences[name])} measurements within {days_after} days of the start, "
                f"expected value with the start token minus without it: {np.mean(differences[name]):.2f}"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
