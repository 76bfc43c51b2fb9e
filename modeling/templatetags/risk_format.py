"""How the twin page writes a probability as a percentage: small risks keep a decimal instead of
rounding to "0 %", and neither end is rounded onto 0 or 100 unless the value is exactly that."""

from django import template

register = template.Library()


@register.filter
def risk_percent(probability) -> str:
    """0.0004 -> "<0.1 %", 0.003 -> "0.3 %", 0.042 -> "4.2 %", 0.237 -> "24 %", 0.9996 -> ">99.9 %"; "—" when not a number."""
    try:
        percent = float(probability) * 100
    except (TypeError, ValueError):
        return "—"
    if percent != percent:  # NaN
        return "—"
    if percent <= 0 or percent >= 100:
        return f"{max(0.0, min(100.0, percent)):.0f} %"
    if percent < 0.1:
        return "<0.1 %"
    if percent > 99.9:
        return ">99.9 %"
    if percent < 10 or percent > 90:
        return f"{percent:.1f} %"
    return f"{percent:.0f} %"
