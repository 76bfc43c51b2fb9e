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
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

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
