"""Job kind: the prediction-head search over a pre-trained foundation model (issue 9).

A classroom of proposers (random, evolution, TPE and optionally a language model through an agent
variant's backend) shares one leaderboard per task. Per task the best head is refitted as a
bootstrap ensemble, scored once on test, saved, and registered as a ``Checkpoint(family="lsm_head")``;
all of a job's heads are registered in one transaction at the end. ``lsm_predict`` uses a task's
head only when it clearly beat the linear probe on participants the search never saw.
"""

from collections.abc import Callable
from typing import Any

from django import forms
from django.db import transaction

from healthagent.models import AgentVariant, Cohort
from modeling.jobs import (
    JobContext,
    JobError,
    JobKind,
    job_checkpoint_record,
    job_language_model,
    job_queue_follow_up,
    kind_config,
    queue_by_checkpoint,
    register,
)
from modeling.ml.data.labels import TASKS
from modeling.ml.heads.spec import describe_spec
from modeling.models import Checkpoint

PROPOSERS = [
    ("random", "random (baseline)"),
    ("evolution", "evolution of the best specs"),
    ("tpe", "Optuna TPE"),
    ("llm", "language model (the agent variant below)"),
]
DEFAULT_TASKS = ["hypertension", "diabetes", "sleep_apnea", "systolic_bp"]
LLM_BACKENDS = (AgentVariant.Backend.TRANSFORMERS, AgentVariant.Backend.OPENAI_HTTP)


def _lsm_checkpoints():
    return Checkpoint.objects.filter(family="lsm").order_by("-created_at")


def _language_model_variants():
    return AgentVariant.objects.filter(backend__in=LLM_BACKENDS).order_by("name")


class HeadSearchForm(forms.Form):
    checkpoint = forms.ModelChoiceField(
        queryset=_lsm_checkpoints(), empty_label=None, help_text="The frozen foundation model."
    )
    tasks = forms.MultipleChoiceField(
        choices=[(task.name, f"{task.name} ({task.kind})") for task in TASKS], initial=DEFAULT_TASKS
    )
    proposers = forms.MultipleChoiceField(
        choices=PROPOSERS,
        initial=["random", "evolution", "tpe"],
        widget=forms.CheckboxSelectMultiple,
        help_text="The classroom: each proposes every round from one shared leaderboard.",
    )
    agent_variant = forms.ModelChoiceField(
        queryset=_language_model_variants(),
        required=False,
        help_text="The language model proposer's backend (transformers or OpenAI-compatible HTTP).",
    )
    llm_temperature = forms.FloatField(
        label="Language-model temperature",
        min_value=0.0,
        max_value=2.0,
        initial=0.7,
        required=False,
        help_text="Sampling temperature of the language-model proposer (0 = greedy: a repeated prompt "
        "repeats its spec; each proposal has its own seed).",
    )
    budget = forms.IntegerField(min_value=1, max_value=500, initial=12, help_text="Trainings per task.")
    time_limit_min = forms.FloatField(
        label="Time limit (minutes)",
        min_value=0.1,
        max_value=24 * 60,
        required=False,
        help_text="Wall time per task in minutes; no training starts after it. Empty: no limit.",
    )
    participants = forms.IntegerField(
        min_value=20,
        max_value=100_000,
        initial=150,
        help_text="New simulated participants with labels, split 60/20/20 (train/validation/test).",
    )
    days = forms.IntegerField(min_value=1, max_value=60, initial=2)
    replicates = forms.IntegerField(
        min_value=1, max_value=100, initial=5, help_text="Bootstrap heads behind each prediction's interval."
    )
    seed = forms.IntegerField(
        min_value=0, initial=3000, help_text="Another seed than pre-training: participants the model never saw."
    )
    predict_cohort = forms.ModelChoiceField(
        queryset=Cohort.objects.order_by("name"),
        required=False,
        help_text="When done, queue this cohort's predictions with the new heads.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["checkpoint"].queryset = _lsm_checkpoints()  # evaluated per form, not at import
        self.fields["agent_variant"].queryset = _language_model_variants()
        self.fields["predict_cohort"].queryset = Cohort.objects.order_by("name")

    def clean(self):
        cleaned = super().clean()
        if "llm" in cleaned.get("proposers", []) and not cleaned.get("agent_variant"):
            self.add_error(
                "agent_variant",
                "The language model proposer needs an agent variant with a transformers or HTTP backend.",
            )
        return cleaned


def _proposers(config: dict, task: str) -> list:
    from modeling.ml.heads.search import EvolutionProposer, LanguageModelProposer, RandomProposer
    from modeling.ml.heads.tpe import TPEProposer

    made: dict[str, Callable[[], Any]] = {
        "random": RandomProposer,
        "evolution": EvolutionProposer,
        "tpe": lambda: TPEProposer(seed=config["seed"]),
    }
    proposers = [made[name]() for name in config["proposers"] if name in made]
    if "llm" in config["proposers"]:
        from modeling.ml.heads.spec import decoding_schema

        language_model = job_language_model()
        if language_model is None:
            raise JobError("No language model is installed on this site for the head search's proposer.")
        variant = AgentVariant.objects.get(pk=config["agent_variant"])
        temperature = config.get("llm_temperature")
        complete = language_model(
            backend=variant.backend,
            config=variant.config,
            json_schema=decoding_schema(),
            timeout_s=float(variant.config.get("timeout_s", 300)),
            temperature=0.7 if temperature is None else float(temperature),
        )
        proposers.append(LanguageModelProposer(complete, name=f"llm ({variant.name})", task=task))
    return proposers


def run_head_search(context: JobContext) -> dict:
    from modeling.ml.heads.compare import token_windows
    from modeling.ml.heads.ensemble import save_ensemble
    from modeling.ml.heads.selection import search_task

    config = context.config
    base = Checkpoint.objects.get(pk=config["checkpoint"])
    tasks = config["tasks"]
    context.progress(0.0, "embedding the simulated participants with the frozen model")
    data, embeddings, labels = token_windows(
        base.path, participants=config["participants"], days=config["days"], seed=config["seed"], device=context.device
    )
    total = config["budget"] * len(tasks)
    results, saved = [], []
    for position, task in enumerate(tasks):

        def report(used, budget, entry, position=position, task=task):
            done = position * config["budget"] + used
            score = "" if entry.score is None else f" {entry.score:.3f}"
            context.progress(
                0.05 + 0.9 * done / total,
                f"{task}: {entry.proposer} {entry.status}{score} ({used} of {budget} trainings)",
                metrics={"score": entry.score} if entry.status == "trained" else None,
                step=done,
            )

        outcome = search_task(
            task,
            data,
            embeddings,
            labels[task],
            _proposers(config, task),
            budget=config["budget"],
            seed=config["seed"],
            time_limit_s=config["time_limit_min"] * 60 if config.get("time_limit_min") else None,
            replicates=config["replicates"],
            progress=report,
        )
        results.append(outcome.result)
        head = outcome.result["head"]
        context.log(
            f"{task}: {outcome.result['trainings']} trainings ({outcome.result['stopped']}), {outcome.result['invalid']} invalid; "
            + (
                f"best on the search fold {head['validation']:.3f} vs probe {outcome.result['probe']['validation'] or float('nan'):.3f}; "
                f"on the decision fold head − probe {outcome.result['decision']['difference'] or float('nan'):+.3f}: "
                f"{'uses the head' if outcome.result['uses_head'] else 'keeps the probe'}"
                if head
                else "no valid head"
            )
        )
        if outcome.ensemble is not None:
            outcome.ensemble.metadata["base_checkpoint"] = base.pk
            metrics = outcome.ensemble.metadata | {"spec": outcome.result["head"]["spec"]}
            saved.append((task, save_ensemble(outcome.ensemble, context.work_dir / "heads" / task), metrics))
    # All of the job's heads, or none; a job delivered again replaces the heads it registered before.
    with transaction.atomic():
        checkpoints = [
            job_checkpoint_record(
                job=context.job,
                family="lsm_head",
                size=base.size,
                path=str(directory),
                metrics=metrics,
            )
            for task, directory, metrics in saved
        ]
        Checkpoint.objects.filter(job=context.job, family="lsm_head").exclude(
            pk__in=[checkpoint.pk for checkpoint in checkpoints]
        ).delete()
    summary = {
        "checkpoint": base.pk,
        "heads": {task: checkpoint.pk for (task, _, _), checkpoint in zip(saved, checkpoints, strict=True)},
        "searches": results,
        "tables": head_tables(results),
    }
    if config.get("predict_cohort"):
        follow_up = job_queue_follow_up(
            parent=context.job,
            kind_name="lsm_predict",
            config=kind_config("lsm_predict", checkpoint=base.pk, cohort=config["predict_cohort"], use_heads=True),
        )
        context.log(f"the cohort predictions are job #{follow_up.pk}")
        summary["predictions_job"] = follow_up.pk
    return summary


def _metric(result: dict | None, metric: str) -> str:
    value = (result or {}).get(metric)
    if not value or value[0] is None:
        return "—"
    return f"{value[0]:.3f} ({value[1]:.3f}–{value[2]:.3f})"


def _number(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def head_tables(results: list[dict]) -> list[dict]:
    """The page's tables: best head against the linear probe per task, and each proposer's contribution."""
    rows = []
    for result in results:
        head = result["head"] or {}
        decision = result.get("decision") or {}
        advantage = (
            "—"
            if decision.get("difference") is None
            else f"{decision['difference']:+.3f} ({_number(decision['difference_ci'][0])} to {_number(decision['difference_ci'][1])})"
        )
        rows.append(
            [
                result["task"],
                describe_spec(head.get("spec")),
                result["validation_metric"],
                _number(head.get("validation")),
                _number(result["probe"]["validation"]),
                _number(decision.get("head")),
                _number(decision.get("probe")),
                advantage,
                "**uses the head**" if result["uses_head"] else "keeps the probe",
                result["metric"],
                _metric(head.get("test"), result["metric"]),
                _metric(result["probe"]["test"], result["metric"]),
            ]
        )
    tables = [
        {
            "title": "Best head vs linear probe",
            "kind": "head_vs_probe",
            "summary": "The search picks its best head on the search fold. The decision is made on the decision fold, which the "
            "search never saw: the head is used only if its advantage's 95 % CI lies above 0. The test participants "
            "(scored once) only report.",
            "columns": [
                "task",
                "best head",
                "validation metric",
                "best head (search fold)",
                "linear probe (search fold)",
                "best head (decision fold)",
                "linear probe (decision fold)",
                "head − probe (decision fold, 95 % CI)",
                "decision",
                "test metric",
                "best head (test, 95 % CI)",
                "linear probe (test, 95 % CI)",
            ],
            "rows": rows,
        }
    ]
    for result in results:
        tables.append(
            {
                "title": f"Proposers: {result['task']}",
                "kind": "proposers",
                "summary": f"Stopped: {result['stopped']}; {result['trainings']} trainings in {result['search_s']:.0f} s.",
                "columns": [
                    "proposer",
                    "proposals",
                    "trainings",
                    "repeats",
                    "invalid",
                    "best score",
                    "raised the best",
                ],
                "rows": [
                    [
                        row["proposer"],
                        str(row["proposals"]),
                        str(row["trainings"]),
                        str(row["repeats"]),
                        str(row["invalid"]),
                        _number(row["best_score"]),
                        str(row["raised_best"]),
                    ]
                    for row in result["proposers"]
                ],
            }
        )
    return tables


def _queue(config: dict) -> str:
    variant_id = config.get("agent_variant")
    language_model = (
        "llm" in config.get("proposers", [])
        and variant_id is not None
        and AgentVariant.objects.filter(pk=variant_id, backend=AgentVariant.Backend.TRANSFORMERS).exists()
    )
    return "gpu" if language_model else queue_by_checkpoint(config)


register(
    JobKind(
        "head_search",
        "Wearable foundation model: prediction-head search",
        HeadSearchForm,
        run_head_search,
        _queue,
        "A classroom of proposers (random, evolution, Optuna TPE, a language model) searches prediction heads over the frozen "
        "model per task; the best head is used for the cohort's predictions only where it clearly beat the linear probe on participants the search never saw.",
    )
)
