"""JSON and text from a client, bounded before a database sees it.

PostgreSQL keeps no NUL character in text or ``jsonb``, no infinity or NaN in ``jsonb``, and Python's parser
raises ``RecursionError`` (not ``ValueError``) on deeply nested input: each would otherwise be a server error
(a 500) instead of a refusal that says what is wrong. Both functions raise ``ValueError`` with that message.
"""

import json
import math
from typing import Any

MAX_DEPTH = 16  # drafts, evidence windows and criteria are two or three levels deep


def json_loads_bounded(text: str | bytes, *, max_chars: int, max_depth: int = MAX_DEPTH, finite: bool = True) -> Any:
    """Parse ``text`` as JSON no longer than ``max_chars`` and no deeper than ``max_depth``, holding no NUL
    character and (``finite``) no non-finite number; ``finite=False`` leaves numbers to a caller that checks their
    range itself and says which value is wrong."""
    if len(text) > max_chars:
        raise ValueError(f"longer than {max_chars:,} characters")
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    json_check(value, max_depth=max_depth, finite=finite)
    return value


def json_check(value: Any, *, max_depth: int = MAX_DEPTH, finite: bool = True) -> None:
    """Refuse what a database cannot keep as JSON: nesting deeper than ``max_depth``, a NUL character in a key
    or a string, a non-finite number (``NaN`` and ``Infinity`` parse, but are not JSON)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels")
            children = node.values() if isinstance(node, dict) else node
            pending.extend((child, depth + 1) for child in children)
            if isinstance(node, dict):
                pending.extend((key, depth) for key in node)
        elif isinstance(node, str):
            text_check(node)
        elif finite and isinstance(node, float) and not math.isfinite(node):
            raise ValueError("holds a number that is not finite (NaN or infinity)")
        elif not (node is None or isinstance(node, bool | int | float)):
            raise ValueError(f"holds a {type(node).__name__}, which is not JSON")


def text_check(text: str) -> None:
    """Refuse a NUL character, which no PostgreSQL text column keeps (and no keyboard types)."""
    if "\x00" in text:
        raise ValueError("holds a NUL character (\\x00), which no text field can keep")
