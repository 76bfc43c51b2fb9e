"""“Find days like …”, by registration: a model of a higher room (the sensor-language model in ``modeling``) ranks
participant-days for a text; the cohort page only asks, and imports none of it."""

from collections.abc import Callable


class FindDaysError(Exception):
    """No search can be made (no index, no model, no word it knows): the message says why, for the page."""


FindDays = Callable[..., list[dict]]  # (*, query, limit) -> [{"participant_id", "day_index", "score", ...}], best first
_search: list[FindDays] = []


def find_days_register(search: FindDays) -> None:
    _search[:] = [search]


def days_matching(*, query: str, limit: int) -> list[dict]:
    """The days the registered search ranks best for ``query``; FindDaysError when none is installed or it cannot search."""
    if not _search:
        raise FindDaysError("This site has no model that can search days.")
    return _search[0](query=query, limit=limit)
