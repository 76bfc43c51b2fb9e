"""Every split of the model library is by participant: no participant has windows on both sides."""

import numpy as np
import pytest
import torch

from modeling.ml.data.cohort import participant_split
from modeling.ml.lsm import pretrain as pretrain_module
from modeling.ml.lsm.supervised import SupervisedSettings, fit_predict
from modeling.ml.train import TrainConfig


def test_participant_split_is_disjoint_complete_and_reproducible():
    train, held_out = participant_split(50, 0.3, seed=4)
    assert len(held_out) == 15 and not set(train) & set(held_out) and sorted([*train, *held_out]) == list(range(50))
    assert np.array_equal(participant_split(50, 0.3, seed=4)[1], held_out)
    assert not np.array_equal(participant_split(50, 0.3, seed=5)[1], held_out)


def test_pretraining_never_trains_on_a_held_out_participants_windows(tmp_path, monkeypatch):
    values, observed, owner, _ = pretrain_module.simulated_windows(participants=10, days=2, seed=3)
    seen = {}

    def recording_train(model, dataset, config, **kwargs):
        seen["values"] = dataset.values
        return {"final": {}, "resumed_from_step": 0}

    monkeypatch.setattr(pretrain_module, "train", recording_train)
    result = pretrain_module.pretrain(
        size="tiny", participants=10, days=2, seed=3, train_config=TrainConfig(steps=1), output_dir=tmp_path
    )
    _, held_out = participant_split(10, 0.2, seed=3)
    assert result["held_out_participants"] == len(held_out) == 2
    trained_on = seen["values"]
    assert trained_on.shape[0] == result["train_windows"] == 16
    mean, std = pretrain_module.channel_statistics(
        values[~np.isin(owner, held_out)], observed[~np.isin(owner, held_out)]
    )
    standardized = pretrain_module.standardize(
        torch.tensor(values), torch.tensor(observed), torch.tensor(mean), torch.tensor(std)
    )
    for window in np.flatnonzero(np.isin(owner, held_out)):  # no held-out day is among the training windows
        assert not any(torch.equal(standardized[window], row) for row in trained_on)


def test_the_supervised_baseline_trains_only_on_its_training_participants(monkeypatch):
    from modeling.ml.lsm import supervised
    from modeling.ml.lsm.model import LSMConfig

    owner = np.repeat(np.arange(6), 2)
    values = torch.arange(12, dtype=torch.float32)[:, None, None].expand(12, 1, 60).contiguous()  # window i is all i
    seen = {}

    def recording_train(model, dataset, config, **kwargs):
        seen["windows"] = sorted({int(v) for v in dataset.values[:, 0, 0]})
        return {}

    monkeypatch.setattr(supervised, "train", recording_train)
    config = LSMConfig(channels=1, minutes=60, patch_minutes=30, dim=16, depth=1, heads=1, decoder_dim=16)
    fit_predict(
        config,
        values,
        torch.ones_like(values, dtype=torch.bool),
        owner,
        np.array([0, 1, 0, 1, 0, 1]),
        "binary",
        np.array([0, 1, 3]),
        np.array([2, 4, 5]),
        SupervisedSettings(steps=1),
    )
    assert seen["windows"] == [0, 1, 2, 3, 6, 7]  # the windows of participants 0, 1 and 3 only


def test_evaluating_on_the_pretraining_seed_is_refused(tmp_path):
    from modeling.ml.lsm.evaluate import represent
    from modeling.ml.lsm.pretrain import check_new_participants

    result = pretrain_module.pretrain(
        size="tiny",
        participants=5,
        days=1,
        seed=7,
        train_config=TrainConfig(steps=1, batch_size=2),
        output_dir=tmp_path,
    )
    with pytest.raises(ValueError, match="pre-training seed"):
        represent(result["model_dir"], participants=3, days=1, seed=7)
    check_new_participants(result["model_dir"], 8)  # another seed: new people
