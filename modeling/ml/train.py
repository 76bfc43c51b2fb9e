"""One trainer for every model family: AdamW, warm-up + cosine schedule, gradient clipping and
accumulation, bf16 autocast on CUDA, optional torch.compile, DDP under torchrun, periodic
checkpoints with exact resume (model, optimizer, scheduler, RNG and data position), metrics as
JSON lines.

A model is any ``nn.Module`` whose ``forward(**batch)`` returns an object with ``.loss``; a
dataset is anything with ``batch(indices) -> dict`` and ``__len__``. Batches are drawn with a
seeded generator that is checkpointed, so a resumed run sees the same batches as an
uninterrupted one and produces the same losses.
"""

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import torch
import torch.distributed as dist
from torch import nn


class Dataset(Protocol):
    """What ``train`` draws batches from: ``batch(indices)`` gives the model's keyword arguments."""

    def __len__(self) -> int: ...

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]: ...


@dataclass
class TrainConfig:
    steps: int = 200
    batch_size: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 20
    grad_clip: float = 1.0
    accumulation: int = 1
    checkpoint_every: int = 50
    log_every: int = 10
    validate_every: int = 0  # steps between held-out evaluations (0: only the last step, when validate is given)
    patience: int = 0  # stop after this many evaluations without a better held-out loss, keeping the best (0: never)
    seed: int = 0
    compile: bool = False


def choose_device(requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def _distributed() -> tuple[int, int]:
    """(rank, world size); initializes the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer, *, warmup: int, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    *,
    output_dir: Path,
    device: str = "auto",
    progress: Callable[[int, int, dict[str, float]], None] = lambda step, total, metrics: None,
    validate: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Train ``model`` for ``config.steps`` optimizer steps, resuming from ``output_dir`` if a checkpoint is there.

    ``validate`` (the held-out loss, computed without gradients) is logged as ``validation_loss`` every
    ``config.validate_every`` steps and at the last one: the curve that says whether training was long enough.
    With ``config.patience``, training stops after that many evaluations without a lower held-out loss, and the
    model ends with the weights of its best evaluation (early stopping: a run on little data stops where it
    starts to overfit instead of being scored after it)."""
    device = choose_device(device)
    rank, world = _distributed()
    output_dir.mkdir(parents=True, exist_ok=True)
    model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, betas=(0.9, 0.95)
    )
    scheduler = cosine_with_warmup(optimizer, warmup=config.warmup_steps, total=config.steps)
    generator = torch.Generator().manual_seed(config.seed + rank)
    torch.manual_seed(config.seed + rank)
    state_path = output_dir / "training_state.pt"
    step = 0
    best: dict[str, Any] = {"loss": math.inf, "step": 0, "stale": 0, "model": None}  # for early stopping
    if state_path.exists():
        # weights_only: a checkpoint file is data, never code (a crafted pickle would run on load).
        state = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        best = state.get("best", best)
    resumed_from = step
    wrapped: Callable[..., Any] = model  # the module, or its DDP or compiled wrapper: only called
    if world > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[torch.cuda.current_device()] if device == "cuda" else None
        )
    if config.compile:
        wrapped = torch.compile(wrapped)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    )
    metrics_path = output_dir / "metrics.jsonl"
    started = time.perf_counter()
    metrics: dict[str, float] = {}
    model.train()
    while step < config.steps:
        optimizer.zero_grad(set_to_none=True)
        total_loss = 0.0
        for _ in range(config.accumulation):
            indices = torch.randint(len(dataset), (config.batch_size,), generator=generator)
            batch = {key: value.to(device) for key, value in dataset.batch(indices).items()}
            with autocast:
                loss = wrapped(**batch, generator=generator).loss / config.accumulation
            loss.backward()
            total_loss += loss.item()
        grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip))
        optimizer.step()
        scheduler.step()
        step += 1
        metrics = {
            "step": step,
            "loss": total_loss,
            "grad_norm": grad_norm,
            "lr": cast(float, scheduler.get_last_lr()[0]),  # a float: the optimizer's lr is config.learning_rate
            "windows_per_s": round(
                (step - resumed_from)
                * config.batch_size
                * config.accumulation
                * world
                / (time.perf_counter() - started),
                2,
            ),
        }
        if validate is not None and (
            step == config.steps or (config.validate_every and step % config.validate_every == 0)
        ):
            model.eval()
            with torch.no_grad():
                metrics["validation_loss"] = float(validate())
            model.train()
            if config.patience:
                if metrics["validation_loss"] < best["loss"]:
                    best = {"loss": metrics["validation_loss"], "step": step, "stale": 0, "model": _copy(model)}
                else:
                    best["stale"] += 1
                metrics["best_step"] = best["step"]
        if rank == 0:
            if step % config.log_every == 0 or step == config.steps or "validation_loss" in metrics:
                with metrics_path.open("a") as log:
                    log.write(json.dumps(metrics) + "\n")
            if step % config.checkpoint_every == 0 or step == config.steps:
                partial = output_dir / "training_state.partial"
                torch.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "generator": generator.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "step": step,
                        "config": asdict(config),
                        **({"best": best} if config.patience else {}),
                    },
                    partial,
                )
                partial.replace(state_path)  # atomic: a kill never leaves half a checkpoint
        progress(step, config.steps, metrics)
        if config.patience and best["stale"] >= config.patience:
            break
    if config.patience and best["model"] is not None:
        model.load_state_dict(best["model"])
    return {
        "stopped_at_step": step,
        **({"best_step": best["step"], "best_validation_loss": best["loss"]} if config.patience else {}),
        "final": metrics,
        "resumed_from_step": resumed_from,
        "device": device,
        "world_size": world,
    }


def _copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


class WindowDataset:
    """Standardized day windows held in memory: ``values`` and ``observed`` of shape (windows, channels, minutes)."""

    def __init__(self, values: torch.Tensor, observed: torch.Tensor, weekday: torch.Tensor | None = None):
        self.values, self.observed, self.weekday = values, observed, weekday

    def __len__(self) -> int:
        return self.values.shape[0]

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = {"values": self.values[indices], "observed": self.observed[indices]}
        return batch if self.weekday is None else {**batch, "weekday": self.weekday[indices]}
