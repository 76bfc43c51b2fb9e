"""Job forms made from the model library's settings dataclasses (``modeling/ml/common/settings.py``): a kind's form
declares only what the site adds (a cohort to index, a checkpoint to start from); every hyperparameter comes from
the dataclass the command line reads too, with the same default, range, choices and help."""

from dataclasses import fields
from typing import Any, ClassVar

from django import forms

from modeling.ml.common.settings import setting_default, settings_check


class NumberListField(forms.CharField):
    """Whole numbers, comma-separated ("1, 5, 10"), kept sorted and once each; a stored list (a retried job's config)
    reads the same."""

    def __init__(self, *, minimum: float | None = None, maximum: float | None = None, **kwargs: Any) -> None:
        self.minimum, self.maximum = minimum, maximum
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(str(item) for item in value) if isinstance(value, list | tuple) else value

    def to_python(self, value: Any) -> list[int]:  # type: ignore[override]  # a list, where CharField gives text
        text = self.prepare_value(value) or ""
        try:
            numbers = [int(part) for part in text.replace(" ", "").strip("[]").split(",") if part]
        except ValueError as error:
            raise forms.ValidationError("Whole numbers separated by commas, e.g. 1, 5, 10.") from error
        for number in numbers:
            if (self.minimum is not None and number < self.minimum) or (
                self.maximum is not None and number > self.maximum
            ):
                raise forms.ValidationError(f"{number} is out of range.")
        return sorted(set(numbers))


def settings_fields(settings_class: type) -> dict[str, forms.Field]:
    """A form field per dataclass field, in declaration order."""
    made: dict[str, forms.Field] = {}
    for declared in fields(settings_class):
        meta, default = declared.metadata, setting_default(declared)
        # Left empty, a setting takes its default (``SettingsForm.clean``): a form posted without a newer setting still works.
        common: dict[str, Any] = {
            "initial": default,
            "help_text": meta.get("help", ""),
            "label": meta.get("label"),
            "required": False,
        }
        choices = meta.get("choices")
        if isinstance(default, list) and choices:  # at least one must be ticked: none is not "the default"
            made[declared.name] = forms.MultipleChoiceField(
                choices=choices, widget=forms.CheckboxSelectMultiple, **(common | {"required": True})
            )
        elif isinstance(default, list):
            made[declared.name] = NumberListField(minimum=meta.get("minimum"), maximum=meta.get("maximum"), **common)
        elif choices:
            made[declared.name] = forms.ChoiceField(choices=choices, **common)
        elif isinstance(default, bool):
            made[declared.name] = forms.BooleanField(**common)
        elif isinstance(default, int):
            made[declared.name] = forms.IntegerField(
                min_value=meta.get("minimum"), max_value=meta.get("maximum"), **common
            )
        elif isinstance(default, float):
            made[declared.name] = forms.FloatField(
                min_value=meta.get("minimum"), max_value=meta.get("maximum"), **common
            )
        else:
            made[declared.name] = forms.CharField(**common)
    return made


class SettingsForm(forms.Form):
    """A form whose first fields are those of ``settings_class``; a subclass declares only the site's own fields."""

    settings_class: ClassVar[type | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.settings_class is not None:  # before Django collects the declared fields into base_fields
            cls.declared_fields = {**settings_fields(cls.settings_class), **cls.__dict__.get("declared_fields", {})}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        assert self.settings_class is not None
        for declared in fields(self.settings_class):
            if declared.name in cleaned and cleaned[declared.name] in (None, "", []):
                cleaned[declared.name] = setting_default(declared)
        if not self.errors:  # each field in its range: now the limits across fields (the settings' own check)
            try:
                settings_check(settings_of(self.settings_class, cleaned))
            except ValueError as error:
                name, _, message = str(error).partition(": ")
                self.add_error(name if name in self.fields and message else None, message or str(error))
        return cleaned

    def settings(self) -> Any:
        """The validated settings (after ``is_valid()``)."""
        assert self.settings_class is not None
        return settings_of(self.settings_class, self.cleaned_data)


def settings_of(settings_class: type, config: dict) -> Any:
    """The settings a job's stored config holds (its form's cleaned data, with the site's own fields beside them)."""
    names = {declared.name for declared in fields(settings_class)}
    return settings_class(**{name: value for name, value in config.items() if name in names})
