"""``python -m modeling.ml ...``: the model library's command line (no Django; runs under torchrun too).

python -m modeling.ml lsm pretrain --size tiny --participants 64 --days 4 --steps 200 --output runs/lsm-tiny
torchrun --nproc-per-node 4 -m modeling.ml lsm pretrain --size base ...
python -m modeling.ml lsm evaluate --model runs/lsm-tiny/model --output docs/results/lsm-tiny
python -m modeling.ml sensorlm train|evaluate|ablation ...   (see modeling/ml/sensorlm/cli.py)
python -m modeling.ml lsm scaling --sizes 32x1 64x2 128x3 --windows 400 1600 6400 --output docs/results/lsm-scaling
python -m modeling.ml twin train --size tiny --participants 4000 --days 730 --steps 1400 --output runs/twin-tiny
python -m modeling.ml twin evaluate --model runs/twin-tiny/model --output docs/results/twin-tiny
"""

import argparse
import functools
import importlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from modeling.ml.common.output_lock import FolderInUse, output_lock
from modeling.ml.common.settings import add_settings_arguments, settings_from_arguments
from modeling.ml.data.clinical import DIAGNOSTIC_CRITERIA, ENDPOINTS
from modeling.ml.heads.settings import HeadSearchSettings
from modeling.ml.lsm.pretrain import PretrainSettings
from modeling.ml.lsm.probe_study import ProbeStudySettings
from modeling.ml.lsm.report import ReportSettings
from modeling.ml.lsm.scaling import ScalingSettings
from modeling.ml.sensorlm import cli as sensorlm_cli
from modeling.ml.twin.hazard import HAZARD_ENDPOINTS, POOLING
from modeling.ml.twin.risk import RISK_FROM_MEASUREMENTS
from modeling.ml.twin.training import TwinTrainSettings


def compare_header(args: argparse.Namespace) -> str:
    language_model = "llm" in args.proposers
    return (
        f"# Prediction-head search\n\nModel `{args.model}`; {args.participants} new simulated participants x {args.days} days "
        f"(seed {args.seed}), split 60/20/20 by participant; {args.budget} trainings per method and task; test metric with "
        f"bootstrap 95 % CIs. Methods: {', '.join(args.proposers)}"
        + (
            f" (language model: {args.llm_backend} {args.llm_model}, temperature {args.llm_temperature}, decoding constrained to the "
            "spec schema)."
            if language_model
            else "."
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modeling.ml")
    families = parser.add_subparsers(dest="family", required=True)
    lsm = families.add_parser("lsm", help="the wearable foundation model").add_subparsers(dest="command", required=True)
    pretrain_parser = lsm.add_parser("pretrain", help="masked pre-training on simulated participants")
    add_settings_arguments(pretrain_parser, PretrainSettings)
    pretrain_parser.set_defaults(parser=pretrain_parser)
    pretrain_parser.add_argument("--device", default="auto")
    pretrain_parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    pretrain_parser.add_argument("--output", type=Path, required=True)
    evaluate_parser = lsm.add_parser(
        "evaluate", help="30+ downstream tasks (probe, hand-crafted, supervised) and generative tasks"
    )
    evaluate_parser.add_argument("--model", type=Path, required=True, help="a pre-trained model directory")
    add_settings_arguments(evaluate_parser, ReportSettings)
    evaluate_parser.set_defaults(parser=evaluate_parser)
    evaluate_parser.add_argument("--device", default="auto")
    evaluate_parser.add_argument(
        "--output", type=Path, help="write downstream.md/.json and generative.md/.json in this directory"
    )
    study_parser = lsm.add_parser(
        "probe-study",
        help="frozen embeddings against hand-crafted features on >= 1,000 new participants, paired intervals, few-shot draws",
    )
    study_parser.add_argument("--model", type=Path, required=True, help="a pre-trained model directory")
    add_settings_arguments(study_parser, ProbeStudySettings)
    study_parser.set_defaults(parser=study_parser)
    study_parser.add_argument(
        "--methods", choices=["standard", "diagnose"], default="standard", help="the results table, or every variant"
    )
    study_parser.add_argument("--tasks", nargs="+", help="task names (default: all)")
    study_parser.add_argument("--only", nargs="+", help="method names of the chosen set to run (handcrafted always)")
    study_parser.add_argument("--device", default="auto")
    study_parser.add_argument("--output", type=Path, required=True, help="probe_study.md/.json go here")
    scaling_parser = lsm.add_parser("scaling", help="model sizes x pre-training windows -> table and plotly figure")
    add_settings_arguments(scaling_parser, ScalingSettings)
    scaling_parser.set_defaults(parser=scaling_parser)
    scaling_parser.add_argument(
        "--rescore", action="store_true", help="recompute the held-out losses of a finished study in --output"
    )
    scaling_parser.add_argument(
        "--output", type=Path, required=True, help="scaling.md/.json/.html and the runs go here"
    )
    replicates_parser = lsm.add_parser(
        "scaling-replicates", help="finished scaling studies of one grid with other seeds -> means, steps, noise"
    )
    replicates_parser.add_argument(
        "--studies",
        nargs="+",
        required=True,
        help="folders with scaling.json, one per study; a study run in parts is its folders joined by '+'",
    )
    replicates_parser.add_argument(
        "--windows", type=int, nargs="+", help="only these data sizes (pre-training windows, as the tables count them)"
    )
    replicates_parser.add_argument("--output", type=Path, required=True, help="replicates.md/.json/.html go here")
    heads = families.add_parser("heads", help="prediction-head search over a frozen foundation model").add_subparsers(
        dest="command", required=True
    )
    settings = argparse.ArgumentParser(add_help=False)  # the comparison's settings, shared by compare and report
    settings.add_argument("--model", type=Path, required=True)
    add_settings_arguments(settings, HeadSearchSettings, skip=("proposers",))
    settings.add_argument(
        "--proposers",
        nargs="+",
        default=["random", "evolution", "tpe"],
        choices=["random", "evolution", "tpe", "llm", "classroom"],
        help="methods, each alone at the budget; classroom: random, evolution, tpe (and llm if listed) on one board",
    )
    settings.add_argument(
        "--llm-complete",
        default="healthagent.agent.backends.registry:json_completion",
        help="module:function that makes the language model's complete(messages, seed) from --llm-* (imported only for llm)",
    )
    settings.add_argument("--llm-backend", default="transformers", choices=["transformers", "openai_http"])
    settings.add_argument(
        "--llm-model",
        default="smollm2",
        help="transformers: smollm2 or a local model directory; openai_http: the model",
    )
    settings.add_argument(
        "--llm-url", default="", help="openai_http: the server's base URL, e.g. http://localhost:8000/v1"
    )
    settings.add_argument("--llm-timeout", type=float, default=300.0, help="seconds per proposal")
    settings.add_argument("--bootstrap", type=int, default=200)
    settings.add_argument("--output", type=Path)
    heads.add_parser(
        "compare", parents=[settings], help="linear probe vs each proposer's best head, per task, at equal budgets"
    )
    report_parser = heads.add_parser(
        "report", parents=[settings], help="one report from the JSON of comparisons run apart (e.g. a task each)"
    )
    report_parser.add_argument("--inputs", type=Path, nargs="+", required=True, help="the .json files compare wrote")
    sensorlm_cli.add_parser(families)
    _twin_commands(families)
    args = parser.parse_args(argv)

    if args.family == "sensorlm":
        sensorlm_cli.run(args)
        return
    if args.family == "twin":
        _twin(args)
        return

    if args.family == "heads" and args.command == "report":
        from modeling.ml.heads.compare import compare_markdown

        rows = [row for path in args.inputs for row in json.loads(path.read_text())]
        text = compare_markdown(rows, header=compare_header(args))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        args.output.with_suffix(".json").write_text(json.dumps(rows, indent=1, default=float))
        print(text)
        return

    if args.family == "heads":
        from modeling.ml.heads.compare import compare_markdown, compare_task, token_windows
        from modeling.ml.heads.search import EvolutionProposer, LanguageModelProposer, Proposer, RandomProposer
        from modeling.ml.heads.spec import decoding_schema
        from modeling.ml.heads.tpe import TPEProposer

        complete = None
        if "llm" in args.proposers:
            # The language model comes from outside the library, by name (by default the agent's backends: the same
            # SmolLM2 or HTTP server the agent uses); the library itself imports nothing of the site.
            module_name, _, function_name = args.llm_complete.partition(":")
            json_completion = getattr(importlib.import_module(module_name), function_name)
            complete = json_completion(
                backend=args.llm_backend,
                config={
                    "model": args.llm_model,
                    "base_url": args.llm_url,
                    "temperature": args.llm_temperature,
                    "max_new_tokens": 120,
                    "max_tokens": 300,
                    "seed": args.seed,
                },
                json_schema=decoding_schema(),
                timeout_s=args.llm_timeout,
            )

        def language_model(task: str) -> LanguageModelProposer:
            assert complete is not None  # set above whenever llm is asked for; classroom asks only then
            return LanguageModelProposer(complete, name=f"llm ({args.llm_model})", task=task)

        def classroom(task: str) -> list[Proposer]:
            proposers: list[Proposer] = [RandomProposer(), EvolutionProposer(), TPEProposer(seed=args.seed)]
            return proposers + ([language_model(task)] if complete else [])

        data, embeddings, labels = token_windows(
            args.model, participants=args.participants, days=args.days, seed=args.seed
        )
        rows = []
        for task in args.tasks:
            print(f"searching {task}", flush=True)
            methods: dict[str, Callable[[], Proposer | list[Proposer]]] = {
                "random": RandomProposer,
                "evolution": EvolutionProposer,
                "tpe": lambda: TPEProposer(seed=args.seed),
                "llm": functools.partial(language_model, task),
                "classroom": functools.partial(classroom, task),
            }
            rows.append(
                compare_task(
                    task,
                    data,
                    embeddings,
                    labels[task],
                    {name: methods[name] for name in args.proposers},
                    budget=args.budget,
                    seed=args.seed,
                    bootstrap=args.bootstrap,
                    progress=lambda message: print(message, flush=True),
                )
            )
            if args.output:  # written after every task, so a long run leaves its finished tasks behind
                args.output.parent.mkdir(parents=True, exist_ok=True)
                args.output.with_suffix(".json").write_text(json.dumps(rows, indent=1, default=float))
        text = compare_markdown(rows, header=compare_header(args))
        if args.output:
            args.output.write_text(text)
        print(text)
        return

    if args.command == "probe-study":
        from modeling.ml.data.labels import TASKS
        from modeling.ml.lsm import probe_study
        from modeling.ml.lsm.model import LSMConfig
        from modeling.ml.train import choose_device

        depth = LSMConfig.from_pretrained(args.model).depth
        compared = probe_study.STANDARD_METHODS if args.methods == "standard" else probe_study.diagnostic_methods(depth)
        if args.only:
            unknown = set(args.only) - set(compared)
            if unknown:
                study_parser.error(f"unknown methods {sorted(unknown)}; known: {sorted(compared)}")
            compared = {name: entry for name, entry in compared.items() if name == "handcrafted" or name in args.only}
        result = probe_study.run(
            args.model,
            args.output,
            settings_from_arguments(ProbeStudySettings, args, args.parser),
            compared,
            tasks=[task for task in TASKS if not args.tasks or task.name in args.tasks],
            device=choose_device(args.device),
            log=lambda message: print(message, flush=True),
        )
        print(probe_study.markdown(result))
        return

    if args.command == "scaling":
        from modeling.ml.lsm.scaling import rescore, scaling_study

        scaling_settings = settings_from_arguments(ScalingSettings, args, args.parser)
        try:
            if args.rescore:
                rescore(scaling_settings, args.output)
            else:
                scaling_study(
                    scaling_settings,
                    args.output,
                    progress=lambda fraction, message: print(f"[{fraction:4.0%}] {message}", flush=True),
                )
        except FolderInUse as error:
            raise SystemExit(f"error: {error}") from None
        print((args.output / "scaling.md").read_text())
        return

    if args.command == "scaling-replicates":
        from modeling.ml.lsm.replicates import replicates

        try:
            if any("" in study.split("+") for study in args.studies):
                raise ValueError("a study's parts are folders joined by '+', none of them empty")
            studies = [[Path(part) for part in study.split("+")] for study in args.studies]
            replicates(studies=studies, output_dir=args.output, windows=args.windows)
        except (FolderInUse, ValueError) as error:
            raise SystemExit(f"error: {error}") from None
        print((args.output / "replicates.md").read_text())
        return

    if args.command == "evaluate":
        from modeling.ml.lsm.report import evaluation_report
        from modeling.ml.train import choose_device

        report = evaluation_report(
            args.model,
            settings_from_arguments(ReportSettings, args, args.parser),
            device=choose_device(args.device),
            output_dir=args.output,
            progress=lambda fraction, message: print(f"[{fraction:4.0%}] {message}", flush=True),
        )
        print("\n".join(report["markdown"].values()))
        return

    from modeling.ml.lsm.pretrain import pretrain_with

    pretrain_settings = settings_from_arguments(PretrainSettings, args, args.parser)
    try:
        with output_lock(args.output):  # a second run on the folder would resume from, and overwrite, this one's state
            result = pretrain_with(
                pretrain_settings,
                output_dir=args.output,
                device=args.device,
                compile=args.compile,
                progress=lambda step, total, metrics: (
                    print(json.dumps(metrics)) if step % 10 == 0 or step == total else None
                ),
            )
    except FolderInUse as error:
        raise SystemExit(f"error: {error}") from None
    print(json.dumps({key: value for key, value in result.items() if key != "final"}, indent=2))


def _twin_commands(families: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    twin = families.add_parser("twin", help="the digital twin (decoder-only timeline model)").add_subparsers(
        dest="command", required=True
    )
    train_parser = twin.add_parser("train", help="train on simulated timelines; held-out loss on unseen participants")
    add_settings_arguments(train_parser, TwinTrainSettings)
    train_parser.set_defaults(parser=train_parser)
    train_parser.add_argument("--device", default="auto")
    train_parser.add_argument("--output", type=Path, required=True)
    train_parser.add_argument(
        "--continue-from",
        type=Path,
        help="a saved twin to train further on the new participants of --seed (its size, bins, block size and "
        "loss weighting are kept; its hazard head and risk calibration are dropped: run twin hazard and twin "
        "calibrate again)",
    )
    evaluate_parser = twin.add_parser(
        "evaluate", help="endpoint risk vs clinical scores, and randomized trials in the simulator"
    )
    evaluate_parser.add_argument("--model", type=Path, required=True)
    evaluate_parser.add_argument("--participants", type=int, default=4000, help="risk cohort")
    evaluate_parser.add_argument("--samples", type=int, default=4, help="sampled futures per participant for risk")
    evaluate_parser.add_argument("--horizon-days", type=int, default=365)
    evaluate_parser.add_argument("--trial-participants", type=int, default=80)
    evaluate_parser.add_argument("--trial-samples", type=int, default=8)
    evaluate_parser.add_argument("--bootstrap", type=int, default=500)
    evaluate_parser.add_argument(
        "--readout",
        default="measured",
        choices=["measured", "state"],
        help="how a biomarker is read at the horizon (see twin/generate.py)",
    )
    evaluate_parser.add_argument(
        "--risk-from-measurements",
        nargs="*",
        default=list(RISK_FROM_MEASUREMENTS),
        choices=[*DIAGNOSTIC_CRITERIA, "obesity"],
        help="diagnoses whose risk is read from the measurements meeting their criteria (none: from their tokens); "
        "obesity from the weight against the height, where the height is known",
    )
    evaluate_parser.add_argument(
        "--parts", nargs="+", default=["risk", "trials"], choices=["risk", "trials", "fidelity"]
    )
    evaluate_parser.add_argument("--seed", type=int, default=5000)
    evaluate_parser.add_argument("--device", default="auto")
    evaluate_parser.add_argument("--output", type=Path, help="risk.md/.json and trials.md/.json go here")
    calibrate_parser = twin.add_parser(
        "calibrate",
        help="fit each endpoint's risk factor (observed over predicted events) on a cohort of its own; "
        "writes it into the model's config.json and the details into calibration.json",
    )
    calibrate_parser.add_argument("--model", type=Path, required=True)
    calibrate_parser.add_argument("--participants", type=int, default=4000)
    calibrate_parser.add_argument("--seed", type=int, default=1, help="not the training seed, nor a report's")
    calibrate_parser.add_argument("--device", default="auto")
    hazard_parser = twin.add_parser(
        "hazard",
        help="fit the hazard head (each endpoint's first event as a rate per day) on new participants, into the "
        "model; its risk calibration is dropped: run twin calibrate again",
    )
    hazard_parser.add_argument("--model", type=Path, required=True)
    hazard_parser.add_argument("--participants", type=int, default=24000)
    hazard_parser.add_argument("--seed", type=int, default=21, help="not a seed the model trained on, nor a report's")
    hazard_parser.add_argument(
        "--penalty",
        type=float,
        default=1e-5,
        help="on the squares of the weights the endpoints share (of each endpoint's own, with a negative --pooling)",
    )
    hazard_parser.add_argument(
        "--pooling",
        type=float,
        default=POOLING,
        help="on the squares of each endpoint's deviation from the shared weights (above 0); a negative value fits "
        "each endpoint alone",
    )
    hazard_parser.add_argument(
        "--endpoints",
        nargs="+",
        default=list(HAZARD_ENDPOINTS),
        choices=[endpoint for endpoint in ENDPOINTS if endpoint not in RISK_FROM_MEASUREMENTS],
    )
    hazard_parser.add_argument("--device", default="auto")


def _twin(args: argparse.Namespace) -> None:
    from modeling.ml.train import choose_device

    if args.command == "train":
        from modeling.ml.twin.training import TwinTrainSettings, train_twin_with

        result = train_twin_with(
            settings_from_arguments(TwinTrainSettings, args, args.parser),
            output_dir=args.output,
            device=args.device,
            continue_from=args.continue_from,
            progress=lambda step, total, metrics: (
                print(json.dumps(metrics), flush=True) if step % 50 == 0 or step == total else None
            ),
        )
        print(json.dumps({key: value for key, value in result.items() if key != "final"}, indent=2))
        return
    if args.command == "hazard":
        from modeling.ml.twin.hazard import add_hazard_head

        fit = add_hazard_head(
            args.model,
            participants=args.participants,
            seed=args.seed,
            penalty=args.penalty,
            pooling=None if args.pooling < 0 else args.pooling,
            endpoints=tuple(args.endpoints),
            device=choose_device(args.device),
        )
        print(json.dumps(fit, indent=1))
        return
    if args.command == "calibrate":
        from modeling.ml.twin.calibration import calibrate_twin
        from modeling.ml.twin.evaluate import TwinReportSettings

        calibration = calibrate_twin(
            args.model,
            TwinReportSettings(participants=args.participants, seed=args.seed, device=choose_device(args.device)),
        )
        print(json.dumps(calibration["endpoints"], indent=1))
        return
    from modeling.ml.twin.evaluate import TwinReportSettings, twin_report

    settings = TwinReportSettings(
        participants=args.participants,
        samples=args.samples,
        horizon_days=args.horizon_days,
        trial_participants=args.trial_participants,
        trial_samples=args.trial_samples,
        bootstrap=args.bootstrap,
        readout=args.readout,
        risk_from_measurements=tuple(args.risk_from_measurements),
        seed=args.seed,
        device=choose_device(args.device),
    )
    report = twin_report(
        args.model,
        settings,
        output_dir=args.output,
        parts=tuple(args.parts),
        progress=lambda fraction, message: print(f"[{fraction:4.0%}] {message}", flush=True),
    )
    print("\n".join(part["markdown"] for part in report.values()))


if __name__ == "__main__":
    main()
