"""The foundation model's evaluation report: downstream tasks and generative tasks, as markdown and JSON.

One function behind the CLI (``python -m modeling.ml lsm evaluate``) and the ``lsm_evaluate`` job,
so the committed tables and the site's job results come from the same code.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeling.ml.common.settings import setting
from modeling.ml.lsm.evaluate import downstream_tables, evaluate, markdown, represent
from modeling.ml.lsm.generative import generative_tables, run_generative
from modeling.ml.lsm.pretrain import load_pretrained
from modeling.ml.lsm.supervised import SupervisedSettings


@dataclass
class ReportSettings:
    """An evaluation of the foundation model, as the command line (``lsm evaluate``) and the job form take it."""

    participants: int = setting(200, "New simulated participants, split 70/30.", minimum=10, maximum=100_000)
    days: int = setting(4, minimum=2, maximum=60)
    few_shot: list[int] = setting([1, 5, 10, 25], "Labelled participants per class.", minimum=1)
    pca: bool = setting(False, "PCA-50 before the probes, as published.")
    supervised_steps: int = setting(
        200,
        "Training steps of the supervised-from-scratch baseline per task; 0 leaves it out.",
        minimum=0,
        maximum=100_000,
    )
    # False by default, so a config that does not name it (a form's unticked box, an older API client) keeps both parts.
    generative_only: bool = setting(False, "Only the generative tasks: no downstream probes, no supervised baseline.")
    generative: bool = setting(True, "Imputation, gap filling, forecasting, channel imputation.")
    generative_participants: int = setting(
        0, "New participants for the generative tasks; 0: a quarter of --participants.", minimum=0, maximum=100_000
    )
    bootstrap: int = setting(200, "Bootstrap resamples for the 95 % CIs.", minimum=0, maximum=10_000)
    seed: int = setting(1000, "Another seed than pre-training: participants the model never saw.", minimum=0)

    def check(self) -> None:
        if self.generative_only and not self.generative:
            raise ValueError("generative: generative only, without the generative tasks, leaves nothing to run")


def evaluation_report(
    model_dir: Path,
    settings: ReportSettings,
    *,
    device: str = "cpu",
    output_dir: Path | None = None,
    progress: Callable[[float, str], None] = lambda fraction, message: None,
) -> dict[str, Any]:
    """Run the evaluations. Returns raw results, ``tables`` and ``markdown`` per part ("downstream", "generative");
    writes ``<part>.md`` and ``<part>.json`` under ``output_dir`` if given."""
    model_dir = Path(model_dir)
    config = load_pretrained(model_dir)[0].config
    share = 0.0 if settings.generative_only else 0.85 if settings.generative else 1.0
    report: dict[str, Any] = {"tables": {}, "markdown": {}}
    if not settings.generative_only:
        rows = _downstream(model_dir, settings, device, progress, share)
        report["downstream"] = rows
        report["tables"]["downstream"] = downstream_tables(rows)
        report["markdown"]["downstream"] = markdown(
            report["tables"]["downstream"], header=_downstream_header(model_dir, settings, config)
        )
    if settings.generative:
        progress(share, "generative tasks")
        participants = settings.generative_participants or max(10, settings.participants // 4)
        results = run_generative(
            model_dir,
            participants=participants,
            days=max(2, settings.days),
            seed=settings.seed + 1,
            device=device,
        )
        report["tables"]["generative"] = generative_tables(results)
        report["generative"] = results
        report["markdown"]["generative"] = markdown(
            report["tables"]["generative"],
            header=(
                f"# Wearable foundation model: generative evaluation\n\nModel `{model_dir.name}` ({config.size}). Each method fills the same "
                f"hidden minutes of the days of {participants} new simulated participants (seed {settings.seed + 1}) from the same visible "
                "minutes, scored only where the truth was observed. Seasonal naive copies the same minute of the day before."
            ),
        )
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        for part, text in report["markdown"].items():
            (output_dir / f"{part}.md").write_text(text)
            (output_dir / f"{part}.json").write_text(json.dumps(report[part], indent=1, default=float))
    progress(1.0, "done")
    return report


def _downstream(
    model_dir: Path,
    settings: ReportSettings,
    device: str,
    progress: Callable[[float, str], None],
    share: float,
) -> list[dict[str, Any]]:
    progress(0.0, "embedding the evaluation cohort")
    representations = represent(
        model_dir,
        participants=settings.participants,
        days=settings.days,
        seed=settings.seed,
        device=device,
        keep_windows=bool(settings.supervised_steps),
    )
    supervised = (
        SupervisedSettings(steps=settings.supervised_steps, seed=settings.seed, device=device)
        if settings.supervised_steps
        else None
    )
    return evaluate(
        representations,
        seed=settings.seed,
        few_shot=tuple(settings.few_shot),
        pca=settings.pca,
        bootstrap=settings.bootstrap,
        supervised_settings=supervised,
        progress=lambda task, position, total: progress(share * position / total, f"downstream: {task}"),
    )


def _downstream_header(model_dir: Path, settings: ReportSettings, config: Any) -> str:
    return (
        f"# Wearable foundation model: downstream evaluation\n\nModel `{model_dir.name}`: {config.size}, "
        f"{config.patch_minutes}-minute x {config.patch_channels}-channel patches. {settings.participants} new simulated participants "
        f"x {settings.days} days (seed {settings.seed}), split 70/30 by participant; bootstrap 95 % CIs over test participants in "
        "brackets. Pre-trained probe: logistic or ridge regression, its regularization cross-validated inside the "
        "training participants, on frozen embeddings (the last layer mean-pooled per channel)"
        + (" after PCA-50" if settings.pca else "")
        + "; hand-crafted: the same probes on daily-summary statistics (mean, SD, "
        "10th/90th percentiles of steps, activity, sleep, resting heart rate, HRV, SpO2, respiration, skin temperature, stress, wear)"
        + (
            f"; supervised: the same encoder from random weights with a linear head, trained end to end on the task (at most "
            f"{settings.supervised_steps} steps of 16 windows, at most 10 passes over a few-shot subset)"
            if settings.supervised_steps
            else ""
        )
        + ". AUROC for classification (higher is better), MAE for regression (lower is better)."
    )
