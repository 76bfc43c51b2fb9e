"""Scaling study: model size x pre-training data, against held-out reconstruction loss and probe quality.

Every run pre-trains from scratch for the same number of steps, then is scored on the same held-out
material: the masked reconstruction loss on days of participants no run trained on (a fixed mask),
and the mean probe AUROC / Pearson r over the downstream tasks on another set of new participants.

Sizes are named (``tiny``, ``small``, ...) or ``<width>x<depth>`` (e.g. ``128x3``): the tiny
recipe at another width and depth, which is how a CPU-sized study spans parameters.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from modeling.ml.data.labels import TASKS
from modeling.ml.lsm.evaluate import evaluate, markdown, represent
from modeling.ml.lsm.model import SIZES, standardize
from modeling.ml.lsm.pretrain import load_pretrained, pretrain, simulated_windows
from modeling.ml.train import TrainConfig

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
    sizes: tuple[str, ...] = ("32x1", "64x2", "128x3")
    windows: tuple[int, ...] = (200, 800, 3200)
    days: int = 4
    steps: int = 300
    batch_size: int = 16
    learning_rate: float = 1e-3
    seed: int = 0
    probe_participants: int = 150
    device: str = "cpu"


def held_out_loss(model_dir: Path, values: np.ndarray, observed: np.ndarray, device: str, seed: int) -> float:
    """Masked reconstruction loss on fixed held-out days, the same mask for every model of a study."""
    model, mean, std = load_pretrained(model_dir, device)
    observed_tensor = torch.tensor(observed)
    standardized = standardize(torch.tensor(values), observed_tensor, mean, std)
    with torch.no_grad():
        output = model(
            standardized.to(device), observed_tensor.to(device), generator=torch.Generator().manual_seed(seed)
        )
    return float(output.loss)


def scaling_study(
    settings: ScalingSettings, output_dir: Path, progress: Callable[[float, str], None] = lambda fraction, message: None
) -> list[dict[str, Any]]:
    held = simulated_windows(participants=40, days=2, seed=settings.seed + 2000)
    runs = [(size, windows) for size in settings.sizes for windows in settings.windows]
    results = []
    for position, (size, windows) in enumerate(runs):
        progress(position / len(runs), f"{size} on {windows} windows")
        named, overrides = size_overrides(size)
        participants = max(5, windows // settings.days)
        run_dir = output_dir / "runs" / f"{size}-{windows}"
        config = TrainConfig(
            steps=settings.steps,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            seed=settings.seed,
            checkpoint_every=settings.steps,
        )
        trained = pretrain(
            size=named,
            participants=participants,
            days=settings.days,
            seed=settings.seed,
            train_config=config,
            output_dir=run_dir,
            device=settings.device,
            **overrides,
        )
        model_dir = Path(trained["model_dir"])
        representations = represent(
            model_dir,
            participants=settings.probe_participants,
            days=2,
            seed=settings.seed + 1000,
            device=settings.device,
        )
        rows = evaluate(representations, seed=settings.seed, few_shot=(), bootstrap=0)
        auroc = [
            row["pretrained"]["auroc"][0]
            for row in rows
            if row["kind"] != "regression" and row["pretrained"].get("auroc")
        ]
        pearson = [row["pretrained"]["pearson_r"][0] for row in rows if row["kind"] == "regression"]
        results.append(
            {
                "size": size,
                "parameters": trained["parameters"],
                "pretraining_windows": trained["train_windows"],
                "steps": settings.steps,
                "held_out_loss": held_out_loss(model_dir, held.values, held.observed, settings.device, settings.seed),
                "mean_probe_auroc": float(np.nanmean(auroc)),
                "mean_probe_pearson_r": float(np.nanmean(pearson)),
                "windows_per_s": trained["final"].get("windows_per_s"),
            }
        )
    progress(1.0, "done")
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
                fig.add_trace(
                    go.Scatter(
                        x=[result[x_key] for result in chosen],
                        y=[result[metric] for result in chosen],
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
            "mean probe AUROC",
            "mean probe Pearson r",
            "windows/s",
        ],
        "rows": [
            [
                r["size"],
                f"{r['parameters']:,}",
                f"{r['pretraining_windows']:,}",
                f"{r['held_out_loss']:.4f}",
                f"{r['mean_probe_auroc']:.3f}",
                f"{r['mean_probe_pearson_r']:.3f}",
                f"{r['windows_per_s']}",
            ]
            for r in results
        ],
    }
    header = (
        f"# Wearable foundation model: scaling study\n\nEach run pre-trains from scratch for {settings.steps} steps of "
        f"{settings.batch_size} windows (AIM masking), on 80 % of the participants of a simulated cohort of the given size "
        f"(seed {settings.seed}). Held-out loss: masked reconstruction on 80 days of 40 participants no run saw, with the same mask "
        f"for every model. Probe: logistic/ridge on frozen embeddings of {settings.probe_participants} other new participants "
        f"(70/30 split), averaged over the {sum(t.kind != 'regression' for t in TASKS)} classification and "
        f"{sum(t.kind == 'regression' for t in TASKS)} regression tasks. Figure: `scaling.html`, which loads `plotly.min.js` from "
        "its folder (the command writes it there; it is not committed)."
    )
    (output_dir / "scaling.md").write_text(markdown([table], header=header))
    (output_dir / "scaling.json").write_text(json.dumps(results, indent=1))
    figure(results).write_html(output_dir / "scaling.html", include_plotlyjs="directory", full_html=True)
