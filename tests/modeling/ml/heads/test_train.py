"""A head spec trains on some participants and is scored on others, reproducibly."""

import json

import numpy as np
import torch

from modeling.ml.heads.spec import parse_spec
from modeling.ml.heads.train import TokenWindows, fit_and_score


def _data(participants: int = 60, seed: int = 0):
    """Two windows per participant on a 2 x 6 grid of 16-dim tokens; the label shifts the tokens of time step 3."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, participants)
    owner = np.repeat(np.arange(participants), 2)
    tokens = rng.normal(size=(len(owner), 12, 16)).astype(np.float32)
    tokens[:, [3, 9], :4] += 1.5 * labels[owner][:, None, None]
    present = np.ones((len(owner), 12), bool)
    present[::5, 0] = False
    tokens[~present] = 0
    return TokenWindows(torch.tensor(tokens), torch.tensor(present), owner, (2, 6)), labels


def test_each_architecture_learns_a_signal_on_unseen_participants():
    data, labels = _data()
    train, scored = np.arange(40), np.arange(40, 60)
    for raw in (
        '{"type": "linear"}',
        '{"type": "mlp"}',
        '{"type": "attention_pool", "heads": 2}',
        '{"type": "temporal_conv"}',
    ):
        fitted = fit_and_score(
            parse_spec({"head": json.loads(raw), "training": {"epochs": 30, "learning_rate": 0.01}}),
            data,
            labels,
            "binary",
            train,
            scored,
        )
        assert fitted.predictions.shape == (20, 2) and fitted.score > 0.85, raw


def test_a_seeded_fit_is_reproducible_and_regression_comes_back_in_label_units():
    data, labels = _data()
    values = 100 + 10 * labels + np.random.default_rng(1).normal(0, 1, len(labels))
    spec = parse_spec('{"head": {"type": "mlp"}, "training": {"epochs": 20, "learning_rate": 0.01}}')
    first = fit_and_score(spec, data, values, "regression", np.arange(40), np.arange(40, 60), seed=3)
    second = fit_and_score(spec, data, values, "regression", np.arange(40), np.arange(40, 60), seed=3)
    np.testing.assert_array_equal(first.predictions, second.predictions)
    assert first.score > 0.7 and 95 < first.predictions.mean() < 115


def test_a_day_without_data_does_not_move_a_persons_prediction():
    """Unworn days (no patch present) are left out of the per-person average; with no worn day, the prior output stands."""
    from modeling.ml.heads.train import fit_head, predict_people

    data, labels = _data()
    trained = fit_head(
        parse_spec('{"head": {"type": "linear"}, "training": {"epochs": 10}}'),
        data,
        labels,
        "binary",
        np.arange(40),
        seed=0,
    )
    unworn_tokens, unworn_present = torch.zeros(1, 12, 16), torch.zeros(1, 12, dtype=torch.bool)
    padded = TokenWindows(
        torch.cat([data.tokens, unworn_tokens, unworn_tokens]),
        torch.cat([data.present, unworn_present, unworn_present]),
        np.concatenate([data.owner, [45, 99]]),
        data.grid,
    )
    np.testing.assert_allclose(
        predict_people(trained, padded, np.array([45])), predict_people(trained, data, np.array([45])), rtol=1e-6
    )
    assert np.isfinite(predict_people(trained, padded, np.array([99]))).all()  # nothing worn at all: still a prediction
