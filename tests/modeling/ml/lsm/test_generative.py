"""Generative evaluation: the same hidden minutes for the model and every baseline."""

import numpy as np
import pytest
import torch

from modeling.ml.lsm.generative import _interpolate, _locf, evaluate_generation, task_mask
from modeling.ml.lsm.masking import patch_missing
from modeling.ml.lsm.model import LSMConfig, LSMForMaskedPretraining


def test_baselines_on_a_hand_made_series():
    values = np.array([[[1.0, 0.0, 0.0, 4.0]]])
    visible = np.array([[[True, False, False, True]]])
    assert _locf(values, visible, np.array([[9.0]])).tolist() == [[[1.0, 1.0, 1.0, 4.0]]]
    assert _interpolate(values, visible, np.array([[9.0]])).tolist() == [[[1.0, 2.0, 3.0, 4.0]]]


def test_forecasting_hides_the_end_of_the_day_on_every_channel():
    missing = torch.zeros(2, 27 * 24, dtype=torch.bool)
    hidden = task_mask("forecast", missing, 0.25, channel_groups=27, generator=torch.Generator().manual_seed(0))
    grid = hidden.reshape(2, 27, 24)
    assert grid[:, :, 18:].all() and not grid[:, :, :18].any()


@pytest.mark.parametrize("task", ["imputation", "gap", "forecast", "channel"])
def test_every_method_is_scored_on_the_same_hidden_observed_minutes(task, windows):
    values, observed = windows
    model = LSMForMaskedPretraining(LSMConfig.named("tiny"))
    previous = (values.roll(1, dims=0), observed.roll(1, dims=0))
    result = evaluate_generation(model, values, observed, task=task, fraction=0.2, previous=previous)
    assert result["hidden_observed_minutes"] > 0
    assert set(result["errors"]) == {
        "model",
        "last_value_carried_forward",
        "linear_interpolation",
        "window_mean",
        "seasonal_naive",
    }
    assert all(np.isfinite(error["mae"]) for error in result["errors"].values())
    # Interpolation beats the window mean on smooth gaps of physiological signals.
    if task == "imputation":
        assert result["errors"]["linear_interpolation"]["mae"] < result["errors"]["window_mean"]["mae"]
    assert patch_missing(observed, 1, 60).any()


def test_daily_metrics_come_from_the_filled_in_minutes_only():
    from modeling.ml.data.cohort import make_cohort
    from modeling.ml.data.spec import FEATURE_INDEX
    from modeling.ml.lsm.generative import DAILY_METRICS, daily_metric_errors

    minutes = make_cohort(participants=1, days=3, seed=4, history_days=3).participant(0).minutes
    seen, raw_truth = minutes.mask, np.nan_to_num(minutes.values)
    mean, std = np.full(27, 10.0), np.full(27, 2.0)
    truth = (raw_truth - mean[None, :, None]) / std[None, :, None]
    steps = FEATURE_INDEX["steps"]
    targets = np.zeros_like(seen)
    targets[:, steps, 600:900] = seen[:, steps, 600:900]  # hide the steps of 10:00-15:00
    doubled = truth.copy()
    doubled[:, steps] = (2 * raw_truth[:, steps] - 10.0) / 2.0
    errors = daily_metric_errors({"truth": truth, "doubled_steps": doubled}, raw_truth, mean, std, seen, targets)
    # Sleep is left out (no sleep-stage minute hidden); resting heart rate counts: it is computed from still minutes.
    assert errors["truth"] == {"steps": 0.0, "sleep_minutes": None, "resting_heart_rate_bpm": 0.0}
    hidden_steps = np.where(targets[:, steps], raw_truth[:, steps], 0).sum(axis=1)
    assert errors["doubled_steps"]["steps"] == pytest.approx(
        hidden_steps.mean(), rel=1e-4
    )  # doubling adds the hidden steps once
    assert set(errors["doubled_steps"]) == set(DAILY_METRICS)


def test_a_forecast_of_the_evening_does_not_count_toward_the_nights_sleep():
    from modeling.ml.data.cohort import make_cohort
    from modeling.ml.data.spec import FEATURE_INDEX
    from modeling.ml.lsm.generative import daily_metric_errors

    minutes = make_cohort(participants=1, days=2, seed=4, history_days=2).participant(0).minutes
    seen, raw_truth = minutes.mask, np.nan_to_num(minutes.values)
    targets = np.zeros_like(seen)
    targets[:, FEATURE_INDEX["sleep_stage"], 20 * 60 :] = seen[:, FEATURE_INDEX["sleep_stage"], 20 * 60 :]
    errors = daily_metric_errors(
        {"zeros": np.zeros_like(raw_truth)}, raw_truth, np.zeros(27), np.ones(27), seen, targets
    )
    assert (
        errors["zeros"]["sleep_minutes"] is None
    )  # the evening belongs to the next day's night, absent from a lone day
