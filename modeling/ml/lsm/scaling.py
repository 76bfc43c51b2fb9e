"""Scaling study: model size x pre-training data, against held-out reconstruction loss and probe quality.

Every run pre-trains from scratch for the same number of steps, then is scored on the same held-out
material: the masked reconstruction loss on days of participants no run trained on (a fixed mask),
and the probe study's probe (mean AUROC / Pearson r over the downstream tasks, and the tasks where it is at least
hand-crafted features) on another set of new participants. At a fixed number of steps, a run on little data sees
its windows many times and overfits: the held-out loss then falls with data as well as with size.

Sizes are named (``tiny``, ``small``, ...) or ``<width>x<depth>`` (e.g. ``128x3``): the tiny
recipe at another width and depth, which is how a CPU-sized study spans parameters.
"""

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.stats import t as student_t

from modeling.ml.common.output_lock import output_lock
from modeling.ml.common.settings import setting
from modeling.ml.data.cohort import participant_split
from modeling.ml.data.labels import TASKS
from modeling.ml.lsm.evaluate import markdown
from modeling.ml.lsm.model import SIZES, standardize
from modeling.ml.lsm.pretrain import channel_statistics, load_pretrained, pretrain, simulated_windows
from modeling.ml.lsm.probe_study import PROBE, STANDARD_METHODS, ProbeStudySettings, cohort_features, full_data
from modeling.ml.train import TrainConfig, choose_device

if TYPE_CHECKING:
    import plotly.graph_objects as go


def size_overrides(size: str) -> tuple[str, dict[str, Any]]:
    """(named size, config overrides) for a named size or ``<width>x<depth>``."""
    if size in SIZES:
        return size, {}
    match = re.fullmatch(r"(\d+)x(\d+)", size)
    if not match:
        raise ValueError(f"unknown size {size!r}: use one of {', '.join(SIZES)} or <width>x<depth> such as 128x3")
    width, depth = int(match[1]), int(match[2])
    if width % 16:
        raise ValueError(f"width {width} must be a multiple of 16 (heads of 16 dimensions)")
    return "tiny", {"dim": width, "depth": depth, "heads": width // 16, "decoder_dim": width}


@dataclass
class ScalingSettings:
    sizes: list[str] = setting(["32x1", "64x2", "128x3"], "Named sizes or <width>x<depth>.")
    windows: list[int] = setting([400, 1600, 6400], "Pre-training day windows (participants x days), 80 % trained on.")
    days: int = setting(4, "Days per pre-training participant.", minimum=1, maximum=60)
    steps: int = setting(2000, "Optimizer steps of every run (cosine decay to 0).", minimum=1, maximum=1_000_000)
    passes: float = setting(
        0.0,
        "If > 0, each run's steps grow with its data instead: passes x windows / batch size (the same number of "
        "passes over every data size, so that the largest is not step-limited); --steps is then unused.",
        minimum=0.0,
    )
    validate_every: int = setting(
        0, "Steps between evaluations on the run's own held-out 20 % (0: only at the end).", minimum=0
    )
    patience: int = setting(
        0,
        "Stop a run after this many evaluations without a lower loss on its own held-out 20 %, keeping its best "
        "weights (0: every run takes every step).",
        minimum=0,
    )
    batch_size: int = setting(32, minimum=1, maximum=4096)
    learning_rate: float = setting(1e-3, minimum=1e-6, maximum=1.0)
    patch_minutes: int = setting(10, "Minutes per patch (0: the size's).", minimum=0)
    patch_channels: int = setting(9, "Channels per patch (0: the size's).", minimum=0)
    seed: int = setting(0, "Pre-training seed; the held-out and probe participants use other seeds.", minimum=0)
    held_out_participants: int = setting(100, "Participants (2 days each) of the held-out loss.", minimum=5)
    probe_participants: int = setting(600, "New participants of the probe, split by participant.", minimum=40)
    probe_test_share: float = setting(0.5, minimum=0.1, maximum=0.9)
    device: str = setting("auto", "auto, cpu, cuda or mps.")


def held_out_loss(model_dir: Path, values: np.ndarray, observed: np.ndarray, device: str, seed: int) -> float:
    """Masked reconstruction loss on fixed held-out days, the same mask for every model of a study, in common units.

    Each model reads values standardized by its own training data's channel SDs, and its loss is in those units: a
    model trained on 160 participants would be scored in other units than one trained on 3,200 (their SDs differ by
    a percent or two, as much as the effects compared). The errors are therefore rescaled per channel to the held-out
    days' own SDs (error x model SD / held-out SD), the same units for every model."""
    model, mean, std = load_pretrained(model_dir, device)
    _, common = channel_statistics(values, observed)
    observed_tensor = torch.tensor(observed)
    standardized = standardize(torch.tensor(values), observed_tensor, mean, std)
    scale = model.patchify((std.cpu() / torch.tensor(common))[None, :, None].expand(1, -1, values.shape[-1]))
    squared_sum, count = 0.0, 0.0
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        for start in range(0, len(values), 256):
            window = slice(start, start + 256)
            batch_values, batch_observed = standardized[window].to(device), observed_tensor[window].to(device)
            output = model(batch_values, batch_observed, generator=generator)
            tokens = model.patchify(torch.where(batch_observed, batch_values, torch.zeros_like(batch_values)))
            token_observed = model.patchify(batch_observed.to(tokens.dtype)) > 0
            targets = (output.masked & ~output.missing)[..., None] & token_observed
            error = (output.reconstruction - tokens) * scale.to(device)
            squared_sum += float((error**2 * targets).sum())
            count += float(targets.sum())
    return squared_sum / max(count, 1.0)


def probe_scores(model_dir: Path, settings: ScalingSettings) -> dict[str, Any]:
    """The probe study's table probe (last layer pooled per channel group, cross-validated) and hand-crafted features
    on the same new participants: mean AUROC, mean Pearson r, and the tasks where the probe is at least them."""
    study = ProbeStudySettings(
        participants=settings.probe_participants,
        test_share=settings.probe_test_share,
        days=2,
        seed=settings.seed + 1000,
        resamples=100,
    )
    data = cohort_features(model_dir, study, device=settings.device)
    train, test = participant_split(study.participants, study.test_share, study.seed)
    methods = {"handcrafted": STANDARD_METHODS["handcrafted"], PROBE: STANDARD_METHODS[PROBE]}
    full = full_data(data, methods, study, train, test)
    scores: dict[str, dict[str, list[float]]] = {name: {"auroc": [], "pearson_r": []} for name in methods}
    at_least = 0
    for task in TASKS:
        row = full[task.name]["methods"][PROBE]
        if "difference" not in row:
            continue
        key = "pearson_r" if task.kind == "regression" else "auroc"
        scores[PROBE][key].append(row["method"][0])
        scores["handcrafted"][key].append(row["baseline"][0])
        at_least += row["difference"][0] >= 0
    return {
        "mean_probe_auroc": float(np.mean(scores[PROBE]["auroc"])),
        "mean_probe_pearson_r": float(np.mean(scores[PROBE]["pearson_r"])),
        "mean_handcrafted_auroc": float(np.mean(scores["handcrafted"]["auroc"])),
        "tasks_at_least_handcrafted": int(at_least),
        "tasks_scored": len(scores[PROBE]["auroc"]) + len(scores[PROBE]["pearson_r"]),
    }


def run_steps(settings: ScalingSettings, windows: int) -> int:
    """A run's optimizer steps: the study's, or in proportion to its windows at a fixed number of passes."""
    if settings.passes > 0:
        return max(1, round(settings.passes * windows / settings.batch_size))
    return settings.steps


def scaling_study(
    settings: ScalingSettings, output_dir: Path, progress: Callable[[float, str], None] = lambda fraction, message: None
) -> list[dict[str, Any]]:
    with output_lock(output_dir):  # a second study started on this folder stops here, before it writes anything
        return _scaling_study(replace(settings, device=choose_device(settings.device)), output_dir, progress)


def _scaling_study(
    settings: ScalingSettings, output_dir: Path, progress: Callable[[float, str], None]
) -> list[dict[str, Any]]:
    held = simulated_windows(participants=settings.held_out_participants, days=2, seed=settings.seed + 2000)
    runs = [(size, windows) for size in settings.sizes for windows in settings.windows]
    patches: dict[str, Any] = {"patch_minutes": settings.patch_minutes, "patch_channels": settings.patch_channels}
    results = []
    for position, (size, windows) in enumerate(runs):
        progress(position / len(runs), f"{size} on {windows} windows")
        named, overrides = size_overrides(size)
        participants = max(5, windows // settings.days)
        run_dir = output_dir / "runs" / f"{size}-{windows}"
        steps = run_steps(settings, windows)
        config = TrainConfig(
            steps=steps,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            seed=settings.seed,
            checkpoint_every=steps,
            validate_every=settings.validate_every,
            patience=settings.patience,
        )
        started = time.process_time()
        trained = pretrain(
            size=named,
            participants=participants,
            days=settings.days,
            seed=settings.seed,
            train_config=config,
            output_dir=run_dir,
            device=settings.device,
            **overrides,
            **{name: value for name, value in patches.items() if value},
        )
        pretrained = time.process_time()
        model_dir = Path(trained["model_dir"])
        results.append(
            {
                "size": size,
                "parameters": trained["parameters"],
                "pretraining_windows": trained["train_windows"],
                "steps": steps,
                "passes": settings.passes,
                "seed": settings.seed,
                "stopped_at_step": trained["stopped_at_step"],
                "best_step": trained.get("best_step", trained["stopped_at_step"]),
                "held_out_loss": held_out_loss(model_dir, held.values, held.observed, settings.device, settings.seed),
                **probe_scores(model_dir, settings),
                "windows_per_s": trained["final"].get("windows_per_s"),
                "pretraining_cpu_seconds": round(pretrained - started, 1),
                "load_average": [round(value, 2) for value in os.getloadavg()],
            }
        )
        (output_dir / "scaling.json").write_text(json.dumps(results, indent=1))  # a partial study survives a stop
    progress(1.0, "done")
    _write(results, settings, output_dir)
    return results


def rescore(settings: ScalingSettings, output_dir: Path) -> list[dict[str, Any]]:
    """Recompute a finished study's held-out losses from its saved runs (``runs/<size>-<windows>/model``) with this
    code, and rewrite its table and figure; the probe scores and the rest stay as they were."""
    with output_lock(output_dir):
        return _rescore(replace(settings, device=choose_device(settings.device)), output_dir)


def _rescore(settings: ScalingSettings, output_dir: Path) -> list[dict[str, Any]]:
    held = simulated_windows(participants=settings.held_out_participants, days=2, seed=settings.seed + 2000)
    results: list[dict[str, Any]] = json.loads((output_dir / "scaling.json").read_text())
    runs = [(size, windows) for size in settings.sizes for windows in settings.windows]
    for result, (size, windows) in zip(results, runs, strict=False):
        if result["size"] != size:
            raise ValueError(f"scaling.json's runs are not the settings' ({result['size']} against {size})")
        model_dir = output_dir / "runs" / f"{size}-{windows}" / "model"
        result["held_out_loss"] = held_out_loss(model_dir, held.values, held.observed, settings.device, settings.seed)
    _write(results, settings, output_dir)
    return results


def figure(results: list[dict[str, Any]]) -> "go.Figure":
    """Held-out loss and probe AUROC against parameters (one line per data size) and against data (one line per size)."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=2,
        cols=2,
        shared_xaxes="columns",
        horizontal_spacing=0.12,
        vertical_spacing=0.1,
        subplot_titles=("against parameters", "against pre-training windows"),
    )
    palette = iter(qualitative.Plotly + qualitative.D3)
    for column, (line_key, x_key) in enumerate(
        (("pretraining_windows", "parameters"), ("size", "pretraining_windows")), start=1
    ):
        for line in dict.fromkeys(result[line_key] for result in results):
            chosen = sorted(
                (result for result in results if result[line_key] == line), key=lambda result: result[x_key]
            )
            name = f"{line} windows" if line_key == "pretraining_windows" else str(line)
            color = next(palette)  # the same line has the same colour in both rows
            for row, metric in enumerate(("held_out_loss", "mean_probe_auroc"), start=1):
                # replicated studies' means carry each study's value: the bar spans them
                spans = [result.get(f"{metric}_replicates", [result[metric]]) for result in chosen]
                fig.add_trace(
                    go.Scatter(
                        x=[result[x_key] for result in chosen],
                        y=[result[metric] for result in chosen],
                        error_y={
                            "type": "data",
                            "symmetric": False,
                            "array": [max(span) - result[metric] for span, result in zip(spans, chosen, strict=True)],
                            "arrayminus": [
                                result[metric] - min(span) for span, result in zip(spans, chosen, strict=True)
                            ],
                            "visible": any(len(span) > 1 for span in spans),
                        },
                        mode="lines+markers",
                        name=name,
                        legendgroup=f"{column}-{name}",
                        showlegend=row == 1,
                        line={"color": color},
                    ),
                    row=row,
                    col=column,
                )
        fig.update_xaxes(type="log", title_text=x_key.replace("_", " "), row=2, col=column)
    fig.update_yaxes(title_text="held-out reconstruction loss", row=1, col=1)
    fig.update_yaxes(title_text="mean probe AUROC", row=2, col=1)
    fig.update_layout(height=640, template="plotly_white", title="Wearable foundation model: scaling")
    return fig


def _write(results: list[dict[str, Any]], settings: ScalingSettings, output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    table = {
        "title": "Runs",
        "summary": "",
        "columns": [
            "size",
            "parameters",
            "pre-training windows",
            "held-out loss",
            "best step / stopped / steps",
            "mean probe AUROC",
            "mean probe Pearson r",
            "tasks ≥ hand-crafted",
            "CPU-min",
            "windows/s",
            "load",
        ],
        "rows": [
            [
                r["size"],
                f"{r['parameters']:,}",
                f"{r['pretraining_windows']:,}",
                f"{r['held_out_loss']:.4f}",
                f"{r.get('best_step', r['steps']):,} / {r.get('stopped_at_step', r['steps']):,} of {r['steps']:,}",
                f"{r['mean_probe_auroc']:.3f}",
                f"{r['mean_probe_pearson_r']:.3f}",
                f"{r['tasks_at_least_handcrafted']} / {r.get('tasks_scored', len(TASKS))}",
                f"{r['pretraining_cpu_seconds'] / 60:.1f}",
                f"{r['windows_per_s']}",
                f"{r['load_average'][0]:.1f}",
            ]
            for r in results
        ],
    }
    hand_crafted = np.mean([r["mean_handcrafted_auroc"] for r in results])
    header = (
        "# Wearable foundation model: scaling study\n\nEach run pre-trains from scratch for up to "
        + (
            f"{settings.passes:g} passes over its windows (steps = passes × windows / batch size, so steps grow with "
            "the data)"
            if settings.passes > 0
            else f"{settings.steps} steps"
        )
        + f" of {settings.batch_size} windows (cosine decay)"
        + (
            f", evaluated every {settings.validate_every} steps on its own held-out 20 % of participants and stopped "
            f"after {settings.patience} evaluations without a lower loss, keeping its best weights (early stopping)"
            if settings.patience
            else ""
        )
        + f", patches of {settings.patch_minutes or 60} minutes × "
        f"{settings.patch_channels or 1} channel(s), on 80 % of the participants of a simulated cohort of the given size "
        f"(seed {settings.seed}). Held-out loss: masked reconstruction on {2 * settings.held_out_participants} days of "
        f"{settings.held_out_participants} participants no run saw (seed {settings.seed + 2000}), the same mask for every "
        f"model, in the held-out days' own SD units for every model (`held_out_loss`). Probe: the probe study's (last layer pooled per channel group, L2 chosen by cross-validation) on "
        f"{settings.probe_participants} other new participants (seed {settings.seed + 1000}, 2 days each, "
        f"{settings.probe_test_share:.0%} held out for test), averaged over the "
        f"{sum(t.kind != 'regression' for t in TASKS)} classification tasks (AUROC) and "
        f"{sum(t.kind == 'regression' for t in TASKS)} regression tasks (Pearson r); hand-crafted features score a mean "
        f"AUROC of {hand_crafted:.3f} on the same split. CPU-min: pre-training only; load: the 1-minute load average "
        "after the run. Figure: `scaling.html`, which loads `plotly.min.js` from its folder (the command writes it "
        "there; it is not committed)."
    )
    (output_dir / "scaling.md").write_text(markdown([table], header=header))
    (output_dir / "scaling.json").write_text(json.dumps(results, indent=1))
    figure(results).write_html(output_dir / "scaling.html", include_plotlyjs="directory", full_html=True)


REPLICATED = ("held_out_loss", "mean_probe_auroc", "mean_probe_pearson_r")


def replicates(
    *, studies: Sequence[Path | Sequence[Path]], output_dir: Path, windows: Sequence[int] | None = None
) -> dict[str, Any]:
    """Combine finished studies of one grid run with different seeds (each its own cohort, held-out and probe
    participants) into one table and figure: each cell's mean over the studies that ran it, and every step along
    each axis (more data at one size, a larger size at one data size) with its difference in each study that ran
    both cells, and on average. The first study runs the whole grid; a later one may run part of it (the cheaper
    data sizes, say). A study may be given in parts (a list of folders: one seed's grid run by several commands,
    a data size added later with its own passes); the parts' runs are its runs, each cell once, all of one seed.
    ``windows`` (pre-training windows, as the runs count them) keeps only those data sizes' cells.

    A step's noise is estimated from the studies' disagreement on it: the variance of its difference across the
    studies, pooled over the steps (weighted by their degrees of freedom), is one study's; the mean over n studies
    has that over n. A step is "worse beyond noise" when its mean difference is more than the two-sided 95 % t
    quantile of those standard deviations the wrong way (a higher loss, a lower probe)."""
    with output_lock(output_dir):
        return _replicates(
            [[study] if isinstance(study, Path) else list(study) for study in studies], output_dir, windows
        )


def _study_runs(parts: list[Path], keep: Sequence[int] | None) -> dict[tuple[str, int], dict[str, Any]]:
    """One study's runs by cell, from its parts' ``scaling.json``."""
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    for part in parts:
        if not (part / "scaling.json").is_file():
            raise ValueError(f"{part} has no scaling.json: name the folder of a finished study (lsm scaling --output)")
        try:
            results = json.loads((part / "scaling.json").read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{part / 'scaling.json'} is not a finished study's table ({error})") from None
        for result in results:
            cell = (result["size"], result["pretraining_windows"])
            if cell in runs:
                raise ValueError(f"{part} ran {cell[0]} on {cell[1]:,} windows again: a study runs a cell once")
            runs[cell] = result
    seeds = {result["seed"] for result in runs.values() if "seed" in result}  # recorded since session 33
    if len(seeds) > 1:
        raise ValueError(f"the parts {', '.join(map(str, parts))} ran seeds {sorted(seeds)}: one study is one seed")
    return {cell: result for cell, result in runs.items() if keep is None or cell[1] in keep}


def _replicates(studies: list[list[Path]], output_dir: Path, keep: Sequence[int] | None = None) -> dict[str, Any]:
    if len(studies) < 2:
        raise ValueError("replicates need at least two finished studies")
    folders = [part.resolve() for parts in studies for part in parts]
    if len(set(folders)) < len(folders):
        raise ValueError("a study is named twice: replicates are studies with different seeds")
    loaded = [_study_runs(parts, keep) for parts in studies]
    if not loaded[0]:
        raise ValueError(f"{studies[0][0]} has no run on {', '.join(map(str, keep or []))} windows")
    first = loaded[0].values()
    # in order of parameters and of windows, so that a step is always more of one of them
    sizes = [size for _, size in sorted({(result["parameters"], result["size"]) for result in first})]
    windows = sorted({result["pretraining_windows"] for result in first})
    cells = [(size, data) for size in sizes for data in windows]
    if set(cells) != set(loaded[0]):
        raise ValueError(f"{studies[0][0]} did not run its whole grid (a stopped study?): it must, the others may not")
    for study, results in zip(studies[1:], loaded[1:], strict=True):
        if not set(results) <= set(cells):
            raise ValueError(
                f"{study[0]}'s runs are not part of {studies[0][0]}'s grid: a replicate runs its sizes and windows"
            )
    combined = []
    for cell in cells:
        ran = [number for number, results in enumerate(loaded) if cell in results]
        runs = [loaded[number][cell] for number in ran]
        row: dict[str, Any] = {
            "size": cell[0],
            "pretraining_windows": cell[1],
            "parameters": runs[0]["parameters"],
            "studies": ran,
            "steps": sorted({run["steps"] for run in runs}),
            "pretraining_cpu_seconds": [run["pretraining_cpu_seconds"] for run in runs],
            "load_average": [run["load_average"][0] for run in runs],
        }
        for metric in (*REPLICATED, "mean_handcrafted_auroc", "tasks_at_least_handcrafted"):
            row[f"{metric}_replicates"] = [run[metric] for run in runs]
            row[metric] = float(np.mean(row[f"{metric}_replicates"]))
        combined.append(row)
    by_cell = {(row["size"], row["pretraining_windows"]): row for row in combined}
    pairs = [(by_cell[(size, a)], by_cell[(size, b)], "data") for size in sizes for a, b in pairwise(windows)]
    pairs += [(by_cell[(a, data)], by_cell[(b, data)], "size") for data in windows for a, b in pairwise(sizes)]
    steps = [_step(before, after, axis) for before, after, axis in pairs]
    # a step's difference is measured once per study that ran both cells: their disagreement, pooled over the steps
    freedom = sum(len(step["studies"]) - 1 for step in steps)
    if freedom < 1:
        raise ValueError("no step was run by two studies: there is nothing to tell the noise from")
    spread = {
        metric: float(
            np.sqrt(
                sum(
                    (len(step["studies"]) - 1) * np.var(step[metric]["differences"], ddof=1)
                    for step in steps
                    if len(step["studies"]) > 1
                )
                / freedom
            )
        )
        for metric in REPLICATED
    }
    quantile = float(student_t.ppf(0.975, freedom))  # the two-sided 95 % t quantile at the pooled degrees of freedom
    for step in steps:
        for metric in REPLICATED:
            change, better = step[metric], -1 if metric == "held_out_loss" else 1  # the loss should fall
            noise = quantile * spread[metric] / np.sqrt(len(step["studies"]))
            told = spread[metric] > 0  # studies that agree exactly tell no noise: no verdict
            change["worse_beyond_noise"] = told and bool(better * change["mean"] < -noise)
            change["better_beyond_noise"] = told and bool(better * change["mean"] > noise)
    summary = {
        "studies": [" + ".join(map(str, parts)) for parts in studies],
        "cells": combined,
        "steps": steps,
        "step_sd": spread,
        "degrees_of_freedom": freedom,
        "t_quantile": quantile,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "replicates.json").write_text(json.dumps(summary, indent=1))
    (output_dir / "replicates.md").write_text(_replicates_markdown(summary))
    figure(combined).write_html(output_dir / "replicates.html", include_plotlyjs="directory", full_html=True)
    return summary


def _step(before: dict[str, Any], after: dict[str, Any], axis: str) -> dict[str, Any]:
    both = [number for number in before["studies"] if number in after["studies"]]
    step: dict[str, Any] = {
        "axis": axis,
        "from": f"{before['size']} on {before['pretraining_windows']:,}",
        "to": f"{after['size']} on {after['pretraining_windows']:,}",
        "studies": both,
    }
    for metric in REPLICATED:
        value = {
            row_number: dict(zip(row["studies"], row[f"{metric}_replicates"], strict=True))
            for row_number, row in enumerate((before, after))
        }
        differences = [value[1][number] - value[0][number] for number in both]
        better = -1 if metric == "held_out_loss" else 1
        step[metric] = {
            "differences": differences,
            "mean": float(np.mean(differences)),
            "worse_in_every_study": all(better * difference < 0 for difference in differences),
        }
    return step


def _replicates_markdown(summary: dict[str, Any]) -> str:
    cells, steps, sd = summary["cells"], summary["steps"], summary["step_sd"]
    names = summary["studies"]

    def studies(numbers: list[int]) -> str:
        return ", ".join(str(number + 1) for number in numbers)

    def values(row: dict[str, Any], metric: str, digits: int) -> str:
        each = ", ".join(f"{value:.{digits}f}" for value in row[f"{metric}_replicates"])
        return f"{row[metric]:.{digits}f} ({each})"

    def verdict(change: dict[str, Any]) -> str:
        if change["worse_beyond_noise"]:
            return "worse beyond noise"
        if change["better_beyond_noise"]:
            return "better beyond noise"
        count = len(change["differences"])
        return "within noise" + (f" (worse in all {count})" if count > 1 and change["worse_in_every_study"] else "")

    def signed(change: dict[str, Any], digits: int) -> str:
        each = ", ".join(f"{value:+.{digits}f}" for value in change["differences"])
        return f"{change['mean']:+.{digits}f} ({each}): {verdict(change)}"

    cell_table = {
        "title": "Cells: mean over the studies that ran them (each study's value in brackets; the studies differ between "
        "cells where a later study ran part of the grid: read changes from the steps below, which pair them)",
        "summary": "",
        "columns": [
            "size",
            "studies",
            "parameters",
            "pre-training windows",
            "steps",
            "held-out loss",
            "mean probe AUROC",
            "mean probe Pearson r",
            "hand-crafted AUROC",
            "CPU-min",
            "load",
        ],
        "rows": [
            [
                row["size"],
                studies(row["studies"]),
                f"{row['parameters']:,}",
                f"{row['pretraining_windows']:,}",
                " / ".join(f"{steps:,}" for steps in row["steps"]),
                values(row, "held_out_loss", 4),
                values(row, "mean_probe_auroc", 3),
                values(row, "mean_probe_pearson_r", 3),
                values(row, "mean_handcrafted_auroc", 3),
                " + ".join(f"{seconds / 60:.1f}" for seconds in row["pretraining_cpu_seconds"]),
                ", ".join(f"{load:.1f}" for load in row["load_average"]),
            ]
            for row in cells
        ],
    }
    step_table = {
        "title": "Steps: the change from one cell to the next, mean over the studies that ran both (each study's in "
        "brackets)",
        "summary": (
            "One study's SD of a step's change, pooled from the studies' disagreement on each step: held-out loss "
            f"{sd['held_out_loss']:.4f}, probe AUROC {sd['mean_probe_auroc']:.4f}, probe Pearson r "
            f"{sd['mean_probe_pearson_r']:.4f} ({summary['degrees_of_freedom']} degrees of freedom). The mean over n "
            f'studies has SD 1/√n of it; "beyond noise" is a mean change beyond {summary["t_quantile"]:.2f} of those '
            "(the two-sided 95 % t quantile at those degrees of freedom, times SD/√n), each step on its own: not "
            f"corrected for the {len(steps)} steps, and adjacent steps share a cell, so one of them may pass it by "
            "chance. Worse: a higher loss, a lower probe."
        ),
        "columns": ["axis", "from", "to", "studies", "held-out loss", "mean probe AUROC", "mean probe Pearson r"],
        "rows": [
            [
                step["axis"],
                step["from"],
                step["to"],
                studies(step["studies"]),
                signed(step["held_out_loss"], 4),
                signed(step["mean_probe_auroc"], 3),
                signed(step["mean_probe_pearson_r"], 3),
            ]
            for step in steps
        ],
    }
    header = (
        "# Wearable foundation model: scaling study, replicated\n\n"
        f"{len(names)} studies of one grid, each with its own seed (its own pre-training cohort, held-out and probe "
        f"participants): {'; '.join(f'{number + 1}: `{name}`' for number, name in enumerate(names))}. Figure: "
        "`replicates.html` (the means, bars spanning the studies' values; `plotly.min.js` beside it). CPU-min: each "
        "study's pre-training; load: the 1-minute load average after each study's run (see each study's table)."
    )
    return markdown([cell_table, step_table], header=header)
