"""Job kind ``judge_study``: a language-model judge grades every item of a study (evaluation.judge). The evaluation app
sits above the job framework and the agent's backends: it registers this kind from its app's ``ready()``."""

from django import forms

from evaluation.judge import study_judge
from evaluation.models import Study
from healthagent.agent.backends.registry import make_backend, queue_for
from healthagent.models import llm_server_problem
from modeling.jobs import JobContext, JobKind, register

BACKENDS = (
    ("transformers", "SmolLM2 on this machine (small: for the demo and tests)"),
    ("openai_http", "An OpenAI-compatible server (vLLM, TGI, Ollama...)"),
)


class JudgeForm(forms.Form):
    study = forms.ModelChoiceField(queryset=Study.objects.filter(mode=Study.Mode.ABSOLUTE).order_by("name"))
    backend = forms.ChoiceField(choices=BACKENDS, initial="transformers")
    base_url = forms.CharField(required=False, help_text="OpenAI-compatible server: e.g. http://gpu-host:8000/v1")
    model = forms.CharField(required=False, help_text="OpenAI-compatible server: the model it serves.")
    api_key_env = forms.CharField(
        required=False,
        help_text="The environment variable of the workers that holds the server's API key (never the key itself); "
        "its name starts with HEALTHAGENT_LLM_.",
    )
    max_new_tokens = forms.IntegerField(min_value=16, max_value=2000, initial=160)
    timeout_s = forms.FloatField(min_value=1, max_value=3600, initial=180, label="Time limit per item (s)")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("backend") == "openai_http":
            if not (cleaned.get("base_url") and cleaned.get("model")):
                raise forms.ValidationError("an OpenAI-compatible server needs its base URL and model")
            if problem := llm_server_problem(backend_config(cleaned)):
                raise forms.ValidationError(problem)
        return cleaned


def backend_config(config: dict) -> dict:
    if config["backend"] == "openai_http":
        return {
            "base_url": config["base_url"],
            "model": config["model"],
            "api_key_env": config.get("api_key_env") or "",
            "max_tokens": config["max_new_tokens"],
        }
    return {"model": "smollm2", "max_new_tokens": config["max_new_tokens"]}


def run_judge(context: JobContext) -> dict:
    config = context.config
    study = Study.objects.get(pk=config["study"])
    backend = make_backend(config["backend"], backend_config(config))
    timeout_s = float(config["timeout_s"])

    def complete(messages: list[dict], schema: dict) -> str:
        return backend.complete(messages, json_schema=schema, timeout_s=timeout_s)

    # The reply's length grows with the item's criteria: a budget too small for the JSON cuts every reply short.
    criteria = max((item.criteria.count() for item in study.items.all()[:1]), default=0)
    if config["backend"] == "transformers":
        backend.max_new_tokens = max(
            backend.max_new_tokens, 40 + 12 * len(study.rubric.dimensions.all()) + 10 * criteria
        )

    def progress(done: int, total: int) -> None:
        context.progress(done / total, f"{done} of {total} items graded", metrics={"items": done}, step=done)

    run = study_judge(
        study=study,
        complete=complete,
        backend=config["backend"],
        model=config.get("model") or "SmolLM2-135M-Instruct",
        job_id=context.job.pk,
        progress=progress,
        failure=lambda item, reason: context.failure(item=item, reason=reason),
    )
    context.log(f"judge run #{run.pk}: {run.graded} graded, {run.failed} failed")
    if run.graded == 0 and run.failed:
        raise RuntimeError(f"the judge graded none of {run.failed} items: see the failures for why")
    return {"run": run.pk, "graded": run.graded, "failed": run.failed}


def judge_summary(config: dict) -> str:
    study = (
        Study.objects.filter(pk=int(config.get("study") or 0)).values_list("name", flat=True).first()
        or "a deleted study"
    )
    return f"{study} · {config.get('model') or 'SmolLM2'}"


register(
    JobKind(
        "judge_study",
        "Judge a study's answers",
        JudgeForm,
        run_judge,
        lambda config: queue_for(config.get("backend", "transformers")),
        "A language model grades every item of an absolute study on its rubric and criteria. The grades are kept apart "
        "from the clinicians' ratings, shown to researchers only, and compared with the clinicians on the dashboard.",
        summary=judge_summary,
    )
)
