"""Generative evaluation: the model fills hidden minutes, compared with simple baselines.

Tasks hide parts of held-out day windows: random patches (imputation), a contiguous span
(gap filling), the end of the day (forecasting) or whole channels (channel imputation). The
model reconstructs them from what stays visible; baselines see exactly the same visible minutes:
last value carried forward, linear interpolation, the window's mean of the channel, and the same
minute of the previous day (seasonal naive). Errors are on hidden minutes that were truly observed,
in standardized units (so channels weigh alike).
"""

import numpy as np
import torch

from modeling.ml.lsm.masking import channel_mask, patch_missing, random_mask
from modeling.ml.lsm.model import LSMForMaskedPretraining


def task_mask(task: str, missing: torch.Tensor, fraction: float, *, channel_groups: int, generator: torch.Generator) -> torch.Tensor:
    """(windows, patches) True where the task hides the patch."""
    windows, patches = missing.shape
    time_patches = patches // channel_groups
    steps = torch.arange(time_patches)
    if task == "imputation":
        hidden = random_mask(missing, fraction, generator)
    elif task == "gap":
        span = max(1, int(round(fraction * time_patches)))
        starts = torch.randint(0, time_patches - span + 1, (windows,), generator=generator)
        hidden = ((steps[None, :] >= starts[:, None]) & (steps[None, :] < starts[:, None] + span)).repeat(1, channel_groups)
    elif task == "forecast":
        horizon = max(1, int(round(fraction * time_patches)))
        hidden = (steps >= time_patches - horizon)[None, :].expand(windows, -1).repeat(1, channel_groups)
    elif task == "channel":
        hidden = channel_mask(missing, fraction, channel_groups=channel_groups, generator=generator)
    else:
        raise ValueError(f"unknown task {task!r}")
    return hidden


def unpatchify(model: LSMForMaskedPretraining, patches: torch.Tensor) -> torch.Tensor:
    """(windows, patches, patch_values) -> (windows, channels, minutes)."""
    c = model.config
    windows = patches.shape[0]
    grid = patches.reshape(windows, c.channel_groups, c.time_patches, c.patch_channels, c.patch_minutes)
    return grid.permute(0, 1, 3, 2, 4).reshape(windows, c.channels, c.minutes)


def _locf(values: np.ndarray, visible: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    index = np.where(visible, np.arange(values.shape[-1]), -1)
    last = np.maximum.accumulate(index, axis=-1)
    filled = np.take_along_axis(values, np.clip(last, 0, None), axis=-1)
    return np.where(last >= 0, filled, fallback[..., None])


def _interpolate(values: np.ndarray, visible: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    minutes = np.arange(values.shape[-1])
    for window in range(values.shape[0]):
        for channel in range(values.shape[1]):
            known = visible[window, channel]
            out[window, channel] = (np.interp(minutes, minutes[known], values[window, channel, known]) if known.any()
                                    else fallback[window, channel])
    return out


@torch.no_grad()
def evaluate_generation(model: LSMForMaskedPretraining, values: torch.Tensor, observed: torch.Tensor, *, task: str, fraction: float,
                        previous: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = 0) -> dict:
    """MAE and MSE of the model and each baseline on the hidden, truly observed minutes.

    ``previous`` is the previous day of each window (values, observed), for seasonal naive.
    """
    c = model.config
    model.eval()
    missing = patch_missing(observed, c.patch_channels, c.patch_minutes)
    hidden_patches = task_mask(task, missing, fraction, channel_groups=c.channel_groups, generator=torch.Generator().manual_seed(seed))
    hidden_patches = hidden_patches & ~missing
    output = model(values, observed, masked=hidden_patches | missing)
    predicted = unpatchify(model, output.reconstruction).cpu().numpy()
    hidden_minutes = unpatchify(model, hidden_patches[..., None].expand(-1, -1, c.patch_values).float()).cpu().numpy() > 0

    truth, seen = values.cpu().numpy(), observed.cpu().numpy()
    targets = hidden_minutes & seen
    visible = seen & ~hidden_minutes
    counts = visible.sum(axis=-1)
    window_mean = np.where(counts > 0, (truth * visible).sum(axis=-1) / np.maximum(counts, 1), 0.0)
    predictions = {
        "model": predicted,
        "last_value_carried_forward": _locf(truth, visible, window_mean),
        "linear_interpolation": _interpolate(truth, visible, window_mean),
        "window_mean": np.broadcast_to(window_mean[..., None], truth.shape),
    }
    if previous is not None:
        previous_values, previous_observed = (tensor.cpu().numpy() for tensor in previous)
        predictions["seasonal_naive"] = np.where(previous_observed, previous_values, window_mean[..., None])
    errors = {}
    for name, prediction in predictions.items():
        difference = (prediction - truth)[targets]
        errors[name] = {"mae": float(np.abs(difference).mean()), "mse": float((difference**2).mean())}
    return {"task": task, "fraction": fraction, "hidden_observed_minutes": int(targets.sum()), "errors": errors}
