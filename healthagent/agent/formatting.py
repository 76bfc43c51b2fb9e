"""How the agent writes numbers, so that every cited number reads the same wherever it appears."""


def duration(minutes: float) -> str:
    """412 -> '6 h 52 min'."""
    minutes = round(minutes)
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{rest} min"
    return f"{hours} h {rest:02d} min" if rest else f"{hours} h"


def number(value: float, decimals: int = 0) -> str:
    """Thousands separated; '8,412' or '62.4'."""
    return f"{value:,.{decimals}f}"
