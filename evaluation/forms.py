from django import forms
from django.contrib.auth.models import User

from evaluation.models import Rubric, Study
from healthagent.models import AgentVariant, Cohort
from healthagent.roles import Role


class StudyForm(forms.Form):
    name = forms.CharField(max_length=120)
    mode = forms.ChoiceField(choices=Study.Mode.choices, initial=Study.Mode.ABSOLUTE)
    rubric = forms.ModelChoiceField(queryset=Rubric.objects.order_by("name"), empty_label=None)
    cohort = forms.ModelChoiceField(queryset=Cohort.objects.order_by("name"), empty_label=None)
    variants = forms.ModelMultipleChoiceField(
        queryset=AgentVariant.objects.order_by("name"),
        widget=forms.CheckboxSelectMultiple,
        help_text="Absolute: every chosen variant is rated. Pairwise: choose exactly two.",
    )
    participants = forms.IntegerField(
        required=False, min_value=1, help_text="Rate a random sample of this many participants (empty: all)."
    )
    raters_per_item = forms.IntegerField(min_value=1, max_value=50, initial=3, label="Raters per item (k)")
    clinicians = forms.ModelMultipleChoiceField(
        queryset=User.objects.filter(groups__name=Role.CLINICIAN, is_active=True).order_by("username"),
        widget=forms.CheckboxSelectMultiple,
    )
    window_days = forms.IntegerField(min_value=1, max_value=90, initial=14, label="Days of data shown with each item")
    seed = forms.IntegerField(
        min_value=0, initial=0, help_text="Seeds the item order, each clinician's queue and the A/B sides."
    )
    show_captions = forms.BooleanField(
        required=False,
        label="Show day captions",
        help_text="Each day's events and signal shapes in words, beside the chart on the rating page.",
    )
    instructions = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)
    restricted = forms.BooleanField(
        required=False, help_text="Only you, the researchers chosen below and admins will see this study."
    )
    researchers = forms.ModelMultipleChoiceField(
        queryset=User.objects.filter(groups__name=Role.RESEARCHER, is_active=True).order_by("username"),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Restricted studies: other researchers who may see it.",
    )
