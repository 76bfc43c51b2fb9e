"""Replicated scaling studies: finished studies of one grid, each with its own seed, combined into one table and
figure, every step along each axis judged against the studies' disagreement on it (``lsm scaling-replicates``)."""

import json
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import t as student_t

from modeling.ml.common.output_lock import output_lock
from modeling.ml.lsm.evaluate import markdown
from modeling.ml.lsm.scaling import figure

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
