"""The shared trainer: an interrupted run resumes to exactly the losses of an uninterrupted one."""

import json

import pytest
import torch

from modeling.ml.lsm.model import LSMConfig, LSMForMaskedPretraining
from modeling.ml.train import TrainConfig, WindowDataset, train


class Interrupted(Exception):
    pass


def losses(path):
    return [json.loads(line)["loss"] for line in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_loss_sequence(tmp_path, windows):
    values, observed = windows
    dataset = WindowDataset(values, observed)
    config = TrainConfig(
        steps=12, batch_size=4, learning_rate=2e-3, warmup_steps=3, checkpoint_every=3, log_every=1, seed=7
    )

    def fresh_model():
        torch.manual_seed(0)
        return LSMForMaskedPretraining(LSMConfig.named("tiny"))

    train(fresh_model(), dataset, config, output_dir=tmp_path / "straight", device="cpu")

    def stop_after_six(step, total, metrics):
        if step == 7:  # the process dies during step 7, after the checkpoint of step 6
            raise Interrupted()

    with pytest.raises(Interrupted):
        train(fresh_model(), dataset, config, output_dir=tmp_path / "resumed", device="cpu", progress=stop_after_six)
    result = train(fresh_model(), dataset, config, output_dir=tmp_path / "resumed", device="cpu")
    assert result["resumed_from_step"] == 6
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert resumed[:7] == straight[:7]  # steps 1-7 of the first attempt (7 was logged before the kill)
    assert resumed[7:] == pytest.approx(straight[6:], abs=0, rel=1e-6)  # steps 7-12 again, identical


class Payload:
    """What a crafted checkpoint carries: an object whose unpickling runs code."""

    def __reduce__(self):
        return (print, ("this ran while loading a checkpoint",))


def test_a_checkpoint_that_carries_code_is_refused_not_run(tmp_path, windows, capsys):
    import pickle

    values, observed = windows
    torch.save({"step": 0, "model": Payload()}, tmp_path / "training_state.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        train(
            LSMForMaskedPretraining(LSMConfig.named("tiny")),
            WindowDataset(values, observed),
            TrainConfig(steps=1, batch_size=4),
            output_dir=tmp_path,
            device="cpu",
        )
    assert "this ran" not in capsys.readouterr().out


def test_early_stopping_keeps_the_best_weights_and_stops_after_its_patience(tmp_path, windows):
    values, observed = windows
    torch.manual_seed(0)
    model = LSMForMaskedPretraining(LSMConfig.named("tiny"))
    held_out = iter([0.9, 0.5, 0.6, 0.55, 0.7, 0.1])  # best at the second evaluation (step 4), then 3 worse
    weights_at: dict[int, dict[str, torch.Tensor]] = {}
    step_of = {"step": 0}

    def record(step, total, metrics):
        step_of["step"] = step
        weights_at[step] = {name: value.clone() for name, value in model.state_dict().items()}

    config = TrainConfig(steps=20, batch_size=4, warmup_steps=1, validate_every=2, patience=3, checkpoint_every=100)
    result = train(
        model,
        WindowDataset(values, observed),
        config,
        output_dir=tmp_path,
        device="cpu",
        progress=record,
        validate=lambda: next(held_out),
    )
    assert (result["best_step"], result["best_validation_loss"], result["stopped_at_step"]) == (4, 0.5, 10)
    assert step_of["step"] == 10  # the sixth evaluation (0.1) never ran
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights_at[4][name]), name
    assert not all(torch.equal(value, weights_at[10][name]) for name, value in model.state_dict().items())
