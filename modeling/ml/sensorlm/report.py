"""The committed SensorLM reports: one model's evaluation, and the caption-level x loss ablation in one table."""

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modeling.ml.lsm.evaluate import markdown
from modeling.ml.sensorlm.evaluate import EvaluationSettings, evaluate, evaluation_tables
from modeling.ml.sensorlm.model import LOSSES
from modeling.ml.sensorlm.train import train_sensorlm
from modeling.ml.train import TrainConfig

# The paper's ablation adds levels one at a time, from numbers to shapes to events.
LEVEL_SETS = (("statistical",), ("statistical", "structural"), ("statistical", "structural", "semantic"))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(text)
    partial.replace(path)


def evaluation_report(
    model_dir: Path,
    settings: EvaluationSettings,
    *,
    output_dir: Path | None = None,
    progress: Callable[[float, str], None] = lambda fraction, message: None,
) -> dict[str, Any]:
    """Evaluate ``model_dir`` and, with ``output_dir``, write evaluation.md and evaluation.json there."""
    load_before = [round(value, 2) for value in os.getloadavg()]  # was anything else heavy running?
    started = time.perf_counter()
    result = evaluate(model_dir, settings, progress)
    result["run"] = {
        "load_average_before": load_before,
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "wall_s": round(time.perf_counter() - started, 1),
    }
    tables = evaluation_tables(result)
    header = (
        f"# SensorLM evaluation\n\nModel `{model_dir}` ({result['size']}, {result['loss']} loss, caption levels "
        f"{' + '.join(result['caption_levels'])}); {settings.participants} new simulated participants x {settings.days} days "
        f"(seed {settings.seed}), split 50/50 by participant: probes fitted on one half, every method scored once on the other. "
        f"Run in {result['run']['wall_s'] / 60:.1f} min; load average (1, 5, 15 min) {result['run']['load_average_before']} "
        f"before, {result['run']['load_average_after']} after."
    )
    text = markdown(tables, header=header)
    if result["captioning"].get("examples"):
        text += (
            "\n## Example captions (test days)\n\n"
            + "\n".join(
                f"- reference: {example['reference']}"
                + "".join(f"\n  {method}: {caption}" for method, caption in example.items() if method != "reference")
                for example in result["captioning"]["examples"]
            )
            + "\n"
        )
    if output_dir:
        _write(output_dir / "evaluation.md", text)
        _write(
            output_dir / "evaluation.json",
            json.dumps(
                {**result, "settings": {**asdict(settings), "lsm_model": str(settings.lsm_model or "")}},
                indent=1,
                default=float,
            ),
        )
    return {"result": result, "tables": tables, "markdown": text}


def _ablation_evaluation() -> EvaluationSettings:
    # The table shows point estimates only, which do not depend on the bootstrap.
    return EvaluationSettings(participants=120, days=3, bootstrap=20, caption_days=100)


@dataclass
class AblationSettings:
    size: str = "tiny"
    participants: int = 200
    days: int = 3
    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 2e-3
    seed: int = 0
    evaluation: EvaluationSettings = field(default_factory=_ablation_evaluation)

    def __post_init__(self) -> None:
        self.evaluation = self.evaluation or _ablation_evaluation()  # an explicit None means the default too


def _point(result: dict[str, Any] | None, metric: str) -> str:
    value = (result or {}).get(metric)
    return "—" if not value or value[0] is None else f"{value[0]:.3f}"


def ablation(
    settings: AblationSettings,
    output_dir: Path,
    progress: Callable[[float, str], None] = lambda fraction, message: None,
) -> dict[str, Any]:
    """Every caption-level set with every loss, CLIP first. A finished run (its result.json) is not redone, so an
    interrupted ablation resumes. Writes ablation.md and ablation.json in ``output_dir``."""
    runs = [(levels, loss) for loss in LOSSES for levels in LEVEL_SETS]
    rows, results = [], []
    for position, (levels, loss) in enumerate(runs):
        name = "+".join(levels) + f"-{loss}"
        run_dir = output_dir / "runs" / name
        result_path = run_dir / "result.json"
        progress(position / len(runs), f"{name}: training")
        if result_path.exists():
            result = json.loads(result_path.read_text())
        else:
            config = TrainConfig(
                steps=settings.steps,
                batch_size=settings.batch_size,
                learning_rate=settings.learning_rate,
                seed=settings.seed,
                checkpoint_every=max(50, settings.steps // 4),
            )
            trained = train_sensorlm(
                size=settings.size,
                participants=settings.participants,
                days=settings.days,
                seed=settings.seed,
                train_config=config,
                output_dir=run_dir,
                loss=loss,
                levels=levels,
                device=settings.evaluation.device,
            )
            progress((position + 0.7) / len(runs), f"{name}: evaluating")
            result = evaluate(Path(trained["model_dir"]), settings.evaluation)
            result["final_training_loss"] = trained["final"].get("loss")
            _write(result_path, json.dumps(result, indent=1, default=float))
        results.append(result)
        activity, retrieval, captioning = (
            result["activity"]["zero-shot SensorLM"],
            result["retrieval"],
            result["captioning"],
        )
        coca = captioning.get("CoCa greedy caption")
        rows.append(
            [
                " + ".join(levels),
                loss,
                _point(activity["activity"], "auroc"),
                _point(activity["activity"], "f1_macro"),
                _point(activity["cardio vs strength"], "auroc"),
                _point(activity["locomotion vs stationary"], "auroc"),
                f"{retrieval['sensor_to_text_r@1']:.3f} / {retrieval['sensor_to_text_r@10']:.3f}",
                "—" if not coca else f"{coca['bleu']:.1f} / {coca['rouge_l']:.3f}",
            ]
        )
    chance = results[0]["retrieval"] if results else {}
    table = {
        "title": "Caption levels x losses",
        "summary": f"Each row trained {settings.steps} steps (batch {settings.batch_size}) on {settings.participants} simulated participants x "
        f"{settings.days} days (seed {settings.seed}), evaluated on {settings.evaluation.participants} new participants "
        f"(seed {settings.evaluation.seed}). Zero-shot columns are AUROC / macro-F1 over activity classes and the binary "
        f"groupings; retrieval is sensor -> text R@1 / R@10 among {chance.get('candidates', '?')} test days against captions "
        f"of the row's own levels (chance {chance.get('chance_r@1', 0):.3f} / {chance.get('chance_r@10', 0):.3f}); "
        "captioning is CoCa's greedy BLEU / ROUGE-L.",
        "columns": [
            "caption levels",
            "loss",
            "zero-shot AUROC",
            "zero-shot macro-F1",
            "cardio vs strength AUROC",
            "locomotion vs stationary AUROC",
            "retrieval R@1 / R@10",
            "captioning BLEU / ROUGE-L",
        ],
        "rows": rows,
    }
    text = markdown([table], header="# SensorLM ablation: caption levels and losses")
    _write(output_dir / "ablation.md", text)
    _write(
        output_dir / "ablation.json",
        json.dumps(
            {
                "settings": {
                    **asdict(settings),
                    "evaluation": {
                        **asdict(settings.evaluation),
                        "lsm_model": str(settings.evaluation.lsm_model or ""),
                    },
                },
                "rows": rows,
                "results": results,
            },
            indent=1,
            default=str,
        ),
    )
    progress(1.0, "done")
    return {"tables": [table], "markdown": text}
