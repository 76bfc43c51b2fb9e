"""Forms of the job pages: a job's place in its queue, and the twin page's request (one participant, the
interventions to compare, the horizon)."""

from django import forms

from healthagent.models import Participant
from healthagent.roles import Role, user_has_role
from modeling.kinds.twin import INTERVENTION_CHOICES
from modeling.services import RESEARCHER_LIMITS_TEXT, RESEARCHER_MAX_SAMPLES


class JobPriorityForm(forms.Form):
    """Beside every kind's own form: how urgent the job is among the jobs of its queue."""

    priority = forms.IntegerField(
        min_value=0,
        max_value=9,
        initial=0,
        required=False,
        help_text="0 to 9. Jobs of a queue run in the order they were queued; a higher priority runs first.",
    )


class TwinRequestForm(forms.Form):
    participant = forms.ModelChoiceField(queryset=Participant.objects.none(), empty_label=None)
    interventions = forms.MultipleChoiceField(choices=INTERVENTION_CHOICES, widget=forms.CheckboxSelectMultiple)
    horizon_days = forms.IntegerField(min_value=7, max_value=365, initial=90, label="Horizon (days)")
    samples = forms.IntegerField(
        min_value=4, max_value=256, initial=32, help_text=f"Sampled futures per arm. {RESEARCHER_LIMITS_TEXT}"
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["participant"].queryset = Participant.objects.select_related("cohort").order_by(
            "cohort__name", "pseudonym"
        )
        self.fields["participant"].label_from_instance = lambda participant: (
            f"{participant.cohort.name} / {participant.pseudonym}"
        )
        if user is not None and not user_has_role(user, Role.ADMIN):
            self.fields["samples"].widget.attrs["max"] = (
                RESEARCHER_MAX_SAMPLES  # the browser's hint; the service enforces it
            )
