"""A setting declared once: a dataclass field carrying its help, bounds and choices. The library's command line
(argparse, here) and the site's job form (``modeling/settings_forms.py``) are both made from the same dataclass,
so a hyperparameter's default, range and wording live in one place.

    @dataclass
    class TwinTrainSettings:
        steps: int = setting(300, "optimizer steps", minimum=1, maximum=1_000_000)
"""

import argparse
from dataclasses import Field, field, fields
from typing import Any


def setting(
    default: Any,
    help: str = "",
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: list[tuple[str, str]] | None = None,
    label: str | None = None,
    flags: tuple[str, ...] = (),
) -> Any:
    """A dataclass field with what a command line and a form need: ``choices`` as (value, words) pairs, ``label``
    for the form (else the field's name in words), ``flags`` as extra command-line spellings. A list default is a
    multiple choice with ``choices``, a list of numbers without (copied for each instance)."""
    metadata = {
        "help": help,
        "minimum": minimum,
        "maximum": maximum,
        "choices": choices,
        "label": label,
        "flags": flags,
    }
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def setting_default(declared: Field[Any]) -> Any:
    """The default a field declares (a fresh copy of a list default)."""
    return declared.default_factory() if callable(declared.default_factory) else declared.default


def settings_check(settings: Any) -> None:
    """ValueError naming the first value outside its declared range or choices, then the settings' own ``check()``
    if they have one (limits across fields, e.g. a patch that must divide the day), as "field: message"."""
    for declared in fields(settings):
        value, meta = getattr(settings, declared.name), declared.metadata
        allowed = {choice for choice, _ in meta.get("choices") or []}
        for item in value if isinstance(value, list) else [value]:
            if allowed and item not in allowed:
                raise ValueError(f"{declared.name}: {item!r} is not one of {', '.join(sorted(allowed))}")
            if allowed:
                continue
            if meta.get("minimum") is not None and item < meta["minimum"]:
                raise ValueError(f"{declared.name}: {item} is below {meta['minimum']}")
            if meta.get("maximum") is not None and item > meta["maximum"]:
                raise ValueError(f"{declared.name}: {item} is above {meta['maximum']}")
    check = getattr(settings, "check", None)
    if callable(check):
        check()


def add_settings_arguments(
    parser: argparse.ArgumentParser, settings_class: type, *, skip: tuple[str, ...] = ()
) -> None:
    """One option per field: ``--batch-size`` for ``batch_size`` (and the field's extra flags), with its default, help
    and choices; a boolean is ``--name`` / ``--no-name``; a list takes several values. ``skip``: fields the command
    declares itself (with a meaning of its own there)."""
    for declared in fields(settings_class):
        if declared.name in skip:
            continue
        meta, default = declared.metadata, setting_default(declared)
        spellings = ["--" + declared.name.replace("_", "-"), *meta.get("flags", ())]
        choices = [choice for choice, _ in meta.get("choices") or []] or None
        words = (meta.get("help") or "").replace("%", "%%")  # argparse formats help with %
        options: dict[str, Any] = {"dest": declared.name, "default": default, "help": words or None}
        if isinstance(default, bool):
            parser.add_argument(*spellings, action=argparse.BooleanOptionalAction, **options)
        elif isinstance(default, list) and choices:
            parser.add_argument(*spellings, nargs="+", choices=choices, **options)
        elif isinstance(default, list):  # numbers: the type of the default's items
            parser.add_argument(*spellings, nargs="*", type=type(default[0]) if default else int, **options)
        else:
            parser.add_argument(*spellings, type=type(default), choices=choices, **options)


def settings_from_arguments(settings_class: type, args: argparse.Namespace, parser: argparse.ArgumentParser) -> Any:
    """The settings the command line gave; the parser's error (exit 2) for a value outside its range."""
    settings = settings_class(**{declared.name: getattr(args, declared.name) for declared in fields(settings_class)})
    try:
        settings_check(settings)
    except ValueError as error:
        parser.error(str(error))
    return settings
