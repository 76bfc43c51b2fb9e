"""Job kinds of the wearable foundation model: pre-training, evaluation, cohort predictions."""

from pathlib import Path

from django import forms
from django.db import transaction

from healthagent.models import Cohort
from modeling.jobs import (
    JobContext,
    JobKind,
    job_checkpoint_record,
    job_queue_follow_up,
    kind_config,
    queue_by_checkpoint,
    queue_by_size,
    register,
)
from modeling.ml.lsm.predict import probe_quality_table
from modeling.ml.lsm.pretrain import PretrainSettings
from modeling.ml.lsm.report import ReportSettings
from modeling.models import Checkpoint
from modeling.settings_forms import SettingsForm, settings_of


class LSMPretrainForm(SettingsForm):
    settings_class = PretrainSettings
    predict_cohort = forms.ModelChoiceField(
        queryset=Cohort.objects.order_by("name"),
        required=False,
        help_text="When trained, queue the cohort predictions of this cohort with the new model.",
    )
    search_heads = forms.BooleanField(
        required=False,
        help_text="When trained, first search prediction heads (random, evolution, TPE; "
        "12 trainings per task), then queue the cohort predictions with them.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["predict_cohort"].queryset = Cohort.objects.order_by("name")


def run_lsm_pretrain(context: JobContext) -> dict:
    from modeling.ml.lsm.pretrain import pretrain_with

    config = context.config
    context.progress(0.0, "simulating participants")

    result = pretrain_with(
        settings_of(PretrainSettings, config),
        output_dir=context.work_dir,
        device=context.device,
        progress=context.training_progress(),
    )
    context.log_resumed(result)
    context.log(
        f"held-out reconstruction loss {result['validation_loss']:.4f} on {result['held_out_participants']} participants"
    )
    summary = {key: value for key, value in result.items() if key != "final"} | {
        "final_loss": result["final"].get("loss")
    }
    # Both writes happen once however often the job is delivered; the model stays registered if queueing its follow-up fails.
    checkpoint = job_checkpoint_record(
        job=context.job,
        family="lsm",
        size=config["size"],
        path=result["model_dir"],
        metrics={"validation_loss": result["validation_loss"], "parameters": result["parameters"]},
    )
    if config.get("search_heads"):  # pre-training -> head search -> cohort predictions (queued by the search)
        follow_up = job_queue_follow_up(
            parent=context.job,
            kind_name="head_search",
            config=kind_config(
                "head_search",
                checkpoint=checkpoint.pk,
                predict_cohort=config.get("predict_cohort"),
                seed=config["seed"] + 3000,
            ),
        )
        context.log(f"the head search is job #{follow_up.pk}")
        summary["head_search_job"] = follow_up.pk
    elif config.get("predict_cohort"):
        follow_up = job_queue_follow_up(
            parent=context.job,
            kind_name="lsm_predict",
            config=kind_config("lsm_predict", checkpoint=checkpoint.pk, cohort=config["predict_cohort"]),
        )
        context.log(f"the cohort predictions are job #{follow_up.pk}")
        summary["predictions_job"] = follow_up.pk
    return summary


register(
    JobKind(
        "lsm_pretrain",
        "Wearable foundation model: pre-training",
        LSMPretrainForm,
        run_lsm_pretrain,
        queue_by_size,
        "Masked-autoencoder pre-training on simulated minute-level days; the held-out loss is on unseen participants.",
    )
)


def _lsm_checkpoints():
    return Checkpoint.objects.filter(family="lsm").order_by("-created_at")


class LSMEvaluateForm(SettingsForm):
    settings_class = ReportSettings
    checkpoint = forms.ModelChoiceField(queryset=_lsm_checkpoints(), empty_label=None)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["checkpoint"].queryset = _lsm_checkpoints()  # evaluated per form, not at import


def run_lsm_evaluate(context: JobContext) -> dict:
    from modeling.ml.lsm.report import evaluation_report

    config = context.config
    checkpoint = Checkpoint.objects.get(pk=config["checkpoint"])
    report = evaluation_report(
        Path(checkpoint.path),
        settings_of(ReportSettings, config),
        device=context.device,
        output_dir=context.work_dir / "report",
        progress=lambda fraction, message: context.progress(fraction, message),
    )
    tables = [
        {**table, "title": f"{part.capitalize()}: {table['title']}"}
        for part, part_tables in report["tables"].items()
        for table in part_tables
    ]
    # The downstream summary is the checkpoint's evaluation; a generative-only run is kept beside it, never over it.
    part = "downstream" if "downstream" in report["tables"] else "generative"
    summary = report["tables"][part][0]["summary"]
    context.log(summary)
    with transaction.atomic():  # a fresh, locked read: a write made to the checkpoint during the evaluation is kept
        locked = Checkpoint.objects.select_for_update().get(pk=checkpoint.pk)
        key = "evaluation" if part == "downstream" else "generative_evaluation"
        locked.metrics = {**locked.metrics, key: {"job": context.job.pk, "summary": summary}}
        locked.save(update_fields=["metrics"])
    return {
        "checkpoint": checkpoint.pk,
        "report_dir": str(context.work_dir / "report"),
        "summary": summary,
        "tables": tables,
    }


register(
    JobKind(
        "lsm_evaluate",
        "Wearable foundation model: evaluation",
        LSMEvaluateForm,
        run_lsm_evaluate,
        queue_by_checkpoint,
        "Probes on the 30+ tasks against hand-crafted features and the encoder trained from scratch, at few-shot sizes; "
        "imputation and forecasting against simple baselines. Tables appear on the job's page and as markdown files.",
    )
)


class LSMPredictForm(forms.Form):
    checkpoint = forms.ModelChoiceField(queryset=_lsm_checkpoints(), empty_label=None)
    cohort = forms.ModelChoiceField(queryset=Cohort.objects.order_by("name"), empty_label=None)
    reference_participants = forms.IntegerField(
        min_value=20,
        max_value=100_000,
        initial=300,
        help_text="Simulated participants with known labels the probes are fitted on (30 % held out for quality).",
    )
    reference_days = forms.IntegerField(
        min_value=1,
        max_value=60,
        initial=7,
        help_text="Days per reference participant; each participant is embedded from their last this many days.",
    )
    replicates = forms.IntegerField(
        min_value=2, max_value=500, initial=20, help_text="Bootstrap probes behind each interval."
    )
    seed = forms.IntegerField(min_value=0, initial=2000)
    use_heads = forms.TypedChoiceField(
        choices=[
            (True, "yes: a searched head where it clearly beat the linear probe on participants the search never saw"),
            (False, "no: linear probes only"),
        ],
        initial=True,
        required=False,
        empty_value=True,  # type: ignore[arg-type]  # the stubs allow only text; an unset choice means yes
        coerce=lambda value: value not in (False, "False"),
        label="Use searched heads",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["checkpoint"].queryset = _lsm_checkpoints()
        self.fields["cohort"].queryset = Cohort.objects.order_by("name")


def run_lsm_predict(context: JobContext) -> dict:
    from modeling.services import cohort_predictions_compute, cohort_predictions_replace

    config = context.config
    checkpoint = Checkpoint.objects.get(pk=config["checkpoint"])
    cohort = Cohort.objects.get(pk=config["cohort"])
    computed = cohort_predictions_compute(
        checkpoint=checkpoint,
        cohort=cohort,
        job=context.job,
        reference_participants=config["reference_participants"],
        reference_days=config["reference_days"],
        replicates=config["replicates"],
        seed=config["seed"],
        use_heads=config.get("use_heads", True),
        device=context.device,
        progress=context.progress,
        log=context.log,
    )
    cohort_predictions_replace(checkpoint=checkpoint, cohort=cohort, predictions=computed.predictions)
    context.log(
        f"{len(computed.predictions)} predictions for {computed.participants} participants; "
        f"{computed.skipped} without wearable data"
    )
    return {
        "predictions": len(computed.predictions),
        "participants": computed.participants,
        "skipped_never_worn": computed.skipped,
        "tables": [probe_quality_table(computed.probes)],
    }


register(
    JobKind(
        "lsm_predict",
        "Wearable foundation model: cohort predictions",
        LSMPredictForm,
        run_lsm_predict,
        queue_by_checkpoint,
        "Embeds every participant of a cohort and stores per-task estimates with 90 % intervals; the agent's context then includes "
        "those whose probe was accurate on held-out participants.",
    )
)
