"""Job kind: the agent's recommendations for a cohort. The agent is above the job framework: it registers this kind from
its app's ``ready()``."""

from django import forms

from healthagent.agent.backends.registry import queue_for
from healthagent.agent.generate import cohort_generate
from healthagent.models import AgentVariant, Cohort, Participant, Recommendation
from modeling.jobs import JobContext, JobKind, register


class RecommendationsForm(forms.Form):
    cohort = forms.ModelChoiceField(queryset=Cohort.objects.order_by("name"), empty_label=None)
    variants = forms.ModelMultipleChoiceField(
        queryset=AgentVariant.objects.order_by("name"), widget=forms.CheckboxSelectMultiple
    )
    regenerate = forms.BooleanField(required=False, help_text="Replace answers that already succeeded.")
    # Set by a study (its sample, or one item's participant), never typed: the whole cohort when empty.
    participants = forms.ModelMultipleChoiceField(
        queryset=Participant.objects.all(), required=False, widget=forms.MultipleHiddenInput
    )

    def clean(self):
        cleaned = super().clean()
        cohort, participants = cleaned.get("cohort"), cleaned.get("participants")
        if (
            cohort is not None
            and participants
            and any(participant.cohort_id != cohort.pk for participant in participants)
        ):
            raise forms.ValidationError("every participant must belong to the cohort")
        return cleaned


def run_recommendations(context: JobContext) -> dict:
    cohort = Cohort.objects.get(pk=context.config["cohort"])
    variants = list(AgentVariant.objects.filter(pk__in=context.config["variants"]).order_by("pk"))

    def report(position, total, message):
        context.progress(position / total, message, metrics={"generated": position}, step=position)

    participant_ids = context.config.get("participants") or None
    counts = cohort_generate(
        cohort=cohort,
        variants=variants,
        regenerate=context.config.get("regenerate", False),
        progress=report,
        participant_ids=participant_ids,
    )
    context.log(f"counts: {counts}")
    # Every answer of this cohort and these variants that is not a success was written by this run (earlier
    # failures are always generated again), so these are this run's failures, each with its reason.
    unanswered = (
        Recommendation.objects.filter(participant__cohort=cohort, variant__in=variants, question="")
        .exclude(status=Recommendation.Status.SUCCEEDED)
        .select_related("participant", "variant")
        .order_by("variant__name", "participant__pk")
    )
    if participant_ids is not None:
        unanswered = unanswered.filter(participant_id__in=participant_ids)
    for recommendation in unanswered:
        context.failure(
            item=f"participant {recommendation.participant.pseudonym} / {recommendation.variant.name}",
            reason=f"{recommendation.get_status_display()}: {recommendation.error or 'no reason recorded'}",
        )
    return counts


def retry_only_failed(config: dict) -> dict:
    """A retry keeps the answers that succeeded, whatever the first run asked: it generates only the failed ones."""
    return {**config, "regenerate": False}


def recommendations_summary(config: dict) -> str:
    """ "LLM only · 15 participants" or "grounded agent · the whole cohort, answers replaced"."""
    names = ", ".join(
        AgentVariant.objects.filter(pk__in=config.get("variants", [])).order_by("name").values_list("name", flat=True)
    )
    participants = config.get("participants") or []
    scope = (
        f"{len(participants)} participant{'s' if len(participants) != 1 else ''}"
        if participants
        else "the whole cohort"
    )
    return f"{names} · {scope}{', answers replaced' if config.get('regenerate') else ''}"


def recommendations_queue(config: dict) -> str:
    backends = AgentVariant.objects.filter(pk__in=config.get("variants", [])).values_list("backend", flat=True)
    return "gpu" if any(queue_for(backend) == "gpu" for backend in backends) else "cpu"


register(
    JobKind(
        "generate_recommendations",
        "Generate recommendations",
        RecommendationsForm,
        run_recommendations,
        recommendations_queue,
        "The agent's answers for every participant of a cohort, per variant. Finished answers are kept.",
        retry_config=retry_only_failed,
        summary=recommendations_summary,
    )
)
