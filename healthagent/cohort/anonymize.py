"""Anonymization at the door: every importer hands raw participants here before anything is stored.

What leaves this module is the only participant-level data the system keeps:

* a **keyed pseudonym** (HMAC-SHA256 of the source system and identifier with ``ANONYMIZATION_KEY``),
  stable across re-imports, not reversible without the key;
* **day indices** from the participant's first day instead of dates; the calendar date itself is
  dropped (a keyed per-participant shift is applied first, so even the weekday of day 0 is not
  the true one);
* a **5-year age band** (``85+`` top-coded) and sex;
* the numeric signals and coded events. Names, e-mail addresses, device names and serials,
  locations and free text never reach the output types below.

What can only be decided once the whole import is known (``healthagent/cohort/import_anonymity.py`` applies it,
inside the import's transaction and before a measurement or clinical event is written) is decided here, against the
cohort's ``k`` (at least ``ANONYMIZATION_MIN_K`` unless explicitly overridden, see :func:`k_check`):

* :func:`k_anonymize` generalizes the (age band, sex) groups smaller than ``k`` and **drops** the participants of a
  group still smaller than ``k``;
* :func:`history_top_code` top-codes the length of the history: nobody's is longer than what ``k`` participants share;
* :func:`conditions_generalize` generalizes diagnoses, endpoints, medications and interventions that fewer than ``k``
  participants have (ICD-10 code to its category, then to "other"), and drops what is still rarer than ``k``;
* :func:`measurement_bounds` top- and bottom-codes each measurement at the 1st and 99th percentile of its
  participants, never at a value fewer than ``k`` participants reach, and drops a measurement fewer than ``k`` have.
"""

import hashlib
import hmac
import math
import re
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from django.conf import settings

MAX_DATE_SHIFT_DAYS = 180
AGE_TOP_CODE = 85
K_FLOOR = 2  # a "group" of one is a person: below this only the audited override imports
# Top- and bottom-coding and the history's top code sit at this share of the participants at each end (the 1st and
# 99th percentiles), and never nearer the end than the k-th participant.
TAIL_SHARE = 0.01
# The clinical timeline a hospital's record holds and an insider may know: names of these kinds are quasi-identifiers.
CONDITION_KINDS = ("diagnosis", "endpoint", "medication", "intervention")
_ICD10 = re.compile(r"([A-Z][0-9]{2})(?:\.?[0-9A-Z]{1,4})?")


class AnonymizationError(Exception):
    pass


def _keyed_digest(*parts: str) -> bytes:
    message = "\x1f".join(parts).encode()
    return hmac.new(settings.ANONYMIZATION_KEY.encode(), message, hashlib.sha256).digest()


def pseudonym(*, source: str, source_id: str) -> str:
    """A stable pseudonym like ``P-3F9A1C0D7E2B``: the same source identifier always maps to it."""
    if not source_id or not source_id.strip():
        raise AnonymizationError("a participant has no source identifier")
    return "P-" + _keyed_digest("pseudonym", source, source_id.strip()).hex()[:12].upper()


def date_shift_days(*, source: str, source_id: str) -> int:
    """A keyed per-participant shift in [-180, 180] days: deterministic, so re-imports agree."""
    value = int.from_bytes(_keyed_digest("date-shift", source, source_id.strip())[:4], "big")
    return value % (2 * MAX_DATE_SHIFT_DAYS + 1) - MAX_DATE_SHIFT_DAYS


def shifted_weekday(*, first_day: date, shift_days: int) -> int:
    return (first_day.toordinal() + shift_days - 1) % 7  # date.weekday() of the shifted day


def age_band(age_years: float | None) -> str:
    if age_years is None:
        return "unknown"
    if age_years < 18:
        raise AnonymizationError("participants under 18 are not accepted")
    if age_years >= AGE_TOP_CODE:
        return f"{AGE_TOP_CODE}+"
    low = int(age_years // 5 * 5)
    return f"{max(low, 18)}-{low + 4}"


def age_from_birth(*, birth: date, on: date) -> float:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


SEX_VALUES = {
    "f": "female",
    "female": "female",
    "woman": "female",
    "hkbiologicalsexfemale": "female",
    "m": "male",
    "male": "male",
    "man": "male",
    "hkbiologicalsexmale": "male",
}


def normalize_sex(value: str | None) -> str:
    return SEX_VALUES.get((value or "").strip().lower(), "unknown")


def k_check(*, k: int, allow_below_minimum: bool = False) -> None:
    """Refuse a ``k`` below ``settings.ANONYMIZATION_MIN_K`` (and any below 2) unless ``allow_below_minimum``: the
    explicit override, which the import records in the audit log. ``k = 1`` (no anonymity beyond pseudonyms and
    shifted dates) exists only for the tests' and the load test's one- to three-person cohorts, by that override."""
    minimum = settings.ANONYMIZATION_MIN_K
    if k < 1:
        raise AnonymizationError(f"k = {k} is refused: k is a number of participants, at least 1")
    if k < minimum and not allow_below_minimum:
        floor = f"; below {K_FLOOR} a group is a single person" if k < K_FLOOR else ""
        raise AnonymizationError(
            f"k = {k} is below the minimum k = {minimum} (ANONYMIZATION_MIN_K){floor}; an import with a smaller k "
            "must be allowed explicitly (--allow-k-below-minimum), and the audit log records it"
        )


def _tail_rank(participants: int, k: int) -> int:
    """How many participants share each end of a top- or bottom-coded range: 1 % of them, at least ``k``."""
    return max(k, math.ceil(TAIL_SHARE * participants))


@dataclass(frozen=True)
class QuasiIdentifiers:
    age_band: str
    sex: str


def k_anonymize(
    groups: list[QuasiIdentifiers], k: int, *, existing: Sequence[QuasiIdentifiers] = ()
) -> tuple[list[QuasiIdentifiers | None], dict]:
    """Generalize ``groups`` so that every (age band, sex) combination is shared by at least ``k`` participants,
    counting the cohort's ``existing`` participants, which are never changed.

    Step 1 widens small groups' age bands to 20 years; step 2 withholds the age band of what is still small
    (``*``); step 3 withholds their sex too (``unknown``), for all of them, only if a sex is rarer than ``k`` among
    them. A participant whose group is still smaller than ``k`` comes back as None: the import drops them.
    Returns the new quasi-identifiers and a report.
    """
    if k < 1:
        raise AnonymizationError("k must be at least 1")

    def widen(band: str) -> str:
        if band in {"unknown", "*"} or band.endswith("+"):
            return band
        low = int(band.split("-")[0]) // 20 * 20
        return f"{low}-{low + 19}"

    counts = Counter([*existing, *groups])
    widened = [QuasiIdentifiers(widen(g.age_band), g.sex) if counts[g] < k else g for g in groups]
    counts = Counter([*existing, *widened])
    final = [QuasiIdentifiers("*", g.sex) if counts[g] < k else g for g in widened]
    # Sex is withheld from everyone whose age band is, or from none of them: withholding it only from
    # the rarer sex would leave a smaller group than before, and keeping it everywhere costs nothing when
    # each sex is common enough.
    withheld = Counter(g.sex for g in [*existing, *final] if g.age_band == "*")
    if any(count < k for count in withheld.values()):
        final = [QuasiIdentifiers("*", "unknown") if g.age_band == "*" else g for g in final]
    counts = Counter([*existing, *final])
    kept = [g if counts[g] >= k else None for g in final]
    kept_counts = Counter([*existing, *(g for g in kept if g is not None)])
    pairs = [(before, after) for before, after in zip(groups, kept, strict=True) if after is not None]
    report = {
        "k": k,
        "participants": len(groups),
        "generalized": sum(1 for before, after in pairs if after.age_band not in {before.age_band, "*"}),
        "suppressed": sum(1 for before, after in pairs if after.age_band == "*" != before.age_band),
        "sex_withheld": sum(1 for before, after in pairs if after.sex == "unknown" != before.sex),
        "dropped": kept.count(None),
        "smallest_group": min(kept_counts.values()) if kept_counts else 0,
        "groups": len(kept_counts),
    }
    return kept, report


def history_top_code(*, lengths: Sequence[int], k: int) -> int | None:
    """The longest history (in days) the cohort may show: the one ``k`` participants (and at least 1 %) reach.

    A longer history singles its participant out; the import keeps only its most recent days. None when
    there are fewer than ``k`` participants (they are dropped anyway).
    """
    if len(lengths) < k:
        return None
    return sorted(lengths, reverse=True)[_tail_rank(len(lengths), k) - 1]


def _condition_parent(kind: str, label: str) -> str | None:
    """One step up the ladder: an ICD-10 code to its category (E11.9 → E11), a category or any other name to
    ``other_<kind>``; above that, nothing (the event is dropped)."""
    if label == f"other_{kind}":
        return None
    code = _ICD10.fullmatch(label)
    if code and code.group(1) != label:
        return code.group(1)
    return f"other_{kind}"


def _condition_level(kind: str, label: str) -> int:
    if label == f"other_{kind}":
        return 2
    code = _ICD10.fullmatch(label)
    return 1 if code and code.group(1) == label else 0


Condition = tuple[str, str]  # (kind, name)


def conditions_generalize(
    participants: list[set[Condition]], k: int, *, existing: Sequence[set[Condition]] = ()
) -> tuple[list[dict[Condition, str | None]], int]:
    """For each participant's conditions (``(kind, name)``, kinds of :data:`CONDITION_KINDS`), the name it is
    stored under, or None to drop it, so that every stored name is shared by at least ``k`` participants
    (counting the ``existing`` participants, whose names stay as they are).

    Specific names rarer than ``k`` go one step up first (an ICD-10 code to its category, any other name to
    ``other_<kind>``), then rare categories to ``other_<kind>``, then what is still rare is dropped; a step
    never touches a name that is common enough, so common codes keep their detail. Also returns the number
    of participants sharing the rarest stored name (0 when none is stored).
    """
    labels: list[dict[Condition, str | None]] = [
        {condition: condition[1] for condition in conditions} for conditions in participants
    ]

    def counts() -> Counter[Condition]:
        held = Counter((kind, name) for conditions in existing for kind, name in conditions)
        for mapping in labels:
            held.update({(kind, label) for (kind, _), label in mapping.items() if label is not None})
        return held

    for level in (0, 1, 2):
        held = counts()
        for mapping in labels:
            for (kind, name), label in mapping.items():
                if label is not None and _condition_level(kind, label) == level and held[(kind, label)] < k:
                    mapping[(kind, name)] = _condition_parent(kind, label)
    held = counts()
    return labels, min(held.values(), default=0)


@dataclass(frozen=True)
class MeasurementBounds:
    low: float
    high: float
    participants: int


Key = TypeVar("Key", bound=Hashable)


def measurement_bounds(ranges: Mapping[Key, list[tuple[float, float]]], k: int) -> dict[Key, MeasurementBounds | None]:
    """For each measurement, from each participant's (lowest, highest) value: the range its values are coded
    into, or None when it is dropped.

    The top code is the highest value of the participant at the 99th percentile of the participants' highest
    values, but never of one nearer the top than the ``k``-th: at least ``k`` participants (and 1 %) reach it, so
    the top value singles nobody out, however extreme one participant's value was; the bottom code likewise.
    Percentiles are over participants, not values, so that one participant measured daily cannot move them.
    A measurement fewer than ``k`` participants have, or too few for both ends to be shared (the codes cross),
    is dropped.
    """
    bounds: dict[Key, MeasurementBounds | None] = {}
    for key, participant_ranges in ranges.items():
        count = len(participant_ranges)
        if count < k:
            bounds[key] = None
            continue
        rank = _tail_rank(count, k)
        high = sorted((top for _, top in participant_ranges), reverse=True)[rank - 1]
        low = sorted(bottom for bottom, _ in participant_ranges)[rank - 1]
        bounds[key] = MeasurementBounds(low=low, high=high, participants=count) if low <= high else None
    return bounds
