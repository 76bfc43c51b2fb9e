"""Job kind: the small demo MLP training run."""

from dataclasses import asdict

from modeling.jobs import JobContext, JobKind, job_checkpoint_record, register
from modeling.ml.demo_training import DemoTrainingConfig, train
from modeling.settings_forms import SettingsForm, settings_of


class DemoTrainingForm(SettingsForm):
    settings_class = DemoTrainingConfig


def run_demo_training(context: JobContext) -> dict:
    config = settings_of(DemoTrainingConfig, context.config)
    context.progress(0.0, "simulating participants")

    def report(step, total, metrics):
        if step % 5 == 0 or step == total or "val_auroc" in metrics:
            context.progress(step / total, f"step {step} of {total}", metrics=metrics, step=step)

    result = train(config, checkpoint_dir=context.work_dir, device=context.device, progress=report)
    context.log_resumed(result)
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
