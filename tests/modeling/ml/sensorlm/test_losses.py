"""SensorLM's contrastive losses across processes: two CPU processes (gloo) holding half a batch each train exactly as
one process holding all of it — the same loss and the same gradients — so under torchrun every process sees the
global batch's negatives, not only its own."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from modeling.ml.sensorlm.losses import clip_loss, siglip_loss

BATCH, DIM, WORLD = 8, 16, 2


def features(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    sensor = F.normalize(torch.randn(BATCH, DIM, generator=generator), dim=-1)
    text = F.normalize(torch.randn(BATCH, DIM, generator=generator), dim=-1)
    return sensor, text


def loss_of(name: str, sensor, text):
    scale, bias = torch.tensor(10.0), torch.tensor(-5.0)
    return clip_loss(sensor, text, scale) if name == "clip" else siglip_loss(sensor, text, scale, bias)


def one_process(name: str):
    sensor, text = (tensor.clone().requires_grad_() for tensor in features())
    loss = loss_of(name, sensor, text)
    loss.backward()
    return loss.detach(), sensor.grad, text.grad


def _rank(rank: int, name: str, init_file: str, results):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        sensor, text = (tensor[rows].clone().requires_grad_() for tensor in features())
        loss = loss_of(name, sensor, text)
        loss.backward()
        # DDP averages the processes' gradients; the features' gradients here are what that average starts from.
        results[rank] = (loss.detach(), sensor.grad / WORLD, text.grad / WORLD)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_two_processes_with_half_a_batch_each_equal_one_process_with_all_of_it(name, tmp_path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_rank, args=(name, str(tmp_path / "rendezvous"), results), nprocs=WORLD, join=True)
        results = dict(results)
    loss, sensor_grad, text_grad = one_process(name)
    torch.testing.assert_close(torch.stack([results[rank][0] for rank in range(WORLD)]).mean(), loss)
    torch.testing.assert_close(torch.cat([results[rank][1] for rank in range(WORLD)]), sensor_grad)
    torch.testing.assert_close(torch.cat([results[rank][2] for rank in range(WORLD)]), text_grad)


def test_without_the_gather_each_process_would_see_only_its_own_negatives():
    """What the test above guards against: the loss of half a batch alone is not the global batch's."""
    sensor, text = features()
    halves = torch.stack([loss_of("clip", sensor[:4], text[:4]), loss_of("clip", sensor[4:], text[4:])]).mean()
    assert not torch.isclose(halves, loss_of("clip", sensor, text))
