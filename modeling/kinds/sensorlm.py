"""Job kinds of the sensor-language model: training (its evaluation tables, optionally a cohort's day index), and a
cohort's day index with a model already trained."""

from pathlib import Path

from django import forms

from healthagent.models import Cohort
from modeling.find_days import MODEL_FILE
from modeling.jobs import JobContext, JobKind, job_checkpoint_record, queue_by_checkpoint, queue_by_size, register
from modeling.ml.sensorlm.tagging import TAGGER_DESCRIPTION
from modeling.ml.sensorlm.train import SensorLMTrainSettings
from modeling.models import Checkpoint
from modeling.settings_forms import SettingsForm, settings_of


class SensorLMTrainForm(SettingsForm):
    settings_class = SensorLMTrainSettings
    init_from = forms.ModelChoiceField(
        queryset=Checkpoint.objects.none(),
        required=False,
        help_text="Start the sensor tower from this foundation model: the tower takes its encoder's architecture and "
        "channel normalization.",
    )
    evaluate = forms.BooleanField(
        required=False, initial=True, help_text="Zero-shot activities, retrieval and captioning on new participants."
    )
    evaluation_participants = forms.IntegerField(min_value=10, max_value=100_000, initial=100)
    index_cohort = forms.ModelChoiceField(
        queryset=Cohort.objects.none(),
        required=False,
        help_text="When trained, index this cohort's days for the “Find days” search.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["init_from"].queryset = Checkpoint.objects.filter(family="lsm").order_by("-created_at")
        self.fields["index_cohort"].queryset = Cohort.objects.order_by("name")


def run_sensorlm_train(context: JobContext) -> dict:
    from modeling.ml.sensorlm.evaluate import EvaluationSettings
    from modeling.ml.sensorlm.report import evaluation_report
    from modeling.ml.sensorlm.train import train_sensorlm_with

    config = context.config
    context.progress(0.0, "simulating and captioning participants")
    init_from = Path(Checkpoint.objects.get(pk=config["init_from"]).path) if config.get("init_from") else None

    result = train_sensorlm_with(
        settings_of(SensorLMTrainSettings, config),
        output_dir=context.work_dir,
        init_from=init_from,
        device=context.device,
        progress=context.training_progress(share=0.7),
    )
    context.log_resumed(result)
    context.log(
        f"held-out sensor->text R@1 {result['held_out_sensor_to_text_r@1']:.3f} (chance {result['held_out_chance_r@1']:.3f})"
    )
    checkpoint = job_checkpoint_record(
        job=context.job,
        family="sensorlm",
        size=config["size"],
        path=result["model_dir"],
        metrics={key: result[key] for key in result if key.startswith("held_out") or key == "parameters"},
    )
    summary = {key: value for key, value in result.items() if key != "final"} | {
        "final_loss": result["final"].get("loss"),
        "checkpoint": checkpoint.pk,
    }
    if config.get("evaluate"):
        context.progress(0.75, "evaluating on new participants")
        settings = EvaluationSettings(
            participants=config["evaluation_participants"],
            days=config["days"],
            seed=config["seed"] + 1000,
            bootstrap=100,
            caption_days=50,
            device=context.device,
        )
        evaluation = evaluation_report(Path(result["model_dir"]), settings, output_dir=context.work_dir / "report")
        summary["tables"] = evaluation["tables"]
    if config.get("index_cohort"):
        indexed = index_cohort(context, checkpoint, Cohort.objects.get(pk=config["index_cohort"]), start=0.9)
        summary["indexed_days"] = indexed["days"]
    return summary


def index_cohort(context: JobContext, checkpoint: Checkpoint, cohort: Cohort, *, start: float = 0.0) -> dict:
    """Index ``cohort``'s days with ``checkpoint`` for "Find days" (``find_days.day_index_build``), the job's progress
    running from ``start`` to 1, and log what was indexed."""
    from modeling.find_days import day_index_build

    indexed = day_index_build(
        checkpoint=checkpoint,
        cohort=cohort,
        device=context.device,
        progress=lambda done, total: context.progress(
            start + (1 - start) * done / max(1, total), f"indexing participant {done + 1} of {total}"
        ),
    )
    tagger = "" if (Path(checkpoint.path) / TAGGER_DESCRIPTION).exists() else "; this model has no activity tagger"
    context.log(
        f"indexed {indexed['days']} days of cohort {cohort.name}; the model read the activities of "
        f"{indexed['read_by_model']} of them (participants without an event log{tagger})"
    )
    return indexed


register(
    JobKind(
        "sensorlm_train",
        "Sensor-language model: training",
        SensorLMTrainForm,
        run_sensorlm_train,
        queue_by_size,
        "Sensor-caption pre-training (CLIP, SigLIP or CoCa) on simulated days and their hierarchical captions; evaluation tables "
        "on new participants; optionally indexes a cohort's days for the researchers' “Find days” search.",
    )
)


def _sensorlm_checkpoints():
    return Checkpoint.objects.filter(family="sensorlm").order_by("-created_at", "-pk")


class SensorLMIndexForm(forms.Form):
    checkpoint = forms.ModelChoiceField(
        queryset=Checkpoint.objects.none(),
        empty_label=None,
        help_text="The model whose embeddings, captions and activity reading the search will use.",
    )
    cohort = forms.ModelChoiceField(
        queryset=Cohort.objects.none(),
        empty_label=None,
        help_text="A cohort without an event log gets the activities the model reads from its wearable data, where "
        "the model has an activity tagger.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["checkpoint"].queryset = _sensorlm_checkpoints()  # evaluated per form, not at import
        self.fields["checkpoint"].label_from_instance = lambda checkpoint: f"{checkpoint} · {checkpoint.path}"
        self.fields["cohort"].queryset = Cohort.objects.order_by("name")

    def clean_checkpoint(self):
        checkpoint = self.cleaned_data["checkpoint"]
        if not (Path(checkpoint.path) / MODEL_FILE).exists():
            raise forms.ValidationError(f"This model's files are no longer on disk ({checkpoint.path}).")
        return checkpoint


def run_sensorlm_index(context: JobContext) -> dict:
    config = context.config
    checkpoint = Checkpoint.objects.get(pk=config["checkpoint"])
    indexed = index_cohort(context, checkpoint, Cohort.objects.get(pk=config["cohort"]))
    return {
        "checkpoint": checkpoint.pk,
        "cohort": indexed["cohort"],
        "indexed_days": indexed["days"],
        "read_by_model": indexed["read_by_model"],
        "path": indexed["path"],
    }


register(
    JobKind(
        "sensorlm_index",
        "Sensor-language model: index a cohort",
        SensorLMIndexForm,
        run_sensorlm_index,
        queue_by_checkpoint,
        "Embeds and captions every worn day of a cohort with a trained model, for the researchers' “Find days” search; "
        "a cohort without an event log gets the activities the model reads from its wearable data.",
        summary=lambda config: f"cohort #{config.get('cohort')}",
    )
)
