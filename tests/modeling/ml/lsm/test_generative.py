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
    assert set(result["errors"]) == {"model", "last_value_carried_forward", "linear_interpolation", "window_mean", "seasonal_naive"}
    assert all(np.isfinite(error["mae"]) for error in result["errors"].values())
    # Interpolation beats the window mean on smooth gaps of physiological signals.
    if task == "imputation":
        assert result["errors"]["linear_interpolation"]["mae"] < result["errors"]["window_mean"]["mae"]
    assert patch_missing(observed, 1, 60).any()
