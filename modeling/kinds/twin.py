"""Job kinds of the digital twin: training (``twin_train``) and simulation (``simulate``)."""

import json
import shutil
from pathlib import Path

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
from modeling.ml.twin.hazard import HAZARD_ENDPOINTS, POOLING
from modeling.ml.twin.training import TwinTrainSettings
from modeling.models import Checkpoint
from modeling.settings_forms import SettingsForm, settings_of

INTERVENTION_CHOICES = [
    (intervention.name, f"{intervention.name.replace('_', ' ')}: {intervention.description}")
    for intervention in INTERVENTIONS
]


AFTER_TRAINING = ("hazard_participants", "hazard_seed", "calibration_participants", "calibration_seed")
STEP_SHARE = 0.2  # of the job's progress, for the head's fit and for the calibration, each after the training's


class TwinTrainForm(SettingsForm):
    settings_class = TwinTrainSettings
    hazard_participants = forms.IntegerField(
        min_value=0,
        max_value=1_000_000,
        initial=8000,
        required=False,
        help_text="When trained, fit the hazard head on this many new simulated participants: the first "
        f"{', '.join(HAZARD_ENDPOINTS).replace('_', ' ')} as a rate per day, which ranks these risks better than "
        "the next tokens' probabilities summed (twin hazard). 0: no head.",
    )
    hazard_seed = forms.IntegerField(min_value=0, initial=21, required=False, help_text="Not the training seed.")
    calibration_participants = forms.IntegerField(
        min_value=0,
        max_value=1_000_000,
        initial=4000,
        required=False,
        help_text="Then calibrate every endpoint's risk in the large on this many other new participants: observed "
        "over predicted events over a year (twin calibrate). 0: risks uncalibrated.",
    )
    calibration_seed = forms.IntegerField(
        min_value=0, initial=1, required=False, help_text="Neither the training nor the head's seed."
    )
    simulate_cohort = forms.ModelChoiceField(
        queryset=Cohort.objects.order_by("name"),
        required=False,
        help_text="When trained, queue a simulation of this cohort with every intervention.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["simulate_cohort"].queryset = Cohort.objects.order_by("name")

    def clean(self):
        cleaned = super().clean()
        for name in AFTER_TRAINING:  # left empty, as a setting: its default
            if name in cleaned and cleaned[name] is None:
                cleaned[name] = self.fields[name].initial
        seed = cleaned.get("seed")
        if cleaned.get("hazard_participants") and cleaned.get("hazard_seed") == seed:
            self.add_error("hazard_seed", "The head is fitted on people the model never saw: use another seed.")
        taken = {seed, cleaned.get("hazard_seed") if cleaned.get("hazard_participants") else None}
        if cleaned.get("calibration_participants") and cleaned.get("calibration_seed") in taken:
            self.add_error(
                "calibration_seed", "The calibration cohort is new people: not the training's or the head's seed."
            )
        return cleaned


def _complete_model(
    context: JobContext, trained: Path, days: int, hazard_participants: int, calibration_participants: int
) -> Path:
    """The trained model with its hazard head and risk calibration, each fitted on new participants of its own seed:
    made in a copy of it and renamed into place whole, so the checkpoint never points at a model half made. A delivery
    after a crash finds it made (for this training and these settings) and leaves it; otherwise makes it again."""
    from modeling.ml.twin.calibration import calibrate_twin
    from modeling.ml.twin.evaluate import TwinReportSettings
    from modeling.ml.twin.hazard import add_hazard_head

    config = context.config
    complete, staging = context.work_dir / "complete", context.work_dir / "completing"
    training = json.loads((trained / "training.json").read_text())
    wanted = {  # the run that made the trunk (not its losses: a delivery again scores it again), and both steps
        "training": {key: training.get(key) for key in ("seed", "participants", "days", "steps", "parameters")},
        "hazard": [config.get("hazard_seed"), hazard_participants, POOLING] if hazard_participants else None,
        "calibration": config.get("calibration_seed") if calibration_participants else None,
    }
    made = complete / "completed.json"
    if made.exists() and json.loads(made.read_text()) == wanted:
        context.log("the hazard head and the calibration were made by an earlier delivery")
        return complete
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(trained, staging)
    if hazard_participants:
        fit = add_hazard_head(
            staging,
            participants=hazard_participants,
            seed=config["hazard_seed"],
            days=days,
            device=context.device,
            progress=context.stage(1.0 - STEP_SHARE * (1 + bool(calibration_participants)), STEP_SHARE),
        )
        context.log(
            f"hazard head fitted on {fit['participants']} new participants (seed {fit['seed']}, {fit['seconds']} s): "
            + ", ".join(f"{endpoint.replace('_', ' ')} {count} events" for endpoint, count in fit["events"].items())
        )
    if calibration_participants:
        calibration = calibrate_twin(
            staging,
            TwinReportSettings(
                participants=calibration_participants, seed=config["calibration_seed"], device=context.device
            ),
            progress=context.stage(1.0 - STEP_SHARE, STEP_SHARE),
        )
        context.log(
            f"risks calibrated on {calibration['participants']} new participants (seed {calibration['seed']}), "
            "observed over predicted events: "
            + ", ".join(
                f"{endpoint.replace('_', ' ')} {row['factor']:.2f} ({row['events']} events)"
                for endpoint, row in calibration["endpoints"].items()
                if row["factor"] != 1.0
            )
        )
    (staging / "completed.json").write_text(json.dumps(wanted))
    shutil.rmtree(complete, ignore_errors=True)
    staging.rename(complete)
    return complete


def run_twin_train(context: JobContext) -> dict:
    from modeling.ml.twin.training import train_twin_with

    config = context.config
    settings = settings_of(TwinTrainSettings, config)
    # A job queued before the head and the calibration were part of training has neither in its config: none.
    hazard_participants, calibration_participants = (
        config.get("hazard_participants") or 0,
        config.get("calibration_participants") or 0,
    )
    context.progress(0.0, "simulating timelines")

    result = train_twin_with(
        settings,
        output_dir=context.work_dir,
        device=context.device,
        progress=context.training_progress(
            share=1.0 - STEP_SHARE * (bool(hazard_participants) + bool(calibration_participants))
        ),
        preparing=context.stage(0.0, 0.0),  # the job's heartbeat while its cohort is simulated: no share of its own
    )
    context.log_resumed(result)
    held_out = result["held_out_loss"]["loss"]
    context.log(
        f"held-out loss {result['held_out_loss_before']['loss']:.3f} before training, {held_out:.3f} after, "
        f"on {result['held_out_participants']} participants"
    )
    model_dir = Path(result["model_dir"])
    if hazard_participants or calibration_participants:
        model_dir = _complete_model(context, model_dir, settings.days, hazard_participants, calibration_participants)
    # The model and its simulation are each written once however often the job is delivered.
    checkpoint = job_checkpoint_record(
        job=context.job,
        family="twin",
        size=config["size"],
        path=str(model_dir),
        metrics={
            "held_out_loss": held_out,
            "parameters": result["parameters"],
            "hazard_endpoints": list(HAZARD_ENDPOINTS) if hazard_participants else [],
            "risk_calibrated": bool(calibration_participants),
        },
    )
    summary = {
        key: result[key]
        for key in (
            "held_out_loss_before",
            "held_out_loss",
            "held_out_participants",
            "parameters",
            "resumed_from_step",
            "device",
        )
    }
    summary["model_dir"] = str(model_dir)
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
        "the held-out loss is on participants the model never saw. Then the hazard head and the risk calibration, "
        "each on new participants of its own.",
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
