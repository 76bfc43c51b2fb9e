"""Does the twin know the person? Teacher-forced reads of each biomarker against the previous measurement, the
simulation's first value against the latest measured one, and a visit soon after (issue 25). Part of
``evaluate.twin_report``; ``bench twin_fidelity`` reads its start-value error."""

import itertools
from dataclasses import asdict
from typing import Any

import numpy as np

from modeling.ml.data.clinical import BIOMARKER_BY_NAME
from modeling.ml.twin.data import simulated_records
from modeling.ml.twin.evaluate import Progress, TwinReportSettings, died_by, number_cell
from modeling.ml.twin.generate import simulate
from modeling.ml.twin.model import HealthFormerModel
from modeling.ml.twin.tokens import BIOMARKER_NAMES, Tokenizer

FIDELITY_BIOMARKERS = ("hba1c", "ldl", "hdl", "egfr", "systolic_bp", "diastolic_bp", "weight")


def fidelity_table(
    model: HealthFormerModel,
    tokenizer: Tokenizer,
    settings: TwinReportSettings,
    *,
    participants: int = 400,
    visit_days: int = 14,
    progress: Progress = lambda *args: None,
) -> dict[str, Any]:
    """Does the twin know the person? On ``participants`` new people with a year of usual care, per biomarker:

    - **teacher-forced**: at each true measurement that has an earlier one, the value the model expects (its
      next-token distribution over the biomarker's bins, read just before it) regressed on the previous
      measurement (slope; 1 copies it, 0 ignores it) and correlated with the measurement itself;
    - **day 0** (the participants alive at the history's end, as the next two): the simulation's first value against
      the latest measured one (equal by construction in ``generate.simulate``; the column checks that it stays so);
    - **a visit soon after**: the value a visit ``visit_days`` after the history would show (the control arm's
      horizon read-out) against the latest measured value, as the median absolute difference in units of the
      simulator's measurement SD (below 1: within the measurement noise).
    """
    import torch

    from modeling.ml.twin.generate import crop_indices

    simulated = simulated_records(
        participants=participants, days=settings.history_days, seed=settings.seed + 4, intervention_probability=0.0
    )
    histories = [tokenizer.encode(record) for record in simulated.records]
    progress(0.1, f"teacher-forced reading of {len(histories)} histories")
    columns = {name: BIOMARKER_NAMES.index(name) for name in FIDELITY_BIOMARKERS}
    pairs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in FIDELITY_BIOMARKERS}
    bins = {name: tokenizer.measurement_ids(name) for name in FIDELITY_BIOMARKERS}
    with torch.inference_mode():
        for tokens in histories:
            keep = crop_indices(tokens, model.config.block_size)
            if tokens.values is None or len(keep) < 2:
                continue
            keep_ids, values = tokens.ids[keep], tokens.values[keep]
            age = torch.tensor([np.nan if tokens.age_years is None else tokens.age_years], dtype=torch.float32)
            ids = torch.from_numpy(keep_ids)[None].to(model.device)
            output = model(
                ids,
                torch.from_numpy(tokens.days[keep])[None].to(model.device),
                age.to(model.device),
                torch.ones_like(ids, dtype=torch.bool),
                compute_loss=False,
            )
            probabilities = torch.softmax(output.logits[0].float(), -1).cpu().numpy()  # (tokens, vocab)
            for name in FIDELITY_BIOMARKERS:
                where = np.flatnonzero(np.isin(keep_ids, bins[name]))
                centers = tokenizer.centers[name]
                for previous, current in itertools.pairwise(where):
                    restricted = probabilities[current - 1, bins[name]]
                    expected = float((restricted / max(restricted.sum(), 1e-12) * centers).sum())
                    pairs[name].append((float(values[previous]), expected, float(values[current])))
    # the simulations start from the living: a history ending in a death has no visit after it
    living = [
        tokens
        for tokens, record in zip(histories, simulated.records, strict=True)
        if not died_by(record, settings.history_days - 1)
    ]
    progress(0.6, f"a visit {visit_days} days after each of {len(living)} living participants' histories")
    rollouts = simulate(
        model,
        tokenizer,
        living,
        arms=[None],
        horizon_days=visit_days,
        samples=2,
        seed=settings.seed + 4,
        grid_step_days=visit_days,
        max_new_tokens=64,
    )
    latest = np.stack([tokenizer.latest_values(tokens) for tokens in living])  # (participants, biomarkers)
    visit = rollouts.expected[:, 0, :, -1, :].mean(axis=1)  # (participants, biomarkers)
    day0 = rollouts.expected[:, 0, :, 0, :].mean(axis=1)
    rows = []
    for name, column in columns.items():
        sd = BIOMARKER_BY_NAME[name].measurement_sd
        measured = ~np.isnan(latest[:, column])
        triples = np.array(pairs[name]).reshape(-1, 3)
        earlier, read, actual = triples.T  # previous measurement, the model's expectation, the measurement
        slope = float(np.polyfit(earlier, read, 1)[0]) if len(triples) > 2 and earlier.std() > 0 else None
        rows.append(
            {
                "biomarker": name,
                "unit": BIOMARKER_BY_NAME[name].unit,
                "measurement_sd": sd,
                "pairs": len(triples),
                "slope_on_previous": slope,
                "r_with_measurement": float(np.corrcoef(read, actual)[0, 1]) if len(triples) > 2 else None,
                "r_previous_with_measurement": float(np.corrcoef(earlier, actual)[0, 1]) if len(triples) > 2 else None,
                "measured_participants": int(measured.sum()),
                "day0_median_abs_sd": float(np.median(np.abs(day0 - latest)[measured, column]) / sd),
                "visit_median_abs_sd": float(np.median(np.abs(visit - latest)[measured, column]) / sd),
            }
        )
    return {
        "rows": rows,
        "participants": len(histories),
        "simulated_participants": len(living),
        "visit_days": visit_days,
        "settings": asdict(settings),
    }


def fidelity_markdown(table: dict[str, Any], header: str) -> str:
    lines = [
        header,
        "",
        "| biomarker | measurement SD | teacher-forced pairs | slope on the previous value | r with the measurement "
        "(previous value alone) | day 0 vs latest, median \\|Δ\\| / SD | visit after "
        f"{table['visit_days']} days vs latest, median \\|Δ\\| / SD |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table["rows"]:
        lines.append(
            f"| {row['biomarker']} ({row['unit']}) | {row['measurement_sd']:g} | {row['pairs']} | "
            f"{number_cell(row['slope_on_previous'])} | {number_cell(row['r_with_measurement'])} "
            f"({number_cell(row['r_previous_with_measurement'])}) | {number_cell(row['day0_median_abs_sd'])} | "
            f"{number_cell(row['visit_median_abs_sd'])} |"
        )
    return "\n".join(lines) + "\n"
