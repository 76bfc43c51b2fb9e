from typing import Any

from django import forms
from django.contrib.auth.models import User

from evaluation.models import Protocol, Rubric, Study, StudyItem
from evaluation.quality import EXCLUSION_RULES
from evaluation.raters import (
    BACKGROUND_KINDS,
    DEFAULT_BACKGROUND_FIELDS,
    RATER_NUMBERS,
    RaterError,
    background_fields_check,
)
from healthagent.models import AgentVariant, Cohort
from healthagent.roles import RESULTS_ROLES, Role

DEFAULT_CONSENT_TEXT = (
    "You are asked to rate answers of a health AI agent about anonymized participants. Your ratings, the time you "
    "spend and your answers to the background questions are stored under your account and used, without your "
    "name, in the study's analysis and publications. You may stop at any time."
)


class StudyForm(forms.Form):
    name = forms.CharField(max_length=120)
    mode = forms.ChoiceField(choices=Study.Mode.choices, initial=Study.Mode.ABSOLUTE)
    rubric = forms.ModelChoiceField(
        queryset=Rubric.objects.order_by("name"),
        empty_label=None,
        help_text="A rubric with a harm dimension asks the Med-PaLM harm questions (absolute studies); severe or likely "
        "harm opens a safety incident.",
    )
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
        # Only clinicians without a results role: a rater must never see the study's results.
        queryset=User.objects.filter(groups__name=Role.CLINICIAN, is_active=True, is_superuser=False)
        .exclude(groups__name__in=RESULTS_ROLES)
        .order_by("username"),
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

    # Raters you can vouch for (issue 20).
    consent_text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5}),
        required=False,
        initial=DEFAULT_CONSENT_TEXT,
        help_text="Shown before a clinician's first item; the accepted version and time are recorded. "
        "Empty: no consent step (and no background form).",
    )
    background_fields = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        initial=None,
        help_text="One question per line: key | label | kind (text, number or choice) | choices, comma-separated.",
    )
    pass_threshold = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=100,
        initial=80,
        label="Pass threshold (%)",
        help_text="Share of qualification and gold items a rater must get within the reference's tolerance.",
    )
    qualification_retries = forms.IntegerField(
        required=False, min_value=0, max_value=10, initial=1, label="Qualification retries"
    )
    retry_cooldown_minutes = forms.IntegerField(
        required=False, min_value=0, max_value=60 * 24 * 30, initial=60, label="Cool-down before a retry (minutes)"
    )
    gold_rate = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=50,
        initial=5,
        label="Gold items in the main queue (%)",
        help_text="Mixed in silently; never shown twice to one rater.",
    )
    gold_minimum = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=100,
        initial=5,
        label="Gold items before a pause",
        help_text="A rater is paused when their gold accuracy falls below the threshold after this many gold items.",
    )
    min_seconds_per_item = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=3600,
        initial=10,
        label="Minimum seconds per item",
        help_text="Faster ratings are flagged 'too fast', never refused. 0: no flag.",
    )
    repeat_share = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=50,
        initial=0,
        label="Hidden repeats (%)",
        help_text="Share of items shown to the same rater again (test-retest).",
    )
    repeat_gap = forms.IntegerField(
        required=False, min_value=1, max_value=1000, initial=10, label="Items between an item and its repeat"
    )
    extra_raters_max = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=20,
        initial=0,
        label="Extra raters for disagreement",
        help_text="Items whose raters disagree get up to this many more raters. 0: off.",
    )
    disagreement_range = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=10,
        initial=2,
        label="Disagreement: score range of at least",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["background_fields"].initial = background_lines(DEFAULT_BACKGROUND_FIELDS)
        # The default rubric: the one with the harm questions (evaluation/migrations/0010_harm_rubric.py).
        self.fields["rubric"].initial = Rubric.objects.filter(dimensions__scale="harm").order_by("pk").first()

    def clean(self) -> dict:
        cleaned = super().clean() or {}
        for name in RATER_NUMBERS:  # left empty (or not posted by an older page): the default
            if cleaned.get(name) is None and name not in self.errors:
                cleaned[name] = self.fields[name].initial
        return cleaned

    def clean_background_fields(self) -> list[dict]:
        return background_parse(self.cleaned_data.get("background_fields") or "")

    def rater_settings(self) -> dict:
        """The study's rater settings from the cleaned form (percentages as shares)."""
        data = self.cleaned_data
        consent = (data.get("consent_text") or "").strip()
        return {
            "consent_text": consent,
            "background_fields": data.get("background_fields") or [] if consent else [],
            **{name: data[name] for name in RATER_NUMBERS},
            # Shares are asked as percentages.
            **{name: data[name] / 100 for name in ("pass_threshold", "gold_rate", "repeat_share")},
            "min_seconds_per_item": float(data["min_seconds_per_item"]),
        }


def background_lines(fields: list[dict]) -> str:
    return "\n".join(
        " | ".join(
            [field["key"], field["label"], field.get("kind", "text")]
            + ([", ".join(field["choices"])] if field.get("choices") else [])
        )
        for field in fields
    )


def background_parse(text: str) -> list[dict]:
    """Lines ``key | label | kind | choices`` into the study's background fields; an error names its line."""
    fields = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split("|")]
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise forms.ValidationError(f"Line {number}: write key | label | kind (| choices).")
        kind = parts[2] if len(parts) > 2 and parts[2] else "text"
        if kind not in BACKGROUND_KINDS:
            raise forms.ValidationError(f"Line {number}: the kind must be one of {', '.join(BACKGROUND_KINDS)}.")
        field: dict[str, Any] = {"key": parts[0], "label": parts[1], "kind": kind}
        if kind == "choice":
            choices = [choice.strip() for choice in (parts[3] if len(parts) > 3 else "").split(",") if choice.strip()]
            if not choices:
                raise forms.ValidationError(f"Line {number}: a choice needs its choices, comma-separated.")
            field["choices"] = choices
        fields.append(field)
    try:
        return background_fields_check(fields)
    except RaterError as error:
        raise forms.ValidationError(str(error).capitalize() + ".") from error


class ItemReferenceForm(forms.Form):
    kind = forms.ChoiceField(choices=StudyItem.Kind.choices)
    rationale = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        max_length=5000,
        help_text="Training items: why the reference scores are what they are (shown to the clinician after rating).",
    )


class ProtocolForm(forms.Form):
    """The pre-registered analysis; the power analysis' inputs beside it (computed on request, its choice written in)."""

    hypotheses = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=5000)
    primary_dimension = forms.ChoiceField(
        label="Primary outcome: dimension", help_text="Its mean score per participant."
    )
    primary_variant_a = forms.ModelChoiceField(
        queryset=AgentVariant.objects.none(), label="Primary comparison: first variant"
    )
    primary_variant_b = forms.ModelChoiceField(queryset=AgentVariant.objects.none(), label="Second variant")
    primary_test = forms.ChoiceField(choices=Protocol.Test.choices, label="Test")
    sided = forms.ChoiceField(choices=Protocol.Sided.choices, label="Sides")
    alpha = forms.FloatField(min_value=0.001, max_value=0.2, initial=0.05)
    secondary_outcomes = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=5000)
    exclusion_rules = forms.MultipleChoiceField(
        choices=list(EXCLUSION_RULES.items()),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Ratings these rules flag are left out of the primary analysis.",
    )
    planned_items = forms.IntegerField(
        min_value=5, max_value=1_000_000, label="Planned items (participants rated for both variants)"
    )
    planned_raters_per_item = forms.IntegerField(min_value=1, max_value=50, label="Planned raters per item")
    # The power analysis' assumptions (from a pilot study or the literature).
    power_sd = forms.FloatField(min_value=0.05, max_value=5, initial=1.0, label="Assumed SD of one rating")
    power_difference = forms.FloatField(min_value=0.01, max_value=4, initial=0.3, label="Expected difference (points)")
    power_icc = forms.FloatField(
        min_value=0.01, max_value=0.99, initial=0.5, label="Assumed inter-rater agreement (ICC)"
    )
    power_target = forms.FloatField(min_value=0.5, max_value=0.99, initial=0.8, label="Target power")
    power_alpha_width = forms.FloatField(
        min_value=0.01, max_value=2, required=False, label="Target width of α's 95 % interval (optional)"
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        max_length=1000,
        label="Reason for the change (a locked protocol records it as a deviation)",
    )

    def __init__(self, *args, study: Study, **kwargs):
        super().__init__(*args, **kwargs)
        dimension = self.fields["primary_dimension"]
        assert isinstance(dimension, forms.ChoiceField)
        dimension.choices = [(d.key, d.label) for d in study.rubric.dimensions.all() if d.is_scored]
        variant_ids = set(study.items.values_list("variant_a_id", flat=True)) | set(
            study.items.exclude(variant_b=None).values_list("variant_b_id", flat=True)
        )
        for name in ("primary_variant_a", "primary_variant_b"):
            field = self.fields[name]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = AgentVariant.objects.filter(pk__in=variant_ids).order_by("name")


class WebhookEndpointForm(forms.Form):
    """A new webhook endpoint: its address, its scope (one study, or the whole site for admins) and its events."""

    url = forms.URLField(max_length=500, label="Address", assume_scheme="https", help_text="Where events are POSTed.")
    description = forms.CharField(max_length=200, required=False)
    study = forms.ChoiceField(label="Events of")
    event_types = forms.MultipleChoiceField(
        label="Events", required=False, widget=forms.CheckboxSelectMultiple, help_text="None chosen: every event."
    )

    def __init__(self, *args: Any, studies: list[Study], site_wide: bool, **kwargs: Any) -> None:
        from healthagent.webhooks import EVENT_TYPES

        super().__init__(*args, **kwargs)
        scope = [("", "the whole site (every study, and jobs)")] if site_wide else []
        study_field, events_field = self.fields["study"], self.fields["event_types"]
        assert isinstance(study_field, forms.ChoiceField) and isinstance(events_field, forms.MultipleChoiceField)
        study_field.choices = scope + [(str(study.pk), f"the study {study.name}") for study in studies]
        events_field.choices = [
            (name, f"{name}: {text}") for name, text in EVENT_TYPES.items() if name != "webhook.test"
        ]

    def study_id(self) -> int | None:
        chosen = self.cleaned_data["study"]
        return int(chosen) if chosen else None


class InvitationsForm(forms.Form):
    """People to invite: pasted, or a CSV file (email, role, display_name, study)."""

    people = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}),
        required=False,
        label="People",
        help_text="One a line: email, or email,role,display name,study; or CSV with the header "
        "email,role,display_name,study.",
    )
    file = forms.FileField(required=False, label="Or a CSV file")
    role = forms.ChoiceField(label="Role (where a line names none)")
    study = forms.ChoiceField(required=False, label="Enrol in (where a line names none)")

    def __init__(self, *args: Any, studies: list[Study], roles: list[Role], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        role_field, study_field = self.fields["role"], self.fields["study"]
        assert isinstance(role_field, forms.ChoiceField) and isinstance(study_field, forms.ChoiceField)
        role_field.choices = [(role.value, role.label) for role in roles]
        study_field.choices = [("", "no study")] + [(str(study.pk), study.name) for study in studies]
