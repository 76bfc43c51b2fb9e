"""The twin's two report tables, on simulated participants it never saw.

- **Risk**: a year of history, then the risk of each endpoint within the next ``horizon_days``
  from sampled futures, against the published clinical score for that endpoint computed from the
  same history (AUROC with bootstrap 95 % CIs, paired for the difference; prevalent cases left out).
- **Trials**: randomized trials run in the ground-truth simulator (interventions x biomarkers x
  populations); the twin conditions each participant's history on the intervention token and
  compares with the same participant's rollout without it. Reported: direction correct, predicted
  mean change inside the trial's 95 % CI, and Pearson r of predicted against true individual changes, beside
  the r that knowing each participant's traits exactly would reach (``trait_ceiling``): a person's own response to a
  treatment is drawn for the trial, independent of their history, so in expectation no model correlates better.
"""

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modeling.ml.common.bootstrap import paired_draws, percentile_interval
from modeling.ml.common.metrics import auroc
from modeling.ml.data.clinical import (
    BIOMARKER_BY_NAME,
    ENDPOINTS,
    HARD_ENDPOINT_YEARLY_RATES,
    baseline_biomarkers,
    simulate_timeline,
    simulate_trial,
)
from modeling.ml.data.traits import Traits, sample_traits
from modeling.ml.twin.ceilings import trait_ceiling, true_state_hazard
from modeling.ml.twin.data import participant_stream, record_from_timeline, simulated_records
from modeling.ml.twin.generate import Rollouts, simulate
from modeling.ml.twin.model import HealthFormerModel
from modeling.ml.twin.risk import RISK_FROM_MEASUREMENTS
from modeling.ml.twin.scores import ENDPOINT_SCORES, clinical_scores
from modeling.ml.twin.tokens import BIOMARKER_NAMES, ParticipantRecord, Tokenizer

Progress = Callable[[float, str], None]

# (intervention, biomarker, population): each a randomized two-arm trial in the simulator.
TRIALS = (
    ("statin", "ldl", "general"),
    ("statin", "ldl", "high_ldl"),
    ("statin", "triglycerides", "general"),
    ("statin", "hdl", "general"),
    ("statin", "crp", "general"),
    ("antihypertensive", "systolic_bp", "hypertensive"),
    ("antihypertensive", "diastolic_bp", "hypertensive"),
    ("antihypertensive", "systolic_bp", "general"),
    ("antihypertensive", "systolic_bp", "older"),
    ("exercise_programme", "systolic_bp", "general"),
    ("exercise_programme", "weight", "overweight"),
    ("exercise_programme", "hba1c", "prediabetic"),
    ("exercise_programme", "resting_heart_rate", "general"),
    ("exercise_programme", "daily_steps", "general"),
    ("exercise_programme", "hdl", "general"),
    ("diet_change", "weight", "overweight"),
    ("diet_change", "ldl", "general"),
    ("diet_change", "hba1c", "prediabetic"),
    ("diet_change", "triglycerides", "general"),
    ("diet_change", "systolic_bp", "older"),
    ("sleep_extension", "sleep_minutes", "general"),
    ("sleep_extension", "systolic_bp", "hypertensive"),
    ("sleep_extension", "resting_heart_rate", "general"),
)


@dataclass
class TwinReportSettings:
    participants: int = 4000  # risk cohort
    history_days: int = 365
    horizon_days: int = 365
    samples: int = 4
    trial_participants: int = 80
    trial_samples: int = 8
    trial_days: int = 90
    bootstrap: int = 500
    readout: str = "measured"  # how a biomarker is read at the horizon (generate.simulate)
    risk_from_measurements: tuple[str, ...] = RISK_FROM_MEASUREMENTS  # diagnoses read from their criteria (generate)
    seed: int = 5000
    device: str = "cpu"


def record_until(record: ParticipantRecord, day: int) -> ParticipantRecord:
    """The record as it stood at the end of ``day``."""
    return ParticipantRecord(
        record.age_years,
        record.sex,
        record.smoker,
        [m for m in record.measurements if m["day"] <= day],
        [e for e in record.events if e["day"] <= day],
        min(day, record.last_day),
        record.height_m,
    )


def died_by(record: ParticipantRecord, day: int) -> bool:
    """Whether the participant died on or before ``day``: a death on the day itself ends the record there, so the
    participant is at risk of nothing after it (``last_day`` alone cannot tell a death on a record's last day)."""
    return any(event["name"] == "death" and event["day"] <= day for event in record.events)


MIN_EVENTS = 10  # an endpoint with fewer events in the risk cohort is flagged and not counted as a win or a loss


def paired_bootstrap(
    labels: np.ndarray, model: np.ndarray, score: np.ndarray, *, resamples: int, seed: int
) -> dict[str, Any]:
    """AUROC of both with percentile 95 % CIs, and of their difference, resampling participants (stratified:
    events and non-events separately, so every resample keeps the endpoint's events)."""
    model_auroc, score_auroc = auroc(labels, model), auroc(labels, score)
    point = (model_auroc, score_auroc)
    if model_auroc is None or score_auroc is None:
        return {
            "model": point[0],
            "model_ci": [None, None],
            "score": point[1],
            "score_ci": [None, None],
            "difference": None,
            "difference_ci": [None, None],
        }
    draws = paired_draws(auroc, labels, model, score, resamples=resamples, seed=seed, stratify=True)
    return {
        "model": point[0],
        "model_ci": list(percentile_interval(draws[:, 0])),
        "score": point[1],
        "score_ci": list(percentile_interval(draws[:, 1])),
        "difference": model_auroc - score_auroc,
        "difference_ci": list(percentile_interval(draws[:, 2])),
    }


@dataclass
class RiskCohort:
    """New participants alive at the prediction day, each endpoint's outcome in the horizon, and the twin's risks."""

    simulated: Any  # data.SimulatedRecords
    kept: list[int]  # indices into ``simulated`` of the participants alive at the prediction day
    histories: list[ParticipantRecord]
    prevalent: dict[str, np.ndarray]  # endpoint -> (kept,) diagnosed in the history: not at risk
    outcome: dict[str, np.ndarray]  # endpoint -> (kept,) the first event falls inside the horizon
    rollouts: Rollouts


def risk_cohort(
    model: HealthFormerModel,
    tokenizer: Tokenizer,
    settings: TwinReportSettings,
    *,
    every_other_height: bool = False,
    progress: Progress = lambda *args: None,
) -> RiskCohort:
    """The risk cohort's histories, outcomes and sampled futures (``progress``: a fifth simulating the cohort, the rest
    sampling). ``every_other_height``: withhold the height of every other participant (those at an odd place in the
    simulated cohort), as a cohort that does not record it would (the calibration fits obesity both ways)."""
    days = settings.history_days + settings.horizon_days
    cutoff = settings.history_days - 1
    simulated = simulated_records(
        participants=settings.participants,
        days=days,
        seed=settings.seed,
        intervention_probability=0.0,
        latent_on_day=cutoff,
        progress=lambda fraction, message: progress(0.2 * fraction, message),
    )
    kept = [i for i, record in enumerate(simulated.records) if not died_by(record, cutoff)]  # alive after that day
    histories = [record_until(simulated.records[i], cutoff) for i in kept]
    if every_other_height:  # by the participant's own place in the cohort: not moved by whoever else is left out
        for index, history in zip(kept, histories, strict=True):
            if index % 2:
                history.height_m = None
    rollouts = simulate(
        model,
        tokenizer,
        [tokenizer.encode(history) for history in histories],
        arms=[None],
        horizon_days=settings.horizon_days,
        samples=settings.samples,
        seed=settings.seed,
        max_new_tokens=320,
        grid_step_days=settings.horizon_days,
        risk_from_measurements=settings.risk_from_measurements,
        progress=lambda fraction, message: progress(0.2 + 0.8 * fraction, message),
    )
    prevalent, outcome = {}, {}
    for endpoint in ENDPOINTS:
        prevalent[endpoint] = np.array([any(e["name"] == endpoint for e in h.events) for h in histories], dtype=bool)
        outcome[endpoint] = np.array(
            [
                any(
                    e["name"] == endpoint and cutoff < e["day"] <= cutoff + settings.horizon_days
                    for e in simulated.records[i].events
                )
                for i in kept
            ],
            dtype=bool,
        )
    return RiskCohort(simulated, kept, histories, prevalent, outcome, rollouts)


def risk_table(
    model: HealthFormerModel,
    tokenizer: Tokenizer,
    settings: TwinReportSettings,
    *,
    progress: Progress = lambda *args: None,
) -> dict[str, Any]:
    progress(0.05, f"sampling {settings.samples} futures of {settings.horizon_days} days for the risk cohort")
    cohort = risk_cohort(model, tokenizer, settings, progress=lambda f, m: progress(0.05 + 0.85 * f, m))
    model_risk = cohort.rollouts.endpoint_risk()[:, 0]  # (participants, endpoints)
    scores = [
        clinical_scores(history, height_m=float(cohort.simulated.traits.height_m[i]))
        for i, history in zip(cohort.kept, cohort.histories, strict=True)
    ]
    rows = []
    for endpoint, (score_name, _) in ENDPOINT_SCORES.items():
        column = ENDPOINTS.index(endpoint)
        eligible = ~cohort.prevalent[endpoint]
        labels = cohort.outcome[endpoint][eligible].astype(int)
        score = np.array([s[endpoint] for s in scores])
        result = paired_bootstrap(
            labels,
            model_risk[eligible, column],
            score[eligible],
            resamples=settings.bootstrap,
            seed=settings.seed + column,
        )
        ceiling = None
        if endpoint in HARD_ENDPOINT_YEARLY_RATES:
            truth = paired_bootstrap(
                labels,
                true_state_hazard(cohort.simulated, cohort.kept, endpoint)[eligible],
                score[eligible],
                resamples=settings.bootstrap,
                seed=settings.seed + column,
            )
            ceiling = {
                "auroc": truth["model"],
                "auroc_ci": truth["model_ci"],
                "minus_score": truth["difference"],
                "minus_score_ci": truth["difference_ci"],
            }
        rows.append(
            {
                "endpoint": endpoint,
                "score_name": score_name,
                "true_state": ceiling,
                "at_risk": int(eligible.sum()),
                "events": int(labels.sum()),
                "observed_incidence": float(labels.mean()) if len(labels) else None,
                "predicted_incidence": float(model_risk[eligible, column].mean()) if eligible.any() else None,
                **result,
                "few_events": int(labels.sum()) < MIN_EVENTS,
                "win": result["difference"] is not None and result["difference"] > 0,
                "significant_win": result["difference"] is not None and bool(result["difference_ci"][0] > 0),
                "significant_loss": result["difference"] is not None and bool(result["difference_ci"][1] < 0),
            }
        )
    return {
        "rows": rows,
        "participants": len(cohort.kept),
        **risk_counts(rows),
        "calibration": getattr(model.config, "risk_calibration", {}) or {},
        "calibration_fit": getattr(model.config, "risk_calibration_fit", {}) or {},
        "settings": asdict(settings),
    }


def risk_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Wins and losses over the endpoints with at least MIN_EVENTS events (the others are shown, not counted)."""
    counted = [row for row in rows if not row["few_events"]]
    return {
        "min_events": MIN_EVENTS,
        "counted_endpoints": len(counted),
        "wins": sum(row["win"] for row in counted),
        "significant_wins": sum(row["significant_win"] for row in counted),
        "significant_losses": sum(row["significant_loss"] for row in counted),
        "wins_all_endpoints": sum(row["win"] for row in rows),
    }


def populations(traits: Traits) -> dict[str, np.ndarray]:
    base = baseline_biomarkers(traits)
    return {
        "general": np.ones(len(traits), dtype=bool),
        "older": traits.age_years >= 60,
        "high_ldl": base["ldl"] >= 150,
        "hypertensive": base["systolic_bp"] >= 135,
        "prediabetic": base["hba1c"] >= 5.7,
        "overweight": traits.bmi >= 27,
    }


def _varies(values: np.ndarray) -> bool:
    """More than rounding apart (an effect the same for everyone, 2,500 steps say, has no order to correlate with)."""
    return bool(values.size) and float(np.ptp(values)) > 1e-9 * max(1.0, float(np.abs(values).max()))


def _r(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return float(np.corrcoef(x, y)[0, 1]) if _varies(x) and _varies(y) else None


def trial_table(
    model: HealthFormerModel,
    tokenizer: Tokenizer,
    settings: TwinReportSettings,
    *,
    progress: Progress = lambda *args: None,
    trials: Sequence[tuple[str, str, str]] = TRIALS,
) -> dict[str, Any]:
    pool = sample_traits(6000, np.random.default_rng(np.random.SeedSequence(settings.seed + 1, spawn_key=(0,))))
    members = populations(pool)
    rows: list[dict[str, Any]] = []
    pooled: dict[str, tuple[list[float], list[float], list[float]]] = {}
    for number, (intervention, biomarker, population) in enumerate(trials):
        progress(
            number / len(trials), f"trial {number + 1} of {len(trials)}: {intervention} on {biomarker} ({population})"
        )
        rng = np.random.default_rng(np.random.SeedSequence(settings.seed + 2, spawn_key=(number,)))
        indices, histories, excluded = [], [], 0
        for index in rng.permutation(np.flatnonzero(members[population])):  # enrol until the trial is full
            # A year of usual care before randomization, wearable data included; like a real trial, people
            # already taking the treatment (usual care started it) are not eligible.
            stream = participant_stream(settings.seed + 3, int(index))
            timeline = simulate_timeline(pool, int(index), settings.history_days, stream)
            record = record_from_timeline(
                pool, int(index), timeline, days=settings.history_days, rng=stream, wearable=True
            )
            if any(event["name"] == intervention for event in record.events) or died_by(
                record, settings.history_days - 1
            ):
                excluded += 1
                continue
            indices.append(int(index))
            histories.append(tokenizer.encode(record))
            if len(indices) == settings.trial_participants:
                break
        trial = simulate_trial(pool.subset(np.array(indices)), intervention, biomarker, rng, days=settings.trial_days)
        rollouts = simulate(
            model,
            tokenizer,
            histories,
            arms=[None, intervention],
            horizon_days=settings.trial_days,
            samples=settings.trial_samples,
            seed=settings.seed + number,
            grid_step_days=settings.trial_days,
            max_new_tokens=128,
            readout=settings.readout,
        )
        column = BIOMARKER_NAMES.index(biomarker)
        predicted = (rollouts.expected[:, 1, :, -1, column] - rollouts.expected[:, 0, :, -1, column]).mean(
            axis=1
        )  # (participants,)
        predicted_mean = float(predicted.mean())
        low, high = trial.ci95
        ceiling = trait_ceiling(pool.subset(np.array(indices)), intervention, biomarker, settings.trial_days)
        pooled.setdefault(biomarker, ([], [], []))
        pooled[biomarker][0].extend(predicted.tolist())
        pooled[biomarker][1].extend(trial.true_individual_effect.tolist())
        pooled[biomarker][2].extend(ceiling.tolist())
        rows.append(
            {
                "intervention": intervention,
                "biomarker": biomarker,
                "unit": BIOMARKER_BY_NAME[biomarker].unit,
                "population": population,
                "participants": len(indices),
                "excluded_already_treated_or_dead": excluded,
                "trial_estimate": trial.estimated_effect,
                "trial_ci95": [low, high],
                "true_average_effect": trial.true_average_effect,
                "predicted_mean": predicted_mean,
                "direction_correct": bool(np.sign(predicted_mean) == np.sign(trial.true_average_effect)),
                "direction_matches_trial": bool(np.sign(predicted_mean) == np.sign(trial.estimated_effect)),
                "inside_ci": bool(low <= predicted_mean <= high),
                "individual_r": _r(predicted, trial.true_individual_effect),
                "individual_r_trait_ceiling": _r(ceiling, trial.true_individual_effect),
                # per participant: the twin's predicted effect, the true one, the biomarker's latest value in the
                # history the twin was given (None where never measured) and the trait ceiling's prediction: who it
                # ranks wrongly, and by what
                "individuals": [
                    {
                        "predicted": round(float(mine), 4),
                        "true": round(float(truth), 4),
                        "latest_measured": None if np.isnan(latest) else round(float(latest), 4),
                        "trait_ceiling": round(float(best), 4),
                    }
                    for mine, truth, best, latest in zip(
                        predicted,
                        trial.true_individual_effect,
                        ceiling,
                        [tokenizer.latest_values(history)[column] for history in histories],
                        strict=True,
                    )
                ],
            }
        )
    correlation = {name: r for name, (p, t, _) in pooled.items() if (r := _r(p, t)) is not None}
    ceilings = {name: r for name, (_, t, c) in pooled.items() if (r := _r(c, t)) is not None}
    return {
        "rows": rows,
        "direction_correct_pct": 100 * np.mean([row["direction_correct"] for row in rows]),
        "direction_matches_trial_pct": 100 * np.mean([row["direction_matches_trial"] for row in rows]),
        "inside_ci_pct": 100 * np.mean([row["inside_ci"] for row in rows]),
        "individual_r_by_biomarker": correlation,
        "individual_r_trait_ceiling_by_biomarker": ceilings,
        "settings": asdict(settings),
    }


def number_cell(value: float | None, decimals: int = 2) -> str:
    """A table cell: the value rounded, "—" where there is none."""
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{decimals}f}"


def risk_markdown(table: dict[str, Any], header: str) -> str:
    flagged = [row["endpoint"] for row in table["rows"] if row["few_events"]]
    lines = [
        header,
        "",
        f"{table['participants']} participants. Counting the {table['counted_endpoints']} endpoints with at least "
        f"{table['min_events']} events, the model wins on **{table['wins']} of {table['counted_endpoints']}** (AUROC point estimate); "
        f"{table['significant_wins']} significantly (95 % CI of the paired difference above 0), {table['significant_losses']} "
        f"significant losses."
        + (
            f" Endpoints with fewer than {table['min_events']} events (marked †: {', '.join(flagged)}) are shown but not counted; "
            f"on all {len(table['rows'])}, the model's point estimate is higher on {table['wins_all_endpoints']}."
            if flagged
            else ""
        ),
        "",
        "Bootstrap CIs are stratified: events and non-events are resampled separately, so every resample keeps the endpoint's events.",
        "",
        "True hazard (hard endpoints): the simulator's own hazard on each participant's true values at the prediction "
        "day, without measurement noise: near the best any model of the history can rank (the values keep moving "
        "over the horizon, so not a strict ceiling). Its AUROC minus the score's says how much room the score leaves.",
        "",
        "| endpoint | at risk | events | observed / predicted incidence | twin AUROC [95 % CI] | clinical score | score AUROC [95 % CI] | difference [95 % CI] | true hazard AUROC [95 % CI]; minus the score's [95 % CI] |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in table["rows"]:
        truth = row.get("true_state")
        ceiling = (
            f"{number_cell(truth['auroc'])} [{number_cell(truth['auroc_ci'][0])}, {number_cell(truth['auroc_ci'][1])}]; "
            f"{number_cell(truth['minus_score'], 3)} "
            f"[{number_cell(truth['minus_score_ci'][0], 3)}, {number_cell(truth['minus_score_ci'][1], 3)}]"
            if truth
            else "—"
        )
        lines.append(
            f"| {row['endpoint']}{' †' if row['few_events'] else ''} | {row['at_risk']} | {row['events']} | {number_cell(row['observed_incidence'], 3)} / "
            f"{number_cell(row['predicted_incidence'], 3)} | {number_cell(row['model'])} [{number_cell(row['model_ci'][0])}, {number_cell(row['model_ci'][1])}] | "
            f"{row['score_name']} | {number_cell(row['score'])} [{number_cell(row['score_ci'][0])}, {number_cell(row['score_ci'][1])}] | "
            f"{number_cell(row['difference'])} [{number_cell(row['difference_ci'][0])}, {number_cell(row['difference_ci'][1])}] | "
            f"{ceiling} |"
        )
    return "\n".join(lines) + "\n"


def trial_markdown(table: dict[str, Any], header: str) -> str:
    ceilings = table.get("individual_r_trait_ceiling_by_biomarker", {})
    correlation = ", ".join(
        f"{name} {value:.2f}" + (f" ({ceilings[name]:.2f})" if name in ceilings else "")
        for name, value in sorted(table["individual_r_by_biomarker"].items())
    )
    lines = [
        header,
        "",
        f"{len(table['rows'])} trials. Direction correct (vs the true average effect): **{table['direction_correct_pct']:.0f} %**; "
        f"(vs the trial's estimate: {table['direction_matches_trial_pct']:.0f} %); predicted mean inside the trial's 95 % CI: "
        f"**{table['inside_ci_pct']:.0f} %**.",
        "",
        f"Pearson r of predicted against true individual changes, pooled per biomarker (in parentheses, the trait "
        f"ceiling): {correlation}.",
        "",
        "Trait ceiling: the r of each participant's change at an average personal response, computed from their "
        "exact traits, of which a model sees age, sex and smoking and the biomarkers only through noisy measurements. "
        "The simulator scales every effect by a responsiveness drawn afresh for each trial, independent of the "
        "history, so in expectation no prediction correlates better with a trial's true changes (over 80 people, a "
        "trial's own ceiling varies by about 0.1 between draws).",
        "",
        "| intervention | biomarker | population | n | trial estimate [95 % CI] | true average | twin prediction | direction | in CI | individual r | trait ceiling |",
        "|---|---|---|---:|---:|---:|---:|:-:|:-:|---:|---:|",
    ]
    for row in table["rows"]:
        low, high = row["trial_ci95"]
        lines.append(
            f"| {row['intervention']} | {row['biomarker']} ({row['unit']}) | {row['population']} | {row['participants']} | "
            f"{row['trial_estimate']:.2f} [{low:.2f}, {high:.2f}] | {row['true_average_effect']:.2f} | {row['predicted_mean']:.2f} | "
            f"{'✓' if row['direction_correct'] else '✗'} | {'✓' if row['inside_ci'] else '✗'} | {number_cell(row['individual_r'])} | "
            f"{number_cell(row.get('individual_r_trait_ceiling'))} |"
        )
    return "\n".join(lines) + "\n"


def twin_report(
    model_dir: Path,
    settings: TwinReportSettings,
    *,
    output_dir: Path | None = None,
    progress: Progress = lambda *args: None,
    parts: tuple[str, ...] = ("risk", "trials"),
) -> dict[str, dict[str, Any]]:
    """Both tables (markdown + JSON in ``output_dir``); refuses the model's own training seed."""
    from modeling.ml.twin.calibration import calibration_sentence  # calibration.py reads this module
    from modeling.ml.twin.hazard import hazard_sentence
    from modeling.ml.twin.training import load_twin, training_runs, training_seeds

    if training_seeds(model_dir) & {settings.seed, settings.seed + 1, settings.seed + 3}:
        raise ValueError(
            f"seed {settings.seed} overlaps the model's training seed: use another so the participants are new"
        )
    load_before = [round(value, 2) for value in os.getloadavg()]  # was anything else heavy running?
    started = time.perf_counter()
    model, tokenizer = load_twin(model_dir, settings.device)
    if model.config.risk_calibration_fit.get("seed") == settings.seed:
        raise ValueError(f"seed {settings.seed} is the model's calibration cohort: use another")
    training = json.loads((Path(model_dir) / "training.json").read_text())
    header = (
        f"Model `{model_dir}` ({training['size']}, {training['parameters']:,} parameters, {training_runs(training)}); "
        f"evaluation seed {settings.seed}."
    )
    report: dict[str, dict[str, Any]] = {}
    if "risk" in parts:
        table = risk_table(model, tokenizer, settings, progress=lambda f, m: progress(0.5 * f, m))
        report["risk"] = {
            "table": table,
            "markdown": risk_markdown(
                table,
                f"# Digital twin: endpoint risk against clinical scores\n\n{header} A year of history, risk within the next "
                f"{settings.horizon_days} days from {settings.samples} sampled futures per participant; bootstrap: {settings.bootstrap} resamples."
                + hazard_sentence(model)
                + calibration_sentence(model, settings),
            ),
        }
    if "trials" in parts:
        table = trial_table(model, tokenizer, settings, progress=lambda f, m: progress(0.5 + 0.5 * f, m))
        report["trials"] = {
            "table": table,
            "markdown": trial_markdown(
                table,
                f"# Digital twin: randomized trials in the simulator\n\n{header} Each trial: {settings.trial_participants} participants "
                f"randomized 1:1 (people whose usual care had already started the treatment, or who died, during the year before are not "
                f"eligible), outcome change at {settings.trial_days} days; the twin predicts every participant's change from "
                f"{settings.trial_samples} paired futures (common random numbers) with and without the intervention token after a year of history; "
                f"the biomarker at the horizon is read as `{settings.readout}` (see `twin/generate.py`).",
            ),
        }
    if "fidelity" in parts:
        from modeling.ml.twin.fidelity import fidelity_markdown, fidelity_table  # fidelity.py reads this module

        table = fidelity_table(model, tokenizer, settings, progress=progress)
        report["fidelity"] = {
            "table": table,
            "markdown": fidelity_markdown(
                table,
                f"# Digital twin: does it know the person?\n\n{header} {table['participants']} new participants with a "
                f"year of usual care (seed {settings.seed + 4}), {table['simulated_participants']} of them alive at "
                "its end and simulated; see `fidelity_table` in `twin/fidelity.py`.",
            ),
        }
    run: dict[str, Any] = {
        "parts": list(report),
        "load_average_before": load_before,
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "wall_s": round(time.perf_counter() - started, 1),
    }
    for part in report.values():
        part["table"]["run"] = run
        part["markdown"] += (
            f"\nRun in {run['wall_s'] / 60:.1f} min ({', '.join(run['parts'])}); load average (1, 5, 15 min) "
            f"{run['load_average_before']} before, {run['load_average_after']} after.\n"
        )
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        for name, part in report.items():
            (output_dir / f"{name}.md").write_text(part["markdown"])
            (output_dir / f"{name}.json").write_text(json.dumps(part["table"], indent=1, default=float))
    return report
