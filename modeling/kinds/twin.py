"""Job kinds of the digital twin: training (``twin_train``) and simulation (``simulate``)."""

from django import forms

from healthagent.models import Cohort, Participant
from modeling.jobs import (
    JobContext,
    JobKind,
    job_checkpoint_record,
    job_queue_follow_up,
    queue_by_checkpoint,
    queue_by_size,
    register,
)
from modeling.ml.data.clinical import INTERVENTIONS
from modeling.ml.twin.training import TwinTrainSettings
from modeling.models import Checkpoint
from modeling.settings_forms import SettingsForm, settings_of

INTERVENTION_CHOICES = [
    (intervention.name, f"{intervention.name.replace('_', ' ')}: {intervention.description}")
    for intervention in INTERVENTIONS
]


class TwinTrainForm(SettingsForm):
    settings_class = TwinTrainSettings
    simulate_cohort = forms.ModelChoiceField(
        queryset=Cohort.objects.order_by("name"),
        required=False,
        help_text="When trained, queue a simulation of this cohort with every intervention.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["simulate_cohort"].queryset = Cohort.objects.order_by("name")


def run_twin_train(context: JobContext) -> dict:
    from modeling.ml.twin.training import train_twin_with

    config = context.config
    context.progress(0.0, "simulating timelines")

    result = train_twin_with(
        settings_of(TwinTrainSettings, config),
        output_dir=context.work_dir,
        device=context.device,
        progress=context.training_progress(),
    )
    context.log_resumed(result)
    held_out = result["held_out_loss"]["loss"]
    context.log(
        f"held-out loss {result['held_out_loss_before']['loss']:.3f} before training, {held_out:.3f} after, "
        f"on {result['held_out_participants']} participants"
    )
    # The model and its simulation are each written once however often the job is delivered.
    checkpoint = job_checkpoint_record(
        job=context.job,
        family="twin",
        size=config["size"],
        path=result["model_dir"],
        metrics={"held_out_loss": held_out, "parameters": result["parameters"]},
    )
    summary = {
        key: result[key]
        for key in (
            "held_out_loss_before",
            "held_out_loss",
            "held_out_participants",
            "parameters",
            "model_dir",
            "resumed_from_step",
            "device",
        )
    }
    if config.get("simulate_cohort"):
        follow_up = job_queue_follow_up(
            parent=context.job,
            kind_name="simulate",
            config={
                "checkpoint": checkpoint.pk,
                "cohort": config["simulate_cohort"],
                "participant": None,
                "interventions": [intervention.name for intervention in INTERVENTIONS],
                "horizon_days": 90,
                "samples": 16,
                "seed": 0,
            },
        )
        context.log(f"the cohort's simulation is job #{follow_up.pk}")
        summary["simulation_job"] = follow_up.pk
    return summary


register(
    JobKind(
        "twin_train",
        "Digital twin: training",
        TwinTrainForm,
        run_twin_train,
        queue_by_size,
        "Next-token and waiting-time training on simulated multimodal timelines (randomized interventions included); "
        "the held-out loss is on participants the model never saw.",
    )
)


def _twin_checkpoints():
    return Checkpoint.objects.filter(family="twin").order_by("-created_at")


class SimulateForm(forms.Form):
    checkpoint = forms.ModelChoiceField(queryset=_twin_checkpoints(), empty_label=None)
    cohort = forms.ModelChoiceField(queryset=Cohort.objects.order_by("name"), empty_label=None)
    participant = forms.ModelChoiceField(
        queryset=Participant.objects.all(),
        required=False,
        help_text="Only this participant of the cohort; empty simulates the whole cohort.",
    )
    interventions = forms.MultipleChoiceField(choices=INTERVENTION_CHOICES, widget=forms.CheckboxSelectMultiple)
    horizon_days = forms.IntegerField(min_value=7, max_value=730, initial=90)
    samples = forms.IntegerField(
        min_value=2, max_value=512, initial=32, help_text="Sampled futures per participant and arm."
    )
    seed = forms.IntegerField(min_value=0, initial=0)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["checkpoint"].queryset = _twin_checkpoints()
        self.fields["cohort"].queryset = Cohort.objects.order_by("name")

    def clean(self):
        cleaned = super().clean()
        participant, cohort = cleaned.get("participant"), cleaned.get("cohort")
        if participant is not None and cohort is not None and participant.cohort_id != cohort.pk:
            raise forms.ValidationError("The participant is not in that cohort.")
        return cleaned


def run_simulate(context: JobContext) -> dict:
    from healthagent.models import Participant as ParticipantModel
    from modeling.services import twin_simulate

    config = context.config
    checkpoint = Checkpoint.objects.get(pk=config["checkpoint"])
    chosen = ParticipantModel.objects.filter(cohort_id=config["cohort"]).order_by("pk")
    if config.get("participant"):
        chosen = chosen.filter(pk=config["participant"])
    participants = list(chosen)
    context.progress(0.01, f"loading the twin for {len(participants)} participant(s)")
    runs = twin_simulate(
        checkpoint=checkpoint,
        participants=participants,
        interventions=config["interventions"],
        horizon_days=config["horizon_days"],
        samples=config["samples"],
        seed=config["seed"],
        device=context.device,
        job=context.job,
        progress=lambda fraction, message: context.progress(0.05 + 0.9 * fraction, message),
    )
    context.log(
        f"{len(runs)} simulation(s) stored: {len(participants)} participants x {len(config['interventions'])} interventions "
        f"x {config['horizon_days']} days, {config['samples']} samples each"
    )
    return {
        "simulations": len(runs),
        "participants": len(participants),
        "interventions": config["interventions"],
        "horizon_days": config["horizon_days"],
    }


register(
    JobKind(
        "simulate",
        "Digital twin: simulate interventions",
        SimulateForm,
        run_simulate,
        queue_by_checkpoint,
        "Sampled futures of a cohort's participants with and without each intervention (a tiny twin on the CPU queue, "
        "larger ones on a GPU worker); the twin page draws them as fan charts and the agent cites the predicted effects.",
    )
)
