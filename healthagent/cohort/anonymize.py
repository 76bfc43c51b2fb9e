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

Then :func:`k_anonymize` generalizes quasi-identifier groups smaller than ``k``.
"""

import hashlib
import hmac
from collections import Counter
from dataclasses import dataclass
from datetime import date

from django.conf import settings

MAX_DATE_SHIFT_DAYS = 180
AGE_TOP_CODE = 85


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


@dataclass(frozen=True)
class QuasiIdentifiers:
    age_band: str
    sex: str


def k_anonymize(groups: list[QuasiIdentifiers], k: int) -> tuple[list[QuasiIdentifiers], dict]:
    """Generalize so that every (age band, sex) combination is shared by at least ``k`` participants.

    Step 1 widens small groups' age bands to 20 years; step 2 withholds the age band of what is
    still small (``*``); step 3 withholds their sex too (``unknown``), for all of them, only if a
    sex is rarer than ``k`` among them. Returns the new quasi-identifiers and a report.
    """
    if k < 1:
        raise AnonymizationError("k must be at least 1")

    def widen(band: str) -> str:
        if band in {"unknown", "*"} or band.endswith("+"):
            return band
        low = int(band.split("-")[0]) // 20 * 20
        return f"{low}-{low + 19}"

    counts = Counter(groups)
    widened = [QuasiIdentifiers(widen(g.age_band), g.sex) if counts[g] < k else g for g in groups]
    counts = Counter(widened)
    final = [QuasiIdentifiers("*", g.sex) if counts[g] < k else g for g in widened]
    # Sex is withheld from everyone whose age band is, or from none of them: withholding it only from
    # the rarer sex would leave a smaller group than before, and keeping it everywhere costs nothing when
    # each sex is common enough (the demo's 50 participants: 13 age bands withheld, no sex).
    withheld = Counter(g.sex for g in final if g.age_band == "*")
    if any(count < k for count in withheld.values()):
        final = [QuasiIdentifiers("*", "unknown") if g.age_band == "*" else g for g in final]
    final_counts = Counter(final)
    smallest_group = min(final_counts.values()) if final_counts else 0
    report: dict[str, int | str] = {
        "k": k,
        "participants": len(groups),
        "generalized": sum(1 for before, after in zip(groups, widened, strict=True) if before != after),
        "suppressed": sum(1 for g in final if g.age_band == "*"),
        "sex_withheld": sum(
            1 for before, after in zip(groups, final, strict=True) if after.sex == "unknown" != before.sex
        ),
        "smallest_group": smallest_group,
        "groups": len(final_counts),
    }
    if final and smallest_group < k:
        report["note"] = f"fewer than {k} participants in total share the suppressed group; it is reported as is"
    return final, report
