"""The supervised-from-scratch baseline: the same encoder, trained end to end on one task."""

import numpy as np
import torch

from modeling.ml.lsm.evaluate import score
from modeling.ml.lsm.model import LSMConfig
from modeling.ml.lsm.supervised import SupervisedSettings, fit_predict

CONFIG = LSMConfig(channels=4, minutes=240, patch_minutes=60, dim=32, depth=1, heads=2, decoder_dim=32)


def _windows(participants: int, label_effect: float, seed: int = 0):
    """Two windows per participant; the label raises channel 0 by ``label_effect`` SDs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, participants)
    owner = np.repeat(np.arange(participants), 2)
    values = rng.normal(size=(len(owner), 4, 240)).astype(np.float32)
    values[:, 0] += label_effect * labels[owner][:, None]
    observed = torch.ones(values.shape, dtype=torch.bool)
    return torch.tensor(values), observed, owner, labels


def test_it_learns_a_label_the_signals_carry_and_scores_only_unseen_participants():
    values, observed, owner, labels = _windows(80, label_effect=1.0)
    train, test = np.arange(50), np.arange(50, 80)
    probabilities = fit_predict(
        CONFIG, values, observed, owner, labels, "binary", train, test, SupervisedSettings(steps=60)
    )
    assert probabilities.shape == (30, 2) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert score("binary", labels[test], probabilities, bootstrap=20)["auroc"][0] > 0.9


def test_regression_predictions_come_back_in_the_label_units():
    values, observed, owner, _ = _windows(80, label_effect=0.0)
    level = np.random.default_rng(1).normal(size=80)
    values[:, 0] += torch.tensor(level[owner], dtype=torch.float32)[:, None]
    targets = 120.0 + 15.0 * level  # e.g. a blood pressure in mmHg
    train, test = np.arange(50), np.arange(50, 80)
    predicted = fit_predict(
        CONFIG, values, observed, owner, targets, "regression", train, test, SupervisedSettings(steps=80)
    )
    assert predicted.shape == (30,)
    assert np.corrcoef(predicted, targets[test])[0, 1] > 0.8
    assert abs(predicted.mean() - targets[test].mean()) < 10


def test_few_shot_training_is_capped_at_ten_passes_over_its_windows():
    values, observed, owner, labels = _windows(40, label_effect=1.0)
    steps = []
    fit_predict(
        CONFIG,
        values,
        observed,
        owner,
        labels,
        "binary",
        np.array([0, 1, 2, 3]),
        np.arange(10, 20),
        SupervisedSettings(steps=500, progress=lambda step, total, metrics: steps.append(total)),
    )
    assert set(steps) == {5}  # 4 participants x 2 windows x 10 passes / 16 per batch


def test_never_worn_days_are_neither_trained_on_nor_averaged(monkeypatch):
    from modeling.ml.lsm import supervised

    values, observed, owner, labels = _windows(20, label_effect=1.0)
    observed[0] = False  # participant 0's first day: never worn
    seen = {}

    def recording_train(model, dataset, config, **kwargs):
        seen["windows"] = len(dataset)
        return {}

    monkeypatch.setattr(supervised, "train", recording_train)
    fit_predict(
        CONFIG, values, observed, owner, labels, "binary", np.arange(10), np.arange(10, 20), SupervisedSettings(steps=1)
    )
    assert seen["windows"] == 19


def test_normalization_statistics_are_those_of_the_trained_encoder():
    from modeling.ml.lsm.supervised import LabelledWindows, LSMForWindowPrediction, recalibrate

    values, observed, owner, labels = _windows(10, label_effect=1.0)
    model = LSMForWindowPrediction(CONFIG, 2)
    model.head[0].running_mean.fill_(50.0)  # stale statistics, as left by the early steps of training
    recalibrate(model, LabelledWindows(values, observed, torch.tensor(labels[owner])), 4, "cpu")
    with torch.no_grad():
        pooled = model.eval().backbone.pool(values, observed)
    torch.testing.assert_close(model.head[0].running_mean, pooled.mean(dim=0), atol=1e-5, rtol=1e-4)


def test_a_last_batch_of_one_window_joins_the_batch_before():
    """Batch normalization refuses a batch of one window in training mode: 9 windows in batches of 4 are read as 4
    and 5 (``lsm evaluate`` with the supervised baseline failed on such a count)."""
    from modeling.ml.lsm.supervised import LabelledWindows, LSMForWindowPrediction, recalibrate

    values, observed, owner, labels = _windows(10, label_effect=1.0)
    values, observed, owner = values[:9], observed[:9], owner[:9]
    model = LSMForWindowPrediction(CONFIG, 2)
    model.head[0].running_mean.fill_(50.0)
    recalibrate(model, LabelledWindows(values, observed, torch.tensor(labels[owner])), 4, "cpu")
    with torch.no_grad():
        pooled = model.eval().backbone.pool(values, observed)
    expected = (pooled[:4].mean(dim=0) + pooled[4:].mean(dim=0)) / 2  # the plain average over the two batches
    torch.testing.assert_close(model.head[0].running_mean, expected, atol=1e-5, rtol=1e-4)
