"""Stored data (a job's config and result, an audit entry's details) written for people: a table of
labelled values instead of a Python dict, numbers with thousands separators, yes/no for booleans."""

import json
import math

from django import template

register = template.Library()

# Keys written as their own words, where turning underscores into spaces is not enough.
LABELS = {
    "pearson": "Pearson",
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "mae": "MAE",
    "rmse": "RMSE",
    "id": "ID",
    "pca": "PCA",
    "lsm": "LSM",
    "llm": "LLM",
    "val": "validation",
    "s": "(s)",
    "bpm": "(bpm)",
    "ms": "(ms)",
    "pk": "ID",
}


@register.filter
def readable_label(key) -> str:
    """ "val_auroc" -> "Validation AUROC", "step_delay_s" -> "Step delay (s)"."""
    words = [LABELS.get(word, word) for word in str(key).replace("-", "_").split("_") if word]
    text = " ".join(words)
    return text[:1].upper() + text[1:] if text else str(key)


@register.filter
def readable_number(value) -> str:
    """162364 -> "162,364", 0.731245 -> "0.7312", 1234.5678 -> "1,234.6"; anything else as text."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.4g}"


def readable_value(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return readable_number(value)
    if isinstance(value, list | tuple):
        if all(not isinstance(item, dict | list | tuple) for item in value):
            return ", ".join(readable_value(item) for item in value) or "none"
        return json.dumps(value, ensure_ascii=False, default=str)[:2000]
    return str(value)


@register.filter
def data_rows(data) -> list[tuple[str, str]]:
    """A dict as (label, value) rows; nested dicts become "Outer · inner" rows, in their stored order."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix} · {readable_label(key)}" if prefix else readable_label(key), inner)
        else:
            rows.append((prefix, readable_value(value)))

    if isinstance(data, dict):
        walk("", data)
    elif data not in (None, "", [], {}):
        rows.append(("Value", readable_value(data)))
    return rows
