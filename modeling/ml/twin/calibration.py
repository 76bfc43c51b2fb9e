"""Calibration in the large of the twin's endpoint risks: one factor per endpoint, observed over predicted events on
a cohort of its own, stored in the model's config.json so the site, the demo and the reports apply the same one
(``risk.calibration_factors``)."""

import json
from pathlib import Path
from typing import Any

import numpy as np

from modeling.ml.data.clinical import ENDPOINTS
from modeling.ml.twin.evaluate import MIN_EVENTS, Progress, TwinReportSettings, risk_cohort
from modeling.ml.twin.model import HealthFormerModel
from modeling.ml.twin.risk import calibration_factors
from modeling.ml.twin.tokens import Tokenizer


def risk_calibration(
    model: HealthFormerModel,
    tokenizer: Tokenizer,
    settings: TwinReportSettings,
    *,
    min_events: int = MIN_EVENTS,
    progress: Progress = lambda *args: None,
) -> dict[str, Any]:
    """Calibration in the large on a cohort of its own (``settings.seed``, never a report's): per endpoint, the
    observed events over the summed uncalibrated risks of the participants at risk. An endpoint with fewer than
    ``min_events`` events keeps a factor of 1: too few to tell.

    Where obesity is read from the weight (``settings.risk_from_measurements``), it is read so only for participants
    whose height is known: every other participant's height is withheld here, and obesity gets one factor from each
    half (``factors`` with the height, ``without_height`` from its diagnosis token)."""
    by_weight = "obesity" in settings.risk_from_measurements
    cohort = risk_cohort(model, tokenizer, settings, every_other_height=by_weight, progress=progress)
    model_risk = cohort.rollouts.endpoint_risk(calibrated=False)[:, 0]
    height_known = np.array([history.height_m is not None for history in cohort.histories])

    def fit(column: int, eligible: np.ndarray) -> dict[str, Any]:
        events = int(cohort.outcome[ENDPOINTS[column]][eligible].sum())
        predicted = float(model_risk[eligible, column].sum())
        factor = events / predicted if events >= min_events and predicted > 0 else 1.0
        return {"at_risk": int(eligible.sum()), "events": events, "predicted": predicted, "factor": factor}

    endpoints, without_height = {}, {}
    for column, endpoint in enumerate(ENDPOINTS):
        eligible = ~cohort.prevalent[endpoint]
        if by_weight and endpoint == "obesity":
            endpoints[endpoint] = fit(column, eligible & height_known)
            without_height[endpoint] = fit(column, eligible & ~height_known)
        else:
            endpoints[endpoint] = fit(column, eligible)
    return {
        "seed": settings.seed,
        "participants": len(cohort.kept),
        "min_events": min_events,
        "endpoints": endpoints,
        "factors": {endpoint: row["factor"] for endpoint, row in endpoints.items()},
        "endpoints_without_height": without_height,
        "without_height": {endpoint: row["factor"] for endpoint, row in without_height.items()},
    }


def calibrate_twin(
    model_dir: Path,
    settings: TwinReportSettings | None = None,
    *,
    min_events: int = MIN_EVENTS,
    progress: Progress = lambda *args: None,
) -> dict[str, Any]:
    """:func:`risk_calibration` of the model in ``model_dir`` on the risk cohort of ``settings`` (default: 4,000 new
    people of seed 1; never its training seed), written into its config.json (``risk_calibration``: the site, the
    demo and the reports read it from there) and, with the events and predictions behind each factor, into
    calibration.json."""
    from modeling.ml.twin.training import load_twin, training_seeds

    settings = settings or TwinReportSettings(seed=1)
    if settings.seed in training_seeds(model_dir):
        raise ValueError(f"seed {settings.seed} is the model's training seed: calibrate on participants it never saw")
    model, tokenizer = load_twin(model_dir, settings.device)
    model.config.risk_calibration, model.config.risk_calibration_fit = {}, {}
    model.config.risk_calibration_without_height = {}
    calibration = risk_calibration(model, tokenizer, settings, min_events=min_events, progress=progress)
    model.config.risk_calibration = calibration["factors"]
    model.config.risk_calibration_without_height = calibration["without_height"]
    model.config.risk_calibration_fit = {
        "seed": settings.seed,
        "participants": calibration["participants"],
        "min_events": min_events,
        "horizon_days": settings.horizon_days,
        "risk_from_measurements": list(settings.risk_from_measurements),
        "hazard_endpoints": list(model.config.hazard_endpoints),
    }
    model.config.save_pretrained(model_dir)
    (Path(model_dir) / "calibration.json").write_text(json.dumps(calibration, indent=1))
    return calibration


def calibration_sentence(model: HealthFormerModel, settings: TwinReportSettings) -> str:
    """What the risk table's calibration was, from the model's config (what ``simulate`` applies)."""
    fit = model.config.risk_calibration_fit
    if calibration_factors(model, settings.risk_from_measurements) is None:
        return " Risks uncalibrated." + (
            " (The model's calibration was fitted on risks read otherwise.)" if fit else ""
        )
    factors = ", ".join(
        f"{endpoint} {factor:.2f}" for endpoint, factor in model.config.risk_calibration.items() if factor != 1.0
    )
    without = model.config.risk_calibration_without_height
    apart = (
        " Obesity is read from the sampled weight against each person's height (BMI 30), where the height is known: "
        "its factor is fitted on the half of that cohort whose height was kept; the other half's, "
        + ", ".join(f"{endpoint} {factor:.2f}" for endpoint, factor in without.items())
        + ", applies where the height is unknown (read from the diagnosis token)."
        if without
        else ""
    )
    return (
        f" Risks calibrated in the large on {fit['participants']} other new participants (seed {fit['seed']}, "
        f"{fit['horizon_days']} days; `twin calibrate`): observed over predicted events, {factors}; endpoints with "
        f"fewer than {fit['min_events']} events there keep 1.{apart} A factor leaves the ranking, and so the AUROC, "
        "as it was."
    )
