"""``python -m modeling.ml ...``: the model library's command line (no Django; runs under torchrun too).

    python -m modeling.ml lsm pretrain --size tiny --participants 64 --days 4 --steps 200 --output runs/lsm-tiny
    torchrun --nproc-per-node 4 -m modeling.ml lsm pretrain --size base ...
"""

import argparse
import json
from pathlib import Path

from modeling.ml.train import TrainConfig


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modeling.ml")
    families = parser.add_subparsers(dest="family", required=True)
    lsm = families.add_parser("lsm", help="the wearable foundation model").add_subparsers(dest="command", required=True)
    pretrain_parser = lsm.add_parser("pretrain", help="masked pre-training on simulated participants")
    pretrain_parser.add_argument("--size", default="tiny", choices=["tiny", "small", "base", "large"])
    pretrain_parser.add_argument("--participants", type=int, default=64)
    pretrain_parser.add_argument("--days", type=int, default=4)
    pretrain_parser.add_argument("--seed", type=int, default=0)
    pretrain_parser.add_argument("--steps", type=int, default=200)
    pretrain_parser.add_argument("--batch-size", type=int, default=8)
    pretrain_parser.add_argument("--learning-rate", type=float, default=1e-3)
    pretrain_parser.add_argument("--mask-strategy", default="aim", choices=["random", "temporal", "channel", "aim"])
    pretrain_parser.add_argument("--device", default="auto")
    pretrain_parser.add_argument("--compile", action="store_true")
    pretrain_parser.add_argument("--output", type=Path, required=True)
    evaluate_parser = lsm.add_parser("evaluate", help="linear probes on the 30+ tasks, against hand-crafted features")
    evaluate_parser.add_argument("--model", type=Path, required=True, help="a pre-trained model directory")
    evaluate_parser.add_argument("--participants", type=int, default=200)
    evaluate_parser.add_argument("--days", type=int, default=4)
    evaluate_parser.add_argument("--seed", type=int, default=1000, help="use another seed than pre-training: new participants")
    evaluate_parser.add_argument("--pca", action="store_true", help="PCA-50 before the probe, as published")
    evaluate_parser.add_argument("--output", type=Path, help="write the markdown table here")
    args = parser.parse_args(argv)

    if args.command == "evaluate":
        from modeling.ml.lsm.evaluate import evaluate, markdown_table, represent

        representations = represent(args.model, participants=args.participants, days=args.days, seed=args.seed)
        rows = evaluate(representations, seed=args.seed, pca=args.pca)
        table = markdown_table(rows, header=f"# Wearable foundation model: downstream evaluation\n\nModel `{args.model}`; "
                               f"{args.participants} new simulated participants x {args.days} days (seed {args.seed}), 70/30 split by "
                               "participant; AUROC (classification) or MAE (regression) with bootstrap 95 % CIs over test participants.")
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(table)
        print(table)
        return

    from modeling.ml.lsm.pretrain import pretrain

    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed, compile=args.compile)
    result = pretrain(size=args.size, participants=args.participants, days=args.days, seed=args.seed, train_config=config,
                      output_dir=args.output, device=args.device, mask_strategy=args.mask_strategy,
                      progress=lambda step, total, metrics: print(json.dumps(metrics)) if step % 10 == 0 or step == total else None)
    print(json.dumps({key: value for key, value in result.items() if key != "final"}, indent=2))


if __name__ == "__main__":
    main()
