"""Generative evaluation: the model fills hidden minutes, compared with simple baselines.

Tasks hide parts of held-out day windows: random patches (imputation), a contiguous span
(gap filling), the end of the day (forecasting) or whole channels (channel imputation). The
model reconstructs them from what stays visible; baselines see exactly the same visible minutes:
last value carried forward, linear interpolation, the window's mean of the channel, and the same
minute of the previous day (seasonal naive). Errors are on hidden minutes that were truly observed,
in standardized units (so channels weigh alike). Given the channels' normalization, the daily
metrics a wearable app shows (steps, sleep minutes, resting heart rate) are also recomputed from
each method's filled-in day and compared with the same metrics of the true day.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modeling.ml.data.spec import FEATURE_INDEX
from modeling.ml.data.summaries import daily_summaries
from modeling.ml.lsm.masking import channel_mask, patch_missing, random_mask
from modeling.ml.lsm.model import LSMForMaskedPretraining, standardize


def task_mask(
    task: str, missing: torch.Tensor, fraction: float, *, channel_groups: int, generator: torch.Generator
) -> torch.Tensor:
    """(windows, patches) True where the task hides the patch."""
    windows, patches = missing.shape
    time_patches = patches // channel_groups
    steps = torch.arange(time_patches)
    if task == "imputation":
        hidden = random_mask(missing, fraction, generator)
    elif task == "gap":
        span = max(1, round(fraction * time_patches))
        starts = torch.randint(0, time_patches - span + 1, (windows,), generator=generator)
        hidden = ((steps[None, :] >= starts[:, None]) & (steps[None, :] < starts[:, None] + span)).repeat(
            1, channel_groups
        )
    elif task == "forecast":
        horizon = max(1, round(fraction * time_patches))
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
            out[window, channel] = (
                np.interp(minutes, minutes[known], values[window, channel, known])
                if known.any()
                else fallback[window, channel]
            )
    return out


@torch.no_grad()
def evaluate_generation(
    model: LSMForMaskedPretraining,
    values: torch.Tensor,
    observed: torch.Tensor,
    *,
    task: str,
    fraction: float,
    previous: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    raw: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    weekday: torch.Tensor | None = None,
    batch: int = 64,
) -> dict[str, Any]:
    """MAE and MSE of the model and each baseline on the hidden, truly observed minutes.

    ``previous`` is the previous day of each window (values, observed), for seasonal naive.
    ``raw`` (the windows' unstandardized values, per-channel mean, SD) turns on the daily-metric comparison.
    """
    c = model.config
    model.train(False)  # evaluation mode: what PreTrainedModel.eval() does, which is unannotated
    missing = patch_missing(observed, c.patch_channels, c.patch_minutes)
    hidden_patches = task_mask(
        task, missing, fraction, channel_groups=c.channel_groups, generator=torch.Generator().manual_seed(seed)
    )
    hidden_patches = hidden_patches & ~missing
    reconstructions = [
        model(
            values[i : i + batch],
            observed[i : i + batch],
            masked=(hidden_patches | missing)[i : i + batch],
            weekday=None if weekday is None else weekday[i : i + batch],
        ).reconstruction
        for i in range(0, len(values), batch)
    ]
    predicted = unpatchify(model, torch.cat(reconstructions)).cpu().numpy()
    hidden_minutes = (
        unpatchify(model, hidden_patches[..., None].expand(-1, -1, c.patch_values).float()).cpu().numpy() > 0
    )

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
    result = {"task": task, "fraction": fraction, "hidden_observed_minutes": int(targets.sum()), "errors": errors}
    if raw is not None:
        result["daily"] = daily_metric_errors(predictions, *raw, seen, targets)
    return result


# metric: (the channels it is computed from, the minutes of a lone day that count: sleep is the night up to noon)
DAILY_METRICS = {
    "steps": (("steps",), slice(None)),
    "sleep_minutes": (("sleep_stage",), slice(0, 12 * 60)),
    "resting_heart_rate_bpm": (("heart_rate", "steps", "met", "sleep_stage"), slice(None)),
}


def daily_metric_errors(
    predictions: dict[str, np.ndarray],
    raw_truth: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    seen: np.ndarray,
    targets: np.ndarray,
) -> dict[str, dict[str, float | None]]:
    """Per method, the MAE of each daily metric recomputed from the filled-in day against the true day's.

    A filled-in day keeps every visible minute as recorded (unclipped) and takes the method's value
    at hidden observed minutes, so only what the method filled in can make the metrics differ.
    Days whose hidden minutes do not touch what a metric is computed from are left out of it.
    """

    def raw(standardized: np.ndarray) -> np.ndarray:
        unstandardized: np.ndarray = standardized * std[None, :, None] + mean[None, :, None]
        return unstandardized

    def metrics(days: np.ndarray) -> np.ndarray:
        table = np.full((len(days), len(DAILY_METRICS)), np.nan)
        for window in range(len(days)):  # windows are separate days: no evening carried over from another window
            summary = daily_summaries(days[window : window + 1], seen[window : window + 1])[0]
            table[window] = [np.nan if summary[name] is None else summary[name] for name in DAILY_METRICS]
        return table

    true_metrics = metrics(raw_truth)
    touched = np.column_stack(
        [
            targets[:, [FEATURE_INDEX[channel] for channel in channels], minutes].any(axis=(1, 2))
            for channels, minutes in DAILY_METRICS.values()
        ]
    )
    errors = {}
    for name, prediction in predictions.items():
        filled = metrics(np.where(targets, raw(prediction), raw_truth))
        difference = np.where(touched, np.abs(filled - true_metrics), np.nan)
        errors[name] = {
            metric: float(np.nanmean(difference[:, column])) if np.isfinite(difference[:, column]).any() else None
            for column, metric in enumerate(DAILY_METRICS)
        }
    return errors


# (task, fraction): random imputation, a contiguous gap, forecasting the end of the day, whole channels.
GENERATIVE_TASKS = (
    ("imputation", 0.3),
    ("gap", 0.1),
    ("forecast", 0.1),
    ("forecast", 0.2),
    ("forecast", 0.4),
    ("channel", 0.2),
)


def run_generative(
    model_dir: str | Path,
    *,
    participants: int,
    days: int,
    seed: int,
    device: str = "cpu",
    tasks: Sequence[tuple[str, float]] = GENERATIVE_TASKS,
) -> list[dict[str, Any]]:
    """Every generative task on new simulated participants (days after the first, so seasonal naive has a yesterday)."""
    from modeling.ml.lsm.pretrain import check_new_participants, load_pretrained, simulated_windows

    model, mean, std = load_pretrained(model_dir, device)
    check_new_participants(model_dir, seed)
    values, observed, owner, weekday = simulated_windows(participants=participants, days=max(2, days), seed=seed)
    observed_tensor = torch.tensor(observed)
    standardized = standardize(torch.tensor(values), observed_tensor, mean, std)
    today = np.flatnonzero(np.r_[False, owner[1:] == owner[:-1]])  # windows with the same participant's previous day
    previous = (standardized[today - 1], observed_tensor[today - 1])
    return [
        evaluate_generation(
            model,
            standardized[today].to(device),
            observed_tensor[today].to(device),
            task=task,
            fraction=fraction,
            previous=previous,
            seed=seed,
            raw=(values[today], mean.numpy(), std.numpy()),
            weekday=torch.tensor(weekday[today]).to(device),
        )
        for task, fraction in tasks
    ]


METHOD_TITLES = {
    "model": "model",
    "last_value_carried_forward": "last value carried forward",
    "linear_interpolation": "linear interpolation",
    "window_mean": "window mean",
    "seasonal_naive": "seasonal naive (yesterday)",
}


def generative_tables(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tables (see ``evaluate.downstream_tables``): errors on hidden minutes, then on the daily metrics; best in bold."""
    methods = list(results[0]["errors"]) if results else []
    titles = [METHOD_TITLES.get(method, method) for method in methods]

    def cells(values: list[float | None]) -> list[str]:
        finite = [value for value in values if value is not None]
        best = min(finite) if finite else None
        return ["—" if value is None else (f"**{value:.3f}**" if value == best else f"{value:.3f}") for value in values]

    minutes = [
        [
            result["task"],
            f"{result['fraction']:.0%}",
            f"{result['hidden_observed_minutes']:,}",
            *cells([result["errors"][method]["mae"] for method in methods]),
        ]
        for result in results
    ]
    tables = [
        {
            "title": "Hidden minutes",
            "summary": "MAE in standardized units (lower is better; best in bold).",
            "columns": ["task", "hidden", "observed minutes scored", *titles],
            "rows": minutes,
        }
    ]
    if results and "daily" in results[0]:
        daily = [
            [
                result["task"],
                f"{result['fraction']:.0%}",
                metric,
                *cells([result["daily"][method][metric] for method in methods]),
            ]
            for result in results
            for metric in DAILY_METRICS
        ]
        tables.append(
            {
                "title": "Daily metrics recomputed from the filled-in day",
                "summary": "MAE against the same metric of the true day, over the days whose hidden minutes touch what the metric is "
                "computed from (steps; sleep minutes before noon; resting heart rate in bpm). — where no day qualifies.",
                "columns": ["task", "hidden", "metric", *titles],
                "rows": daily,
            }
        )
    return tables
