from datetime import date

import pytest

from healthagent.cohort.anonymize import (
    AnonymizationError,
    QuasiIdentifiers,
    age_band,
    age_from_birth,
    date_shift_days,
    k_anonymize,
    normalize_sex,
    pseudonym,
)


def test_pseudonyms_are_stable_keyed_and_reveal_nothing(settings):
    first = pseudonym(source="fitbit", source_id="MRN-00042")
    assert first == pseudonym(source="fitbit", source_id="MRN-00042")
    assert first != pseudonym(source="apple", source_id="MRN-00042")
    assert "00042" not in first and first.startswith("P-") and len(first) == 14
    settings.ANONYMIZATION_KEY = "another-key"
    assert pseudonym(source="fitbit", source_id="MRN-00042") != first


def test_date_shift_is_deterministic_and_bounded():
    shifts = {date_shift_days(source="csv", source_id=f"id-{i}") for i in range(300)}
    assert all(-180 <= shift <= 180 for shift in shifts)
    assert len(shifts) > 100
    assert date_shift_days(source="csv", source_id="id-1") == date_shift_days(source="csv", source_id="id-1")


@pytest.mark.parametrize(
    ("age", "band"),
    [(18, "18-19"), (44.9, "40-44"), (45, "45-49"), (84, "80-84"), (85, "85+"), (101, "85+"), (None, "unknown")],
)
def test_age_bands(age, band):
    assert age_band(age) == band


def test_minors_are_refused():
    with pytest.raises(AnonymizationError):
        age_band(16)


def test_age_from_birth_counts_birthdays():
    assert age_from_birth(birth=date(1979, 4, 17), on=date(2024, 4, 16)) == 44
    assert age_from_birth(birth=date(1979, 4, 17), on=date(2024, 4, 17)) == 45
    assert (
        normalize_sex("HKBiologicalSexFemale") == "female"
        and normalize_sex("M") == "male"
        and normalize_sex("x") == "unknown"
    )


def test_k_anonymity_generalizes_then_suppresses_small_groups():
    groups = (
        [QuasiIdentifiers("40-44", "female")] * 6
        + [QuasiIdentifiers("45-49", "female")] * 2
        + [QuasiIdentifiers("50-54", "female")] * 3
        + [QuasiIdentifiers("85+", "male")]
    )
    result, report = k_anonymize(groups, 5)
    assert result[:6] == [QuasiIdentifiers("40-44", "female")] * 6  # big enough: untouched
    assert set(result[6:11]) == {QuasiIdentifiers("40-59", "female")}  # widened together to 5
    assert result[11] is None  # alone even when widened and withheld: dropped, not kept
    assert report["generalized"] == 5 and report["suppressed"] == 0 and report["dropped"] == 1
    assert report["smallest_group"] == 5 and report["groups"] == 2


def test_k_anonymity_withholds_sex_only_when_a_sex_is_rare_among_those_whose_age_band_is_withheld():
    scattered = [
        QuasiIdentifiers(band, sex)
        for sex in ("female", "male")
        for band in ("25-29", "30-34", "60-64", "75-79", "85+")
    ]
    result, report = k_anonymize(
        scattered, 5
    )  # five of each sex, none sharing a band: every band withheld, each sex common enough
    assert result == [QuasiIdentifiers("*", group.sex) for group in scattered]
    assert report["suppressed"] == 10 and report["sex_withheld"] == 0 and report["smallest_group"] == 5
    result, report = k_anonymize(scattered[:7], 5)  # five women and two men: the men's sex would single them out
    assert set(result) == {QuasiIdentifiers("*", "unknown")} and report["sex_withheld"] == 7
