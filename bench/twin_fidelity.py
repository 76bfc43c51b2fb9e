"""``python -m bench twin_fidelity``: re-check the committed digital twin (issue 25) on participants it never saw.

Three questions, each on a fresh seed (``TWIN_FIDELITY_SEED``, default: from the clock), so the figures are not
tuned to one cohort:

- **Does a simulation start where the person is?** On new participants with a year of usual care, the simulation's
  day-0 value and the value a visit 14 days later would show, against the latest measured value, as median absolute
  differences in units of the simulator's measurement SD (``fidelity.fidelity_table``). ``start_error_over_noise``
  is the largest day-0 figure over the biomarkers; below 1 is within the measurement noise.
- **Are the trial effects right?** The 23 randomized trials of ``docs/results/twin-tiny/trials.md`` run afresh
  (``evaluate.trial_table``): the share with the predicted mean inside the trial's 95 % CI and with the right sign.
- **Does it see dyslipidaemia coming?** Risk within a year against the latest LDL, the one-measurement score that
  the twin lost to by 0.28 AUROC before issue 25 (``evaluate.risk_table``, read from its row).

Sizes (``TWIN_FIDELITY_RISK_PARTICIPANTS`` and friends) are chosen to finish in about 15 minutes on 2 cores.
"""

import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The committed results model (docs/results/twin-tiny/README.md says how it was trained); the demo's weights otherwise.
MODELS = (ROOT / "docs/results/twin-tiny/model", ROOT / "modeling/demo_weights/twin")


def run() -> dict:
    from modeling.ml.twin.evaluate import TwinReportSettings, risk_table, trial_table
    from modeling.ml.twin.fidelity import fidelity_table
    from modeling.ml.twin.training import load_twin, training_seeds

    model_dir = next(path for path in MODELS if (path / "model.safetensors").exists())
    seed = int(os.environ.get("TWIN_FIDELITY_SEED", int(time.time()) % 100_000 + 10_000))
    settings = TwinReportSettings(
        seed=seed,
        participants=int(os.environ.get("TWIN_FIDELITY_RISK_PARTICIPANTS", 4000)),
        bootstrap=int(os.environ.get("TWIN_FIDELITY_BOOTSTRAP", 200)),
    )
    model, tokenizer = load_twin(model_dir)
    used = {*training_seeds(model_dir), model.config.risk_calibration_fit.get("seed")}
    if seed in used:
        raise SystemExit(f"TWIN_FIDELITY_SEED {seed} is the model's training or calibration seed: use another")
    timings = {}

    started = time.perf_counter()
    fidelity = fidelity_table(
        model, tokenizer, settings, participants=int(os.environ.get("TWIN_FIDELITY_PARTICIPANTS", 200))
    )
    timings["fidelity_seconds"] = round(time.perf_counter() - started, 1)

    started = time.perf_counter()
    trials = trial_table(model, tokenizer, settings)
    timings["trials_seconds"] = round(time.perf_counter() - started, 1)

    started = time.perf_counter()
    risk = risk_table(model, tokenizer, settings)
    timings["risk_seconds"] = round(time.perf_counter() - started, 1)
    dyslipidaemia = next(row for row in risk["rows"] if row["endpoint"] == "dyslipidaemia")

    return {
        "model": str(model_dir.relative_to(ROOT)),
        "seed": seed,
        "start_error_over_noise": max(row["day0_median_abs_sd"] for row in fidelity["rows"]),
        "visit_14_days_error_over_noise": {row["biomarker"]: row["visit_median_abs_sd"] for row in fidelity["rows"]},
        "fidelity_participants": fidelity["participants"],
        "trials": len(trials["rows"]),
        "trials_in_ci": trials["inside_ci_pct"] / 100,
        "trials_direction": trials["direction_correct_pct"] / 100,
        "trials_individual_r": trials["individual_r_by_biomarker"],
        "risk_participants": risk["participants"],
        "dyslipidaemia_events": dyslipidaemia["events"],
        "dyslipidaemia_auroc_twin": dyslipidaemia["model"],
        "dyslipidaemia_auroc_latest_ldl": dyslipidaemia["score"],
        "dyslipidaemia_difference_ci": dyslipidaemia["difference_ci"],
        "dyslipidaemia_incidence_predicted_over_observed": (
            dyslipidaemia["predicted_incidence"] / dyslipidaemia["observed_incidence"]
            if dyslipidaemia["observed_incidence"]
            else None
        ),
        "risk_endpoints_won": f"{risk['wins']} of {risk['counted_endpoints']}",
        **timings,
    }
