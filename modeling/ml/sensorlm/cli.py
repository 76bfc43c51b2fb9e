"""``python -m modeling.ml sensorlm train|tag|evaluate|ablation``.

python -m modeling.ml sensorlm train --size tiny --loss coca --participants 400 --days 3 --steps 1200 --output runs/sensorlm-tiny
python -m modeling.ml sensorlm tag --model runs/sensorlm-tiny/model   # the activity tagger of an older model
python -m modeling.ml sensorlm evaluate --model runs/sensorlm-tiny/model --output docs/results/sensorlm-tiny
python -m modeling.ml sensorlm ablation --output docs/results/sensorlm-tiny
"""

import argparse
import json
from pathlib import Path

from modeling.ml.common.settings import add_settings_arguments, settings_from_arguments
from modeling.ml.sensorlm.model import SIZES
from modeling.ml.sensorlm.train import SensorLMTrainSettings


def add_parser(families: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    commands = families.add_parser("sensorlm", help="the sensor-language model").add_subparsers(
        dest="command", required=True
    )
    train_parser = commands.add_parser("train", help="sensor-caption pre-training on simulated participants")
    add_settings_arguments(train_parser, SensorLMTrainSettings)
    train_parser.set_defaults(parser=train_parser)
    train_parser.add_argument(
        "--init-from", type=Path, help="a foundation-model (lsm) checkpoint to start the sensor tower from"
    )
    train_parser.add_argument("--device", default="auto")
    train_parser.add_argument("--output", type=Path, required=True)
    tag_parser = commands.add_parser(
        "tag",
        help="fit the activity tagger of a model trained before it existed, on the model's own training days "
        "(training fits it itself)",
    )
    tag_parser.add_argument("--model", type=Path, required=True)
    tag_parser.add_argument("--device", default="auto")
    evaluate_parser = commands.add_parser(
        "evaluate", help="zero-shot activities, retrieval, captioning against baselines"
    )
    evaluate_parser.add_argument("--model", type=Path, required=True)
    evaluate_parser.add_argument("--participants", type=int, default=200)
    evaluate_parser.add_argument("--days", type=int, default=3)
    evaluate_parser.add_argument("--seed", type=int, default=1000, help="another seed than training: new participants")
    evaluate_parser.add_argument("--bootstrap", type=int, default=200)
    evaluate_parser.add_argument("--caption-days", type=int, default=200)
    evaluate_parser.add_argument(
        "--caption-samples", type=int, default=16, help="captions sampled per day for the reranked ones (0: none)"
    )
    evaluate_parser.add_argument(
        "--lsm", type=Path, help="a foundation-model checkpoint whose linear probe joins the references"
    )
    evaluate_parser.add_argument("--device", default="auto")
    evaluate_parser.add_argument("--output", type=Path, help="write evaluation.md and evaluation.json here")
    ablation_parser = commands.add_parser("ablation", help="caption levels x {clip, siglip, coca} in one table")
    ablation_parser.add_argument("--size", default="tiny", choices=list(SIZES))
    ablation_parser.add_argument("--participants", type=int, default=200)
    ablation_parser.add_argument("--days", type=int, default=3)
    ablation_parser.add_argument("--steps", type=int, default=300)
    ablation_parser.add_argument("--evaluation-participants", type=int, default=120)
    ablation_parser.add_argument("--seed", type=int, default=0)
    ablation_parser.add_argument("--device", default="auto")
    ablation_parser.add_argument(
        "--output", type=Path, required=True, help="ablation.md/.json here, the runs under runs/"
    )


def run(args: argparse.Namespace) -> None:
    from modeling.ml.train import choose_device

    def report(fraction: float, message: str) -> None:
        print(f"[{fraction:4.0%}] {message}", flush=True)

    if args.command == "train":
        from modeling.ml.sensorlm.train import train_sensorlm_with

        result = train_sensorlm_with(
            settings_from_arguments(SensorLMTrainSettings, args, args.parser),
            output_dir=args.output,
            init_from=args.init_from,
            device=args.device,
            progress=lambda step, total, metrics: (
                print(json.dumps(metrics)) if step % 10 == 0 or step == total else None
            ),
        )
        print(json.dumps({key: value for key, value in result.items() if key != "final"}, indent=2))
    elif args.command == "tag":
        from modeling.ml.sensorlm.train import tag_saved_model

        print(json.dumps(tag_saved_model(args.model, choose_device(args.device)), indent=2))
    elif args.command == "evaluate":
        from modeling.ml.sensorlm.evaluate import EvaluationSettings
        from modeling.ml.sensorlm.report import evaluation_report

        settings = EvaluationSettings(
            participants=args.participants,
            days=args.days,
            seed=args.seed,
            bootstrap=args.bootstrap,
            caption_days=args.caption_days,
            caption_samples=args.caption_samples,
            lsm_model=args.lsm,
            device=choose_device(args.device),
        )
        print(evaluation_report(args.model, settings, output_dir=args.output, progress=report)["markdown"])
    else:
        from modeling.ml.sensorlm.evaluate import EvaluationSettings
        from modeling.ml.sensorlm.report import AblationSettings, ablation

        ablation_settings = AblationSettings(
            size=args.size,
            participants=args.participants,
            days=args.days,
            steps=args.steps,
            seed=args.seed,
            evaluation=EvaluationSettings(
                participants=args.evaluation_participants,
                days=args.days,
                bootstrap=20,
                caption_days=100,
                device=choose_device(args.device),
            ),
        )
        print(ablation(ablation_settings, args.output, progress=report)["markdown"])
