"""Job kind: the small demo MLP training run."""

from dataclasses import asdict, fields

from django import forms

from modeling.jobs import JobContext, JobKind, job_checkpoint_record, register
from modeling.ml.data.labels import TASKS
from modeling.ml.demo_training import DemoTrainingConfig, train


class DemoTrainingForm(forms.Form):
    task = forms.ChoiceField(choices=[(t.name, t.name) for t in TASKS if t.kind == "binary"], initial="hypertension")
    participants = forms.IntegerField(min_value=20, max_value=5000, initial=120)
    days = forms.IntegerField(min_value=1, max_value=30, initial=7)
    steps = forms.IntegerField(min_value=1, max_value=100_000, initial=300)
    checkpoint_every = forms.IntegerField(min_value=1, initial=50)
    learning_rate = forms.FloatField(min_value=1e-6, max_value=1.0, initial=3e-3)
    step_delay_s = forms.FloatField(
        min_value=0.0, max_value=5.0, initial=0.05, help_text="Slows each step so progress can be watched."
    )
    seed = forms.IntegerField(min_value=0, initial=0)


def run_demo_training(context: JobContext) -> dict:
    known = {field.name for field in fields(DemoTrainingConfig)}
    config = DemoTrainingConfig(**{key: value for key, value in context.config.items() if key in known})
    context.progress(0.0, "simulating participants")

    def report(step, total, metrics):
        if step % 5 == 0 or step == total or "val_auroc" in metrics:
            context.progress(step / total, f"step {step} of {total}", metrics=metrics, step=step)

    result = train(config, checkpoint_dir=context.work_dir, device=context.device, progress=report)
    if result["resumed_from_step"]:
        context.log(f"resumed from step {result['resumed_from_step']}")
    job_checkpoint_record(
        job=context.job, family="demo_mlp", size="tiny", path=result["model_dir"], metrics=result["metrics"]
    )
    return {**result, "config": asdict(config)}


register(
    JobKind(
        "demo_training",
        "Demo training run",
        DemoTrainingForm,
        run_demo_training,
        lambda config: "cpu",
        "A small MLP predicting a task from wearable daily summaries; checkpoints and resumes like the real trainings.",
    )
)
