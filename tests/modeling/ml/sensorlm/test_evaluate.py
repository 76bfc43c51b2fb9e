"""The evaluation refuses participants that any model in the chain trained on; the chain keeps the foundation model's
encoder as it was trained."""

import json
from pathlib import Path

import pytest

from modeling.ml.lsm.pretrain import pretrain
from modeling.ml.sensorlm.evaluate import EvaluationSettings, evaluate
from modeling.ml.sensorlm.model import load_sensorlm
from modeling.ml.sensorlm.train import train_sensorlm
from modeling.ml.train import TrainConfig


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A foundation model pre-trained on seed 7 with 10-minute x 9-channel patches, and a sensor-language model trained
    on seed 3 from it."""
    folder = tmp_path_factory.mktemp("chain")
    lsm = pretrain(
        size="tiny",
        participants=5,
        days=1,
        seed=7,
        train_config=TrainConfig(steps=1, batch_size=2),
        output_dir=folder / "lsm",
        patch_minutes=10,  # the committed foundation model's patches, not the tiny sensor tower's default (60 x 1)
        patch_channels=9,
    )
    sensorlm = train_sensorlm(
        size="tiny",
        participants=6,
        days=1,
        seed=3,
        train_config=TrainConfig(steps=1, batch_size=4),
        output_dir=folder / "sensorlm",
        loss="clip",
        init_from=lsm["model_dir"],
        device="cpu",
        vocabulary_size=200,
    )
    return lsm["model_dir"], sensorlm["model_dir"]


@pytest.mark.parametrize(
    ("seed", "refusal"),
    [
        (3, "model's pre-training seed"),  # the sensor-language model's own participants
        (7, "initialized from"),  # the participants of the foundation model its encoder started from
    ],
)
def test_participants_any_model_in_the_chain_trained_on_are_refused(chain, seed, refusal):
    _, sensorlm_dir = chain
    with pytest.raises(ValueError, match=refusal):
        evaluate(sensorlm_dir, EvaluationSettings(participants=4, days=1, seed=seed))


def test_the_supervised_reference_s_participants_are_refused_too(chain, tmp_path):
    lsm_dir, _ = chain
    other = train_sensorlm(
        size="tiny",
        participants=6,
        days=1,
        seed=4,
        train_config=TrainConfig(steps=1, batch_size=4),
        output_dir=tmp_path,
        loss="clip",
        device="cpu",
        vocabulary_size=200,
    )
    with pytest.raises(ValueError, match="pre-training seed"):
        evaluate(other["model_dir"], EvaluationSettings(participants=4, days=1, seed=7, lsm_model=lsm_dir))


def test_a_tower_started_from_a_foundation_model_takes_its_architecture_and_normalization(chain):
    """Starting from a foundation model must not be refused for a geometry the user never chose, and its weights must
    see the inputs they were trained on (its channel normalization, not one fitted afresh)."""
    lsm_dir, sensorlm_dir = chain
    model, _, mean, std = load_sensorlm(sensorlm_dir)
    assert (model.config.patch_minutes, model.config.patch_channels) == (10, 9)
    normalization = json.loads((Path(lsm_dir) / "normalization.json").read_text())
    assert mean.tolist() == pytest.approx(normalization["mean"]) and std.tolist() == pytest.approx(normalization["std"])
