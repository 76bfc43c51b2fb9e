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

from healthagent.models import AgentVariant, Cohort
from modeling.jobs import (
    JobContext,
    JobError,
    JobKind,
    job_language_model,
    job_queue_follow_up,
    kind_config,
    queue_by_checkpoint,
    register,
)
from modeling.ml.heads.settings import HeadSearchSettings
from modeling.ml.heads.tables import head_tables
from modeling.models import Checkpoint
from modeling.services import head_checkpoints_replace
from modeling.settings_forms import SettingsForm

LLM_BACKENDS = (AgentVariant.Backend.TRANSFORMERS, AgentVariant.Backend.OPENAI_HTTP)


def _lsm_checkpoints():
    return Checkpoint.objects.filter(family="lsm").order_by("-created_at")


def _language_model_variants():
    return AgentVariant.objects.filter(backend__in=LLM_BACKENDS).order_by("name")


class HeadSearchForm(SettingsForm):
    """The search's settings come from ``HeadSearchSettings`` (as ``heads compare`` takes them); the site adds the
    model, the language model's variant, a time limit, the ensemble's replicates and a cohort to predict."""

    settings_class = HeadSearchSettings
    field_order = [
        "checkpoint",
        "tasks",
        "proposers",
        "agent_variant",
        "llm_temperature",
        "budget",
        "time_limit_min",
        "participants",
        "days",
        "replicates",
        "seed",
        "predict_cohort",
    ]
    checkpoint = forms.ModelChoiceField(
        queryset=_lsm_checkpoints(), empty_label=None, help_text="The frozen foundation model."
    )
    agent_variant = forms.ModelChoiceField(
        queryset=_language_model_variants(),
        required=False,
        help_text="The language model proposer's backend (transformers or OpenAI-compatible HTTP).",
    )
    time_limit_min = forms.FloatField(
        label="Time limit (minutes)",
        min_value=0.1,
        max_value=24 * 60,
        required=False,
        help_text="Wall time per task in minutes; no training starts after it. Empty: no limit.",
    )
    replicates = forms.IntegerField(
        min_value=1, max_value=100, initial=5, help_text="Bootstrap heads behind each prediction's interval."
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
        self.fields["tasks"].widget = forms.SelectMultiple(choices=self.fields["tasks"].choices)  # many: a list box

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
    checkpoints = head_checkpoints_replace(
        job=context.job, base=base, saved=[(path, metrics) for _, path, metrics in saved]
    )
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
