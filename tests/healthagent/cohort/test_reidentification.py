"""A participant who could be re-identified by what is unusual about them: a rare diagnosis, an extreme weight, a
demographic group of one, a history far longer than anyone's. After the import nothing in the database, the
trajectory files or any page singles them out, and the import cannot be told to skip that (k has a floor)."""

import io
import re
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count
from django.urls import reverse

from evaluation.assignment import assignment_next
from evaluation.models import Rubric
from evaluation.services import StudySpec, assignment_skip, study_create, study_set_status
from healthagent.audit import Action
from healthagent.cohort.anonymize import (
    QuasiIdentifiers,
    conditions_generalize,
    history_top_code,
    k_anonymize,
    measurement_bounds,
    pseudonym,
)
from healthagent.cohort.importing import CohortImportError, RawParticipant, cohort_import
from healthagent.cohort.store import read_window, trajectory_root
from healthagent.models import AgentVariant, AuditEntry, Cohort, Event, Measurement, Participant
from healthagent.roles import Role
from modeling.ml.data.spec import FEATURE_INDEX, MINUTES_PER_DAY, NUM_FEATURES
from tests.factories import UserFactory, ensure_reference_data

K = 5
PLANTED_ID = "MRN-PLANTED-0001"
PLANTED_WEIGHTS_KG = (246.1, 247.93, 248.4)
PLANTED_DIAGNOSIS, PLANTED_DETAIL = "Q87.4", "Marfan syndrome, seen at the genetics clinic"
ONE_OF_A_KIND = ("G71.0", "M32.1", "K50.1", "N04")  # four other participants, one rare diagnosis each
# What must appear nowhere: the planted weights as written or rounded, and the rare codes (or their categories) and
# free text. Matched as whole tokens, so that a random CSRF token or pseudonym cannot contain one by chance.
NEEDLES = [
    *(str(weight) for weight in PLANTED_WEIGHTS_KG),
    "247.9",
    PLANTED_DIAGNOSIS.split(".")[0],
    *(code.split(".")[0] for code in ONE_OF_A_KIND),
    "Marfan",
    "genetics clinic",
    "referral letter",
]
NEEDLE_PATTERN = re.compile(
    "|".join(rf"(?<![A-Za-z0-9.]){re.escape(needle)}(?![0-9])" for needle in NEEDLES), re.IGNORECASE
)


def raw_participant(
    source_id: str,
    *,
    age: float,
    sex: str,
    weights: tuple[float, ...] = (),
    diagnoses: tuple[tuple[str, str], ...] = (),
    minute_days: int = 1,
    minute_start_day: int = 89,
    history_days: int = 90,
    heart_rate_by_day: bool = False,
) -> RawParticipant:
    values = np.zeros((minute_days, NUM_FEATURES, MINUTES_PER_DAY), np.float32)
    mask = np.zeros(values.shape, bool)
    heart = FEATURE_INDEX["heart_rate"]
    mask[:, heart] = True
    values[:, heart] = (60 + np.arange(minute_days))[:, None] if heart_rate_by_day else 62
    return RawParticipant(
        source_id=source_id,
        age_years=age,
        sex=sex,
        values=values,
        mask=mask,
        start_weekday=0,
        minute_start_day=minute_start_day,
        history_days=history_days,
        measurements=[
            {"day": day, "name": "weight", "value": weight, "unit": "kg", "modality": "body_composition"}
            for day, weight in zip((0, 30, 60), weights, strict=False)
        ],
        events=[
            {"kind": "diagnosis", "name": name, "day": 20, "detail": detail}
            for name, detail in diagnoses  # the detail is free text a source may carry
        ],
    )


def ordinary_participants() -> list[RawParticipant]:
    """Fourteen people aged 40-44, seven of each sex, with ordinary weights; eight have hypertension (I10)."""
    people = []
    for index in range(14):
        diagnoses = [("I10", "")] if index < 8 else []
        if 8 <= index < 12:
            diagnoses.append((ONE_OF_A_KIND[index - 8], "from the referral letter"))
        people.append(
            raw_participant(
                f"MRN-{index:04d}",
                age=40 + index % 5,
                sex="female" if index % 2 else "male",
                weights=tuple(60 + 2 * index + step for step in range(3)),
                diagnoses=tuple(diagnoses),
            )
        )
    return people


@pytest.fixture
def planted_cohort(db, django_capture_on_commit_callbacks):
    """The ordinary fourteen, the planted participant (a 42-year-old woman, 248 kg, Marfan syndrome) and a man of
    91, alone in his age band and sex whatever is generalized; imported with the default (minimum) k, and committed
    (what waits for the import's commit runs: a dropped participant's files go then)."""
    planted = raw_participant(
        PLANTED_ID,
        age=42,
        sex="female",
        weights=PLANTED_WEIGHTS_KG,
        diagnoses=((PLANTED_DIAGNOSIS, PLANTED_DETAIL),),
    )
    oldest = raw_participant("MRN-OLDEST-91", age=91, sex="male", weights=(70, 71, 72))
    with django_capture_on_commit_callbacks(execute=True):
        summary = cohort_import(
            name="Planted", source="csv", participants=[*ordinary_participants(), planted, oldest], via="test"
        )
    return summary


def planted_participant() -> Participant:
    return Participant.objects.get(pseudonym=pseudonym(source="csv", source_id=PLANTED_ID))


def assert_clean(text: str, where: str) -> None:
    found = NEEDLE_PATTERN.search(text)
    assert found is None, f"{found.group(0)!r} reached {where}"


def test_the_database_holds_neither_the_extreme_weight_nor_the_rare_diagnosis(planted_cohort):
    assert planted_cohort.cohort.k_anonymity == K
    dump = io.StringIO()
    call_command(
        "dumpdata", "--exclude", "contenttypes", "--exclude", "auth.permission", "--exclude", "sessions", stdout=dump
    )
    assert '"model": "healthagent.measurement"' in dump.getvalue() and '"I10"' in dump.getvalue()  # a common code stays
    assert_clean(dump.getvalue(), "the database")

    planted = planted_participant()
    weights = list(planted.measurements.filter(name="weight").values_list("value", flat=True))
    top_code = max(Measurement.objects.filter(name="weight").values_list("value", flat=True))
    assert len(weights) == 3 and set(weights) == {top_code} and top_code < 100  # top-coded to an ordinary weight
    at_top_code = Measurement.objects.filter(name="weight", value=top_code).values("participant").distinct().count()
    assert at_top_code >= K  # the top code is a value K participants share
    assert list(planted.events.values_list("name", "detail")) == [("other_diagnosis", "")]


def test_nobody_is_alone_in_a_group_and_the_lonely_are_dropped(planted_cohort):
    cohort = planted_cohort.cohort
    assert cohort.participants.count() == 15 and planted_cohort.imported == 15
    assert not Participant.objects.filter(pseudonym=pseudonym(source="csv", source_id="MRN-OLDEST-91")).exists()
    groups = Counter(cohort.participants.values_list("age_band", "sex"))
    assert min(groups.values()) >= K
    planted = planted_participant()
    assert groups[(planted.age_band, planted.sex)] >= K
    assert Measurement.objects.filter(name="weight").values("participant").distinct().count() >= K
    holders = Event.objects.filter(kind="diagnosis").values("name").annotate(people=Count("participant", distinct=True))
    assert {row["name"]: row["people"] for row in holders} == {"I10": 8, "other_diagnosis": 5}

    report = cohort.import_report
    anonymity = report["imports"][-1]["k_anonymity"]
    assert anonymity["dropped"] == 1 and anonymity["conditions_generalized"] == 5
    assert anonymity["measurements_top_coded"] >= 3 and anonymity["minimum_k"] == K
    assert report["achieved_k"] == anonymity["achieved_k"] == 5  # five share "other_diagnosis"
    entry = AuditEntry.objects.get(action=Action.COHORT_IMPORTED)
    assert entry.details["dropped"] == 1 and entry.details["k"] == K and entry.details["k_below_minimum"] is False


def test_the_trajectory_files_hold_nothing_of_them(planted_cohort):
    files = sorted(trajectory_root().rglob("*.parquet"))
    assert len(files) == 15  # the dropped participant's file is gone with them
    for path in trajectory_root().rglob("*"):
        if path.is_file():
            assert_clean(path.name, "a file name")
            for words in ("Marfan", "genetics clinic", "referral letter"):  # long enough not to be compressed bytes
                assert words.encode() not in path.read_bytes(), path.name
            table = pq.read_table(path)
            assert_clean(str(table.schema.metadata), f"the metadata of {path.name}")
            for column in table.column_names:
                values = table.column(column).to_numpy(zero_copy_only=False).astype(float)
                for weight in PLANTED_WEIGHTS_KG:
                    assert not np.any(np.isclose(values, weight, atol=0.01)), (path.name, column)


def rating_pages(client, study, clinician) -> dict[int, str]:
    """Every item's rating page by participant id: each item is skipped to reach the next."""
    client.force_login(clinician)
    pages = {}
    while (assignment := assignment_next(study=study, rater=clinician)) is not None:
        url = reverse("evaluation:assignment", args=[assignment.pk])
        pages[assignment.item.participant_id] = client.get(url).content.decode()
        assignment_skip(assignment_id=assignment.pk, rater=clinician, reason="seen")
    return pages


def test_no_page_a_researcher_or_clinician_opens_singles_them_out(planted_cohort, client):
    from healthagent.agent.generate import cohort_generate

    cohort = planted_cohort.cohort
    client.force_login(UserFactory(role=Role.RESEARCHER))
    pages = [reverse("cohort:cohort_list"), reverse("cohort:cohort_detail", args=[cohort.pk])]
    for participant in cohort.participants.all():
        pages += [
            reverse("cohort:participant_detail", args=[participant.pk]),
            reverse("cohort:participant_minutes", args=[participant.pk]) + "?start=0&end=1440",
        ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert_clean(response.content.decode(), url)
    cohort_page = client.get(reverse("cohort:cohort_detail", args=[cohort.pk])).content.decode()
    assert "achieved k = 5" in cohort_page and "data-dropped>1<" in cohort_page

    # A clinician sees participants inside the items of a study: every item, the planted participant's included.
    ensure_reference_data()
    grounded = AgentVariant.objects.get(name="grounded agent")
    cohort_generate(cohort=cohort, variants=[grounded])
    clinician = UserFactory(role=Role.CLINICIAN)
    spec = StudySpec(
        name="Planted study",
        mode="absolute",
        rubric=Rubric.objects.get(name__endswith="(1-5)"),
        cohort=cohort,
        variants=[grounded],
        raters_per_item=1,
        clinicians=[clinician],
    )
    study = study_set_status(study=study_create(spec=spec, user=UserFactory(role=Role.RESEARCHER)), status="open")
    rated = rating_pages(client, study, clinician)
    planted = planted_participant()
    assert len(rated) == 15 and planted.pk in rated
    top_code = planted.measurements.filter(name="weight").first().value
    assert re.search(rf'data-measurement="weight">.*?<td data-latest>{top_code:.1f} kg', rated[planted.pk], re.S)
    for page in rated.values():
        assert_clean(page, "a rating page")


def test_a_uniquely_long_history_keeps_only_the_days_k_participants_reach(db):
    """Five participants with two days of wearable data and one with six: the sixth keeps their last two days."""
    people = [
        raw_participant(f"MRN-S{index}", age=50, sex="female", minute_days=2, minute_start_day=0, history_days=2)
        for index in range(5)
    ]
    long = raw_participant(
        "MRN-LONG", age=50, sex="female", minute_days=6, minute_start_day=0, history_days=6, heart_rate_by_day=True
    )
    long.events = [
        {
            "kind": "activity",
            "name": "walk",
            "day": 5,
            "start_minute": 5 * MINUTES_PER_DAY + 600,
            "end_minute": 5 * MINUTES_PER_DAY + 630,
        },
        {
            "kind": "activity",
            "name": "walk",
            "day": 1,
            "start_minute": MINUTES_PER_DAY + 600,
            "end_minute": MINUTES_PER_DAY + 630,
        },
    ]
    summary = cohort_import(name="Histories", source="fitbit", participants=[*people, long])
    trimmed = Participant.objects.get(pseudonym=pseudonym(source="fitbit", source_id="MRN-LONG"))
    assert (trimmed.history_days, trimmed.minute_days, trimmed.minute_start_day) == (2, 2, 0)
    assert trimmed.start_weekday == 4  # day 4 of the six, counted from a Monday
    values, _ = read_window(
        path=trajectory_root() / trimmed.trajectory_path, start_day=0, end_day=10, channels=["heart_rate"]
    )
    assert values.shape[0] == 2 and set(np.unique(values)) == {64.0, 65.0}  # the last two days, nothing older
    assert list(trimmed.daily_summaries.values_list("day_index", flat=True)) == [0, 1]
    assert list(trimmed.events.values_list("day_index", "start_minute")) == [(1, MINUTES_PER_DAY + 600)]
    assert summary.report["k_anonymity"]["histories_trimmed"] == 1
    assert summary.report["k_anonymity"]["history_top_code_days"] == 2


def test_k_below_the_minimum_is_refused_unless_allowed_and_the_override_is_audited(db, settings, client):
    arguments = ["import_cohort", "synthetic", "--name", "Small k", "--participants", "6", "--days", "1"]
    arguments += ["--history-days", "10"]
    with pytest.raises(CommandError, match=r"below the minimum k = 5 \(ANONYMIZATION_MIN_K\)"):
        call_command(*arguments, "--k", "3")
    with pytest.raises(CommandError, match="below 2 a group is a single person"):
        call_command(*arguments, "--k", "1")
    with pytest.raises(CommandError, match="k = 0 is refused"):
        call_command(*arguments, "--k", "0", "--allow-k-below-minimum")  # nothing allows k below 1
    assert not Cohort.objects.exists() and not AuditEntry.objects.exists()

    call_command(*arguments, "--k", "3", "--allow-k-below-minimum", stdout=io.StringIO())
    entry = AuditEntry.objects.get(action=Action.COHORT_IMPORTED)
    assert (entry.details["k"], entry.details["minimum_k"], entry.details["k_below_minimum"]) == (3, 5, True)
    cohort = Cohort.objects.get()
    assert cohort.k_anonymity == 3
    client.force_login(UserFactory(role=Role.ADMIN))
    page = client.get(reverse("cohort:cohort_detail", args=[cohort.pk])).content.decode()
    assert "3 (below the minimum 5, allowed explicitly)" in page

    settings.ANONYMIZATION_MIN_K = 3  # a site that sets its own minimum: that k needs no override, and is the default
    assert cohort_import(name="Default k", source="synthetic", participants=[]).cohort.k_anonymity == 3
    with pytest.raises(CohortImportError, match="k = 2 is below the minimum k = 3"):
        cohort_import(name="Two", source="synthetic", participants=[], k=2)


def test_k_anonymity_counts_the_cohort_already_there_and_never_changes_it():
    existing = [QuasiIdentifiers("40-44", "female")] * 4 + [QuasiIdentifiers("*", "unknown")] * 2
    result, report = k_anonymize(
        [QuasiIdentifiers("40-44", "female"), QuasiIdentifiers("85+", "male")], 5, existing=existing
    )
    assert result == [QuasiIdentifiers("40-44", "female"), None]  # joins the four; the lone man stays alone
    assert report["dropped"] == 1 and report["smallest_group"] == 2 and report["groups"] == 2


def test_rare_conditions_climb_the_code_ladder_only_as_far_as_they_must():
    participants = (
        [{("diagnosis", "E11.2")}] * 6  # common: keeps its detail
        + [{("diagnosis", "E11.9")}]  # rare, but its category E11 is shared by five
        + [{("diagnosis", "E11")}] * 4
        + [{("diagnosis", "Q87.4"), ("endpoint", "stroke")}]  # alone in every step: dropped
        + [{("medication", "statin")}] * 5
    )
    labels, rarest = conditions_generalize(participants, 5)
    assert labels[0] == {("diagnosis", "E11.2"): "E11.2"}
    assert labels[6] == {("diagnosis", "E11.9"): "E11"} and labels[7] == {("diagnosis", "E11"): "E11"}
    assert labels[11] == {("diagnosis", "Q87.4"): None, ("endpoint", "stroke"): None}
    assert labels[12] == {("medication", "statin"): "statin"} and rarest == 5
    labels, _ = conditions_generalize([{("diagnosis", "Q87.4")}], 5, existing=[{("diagnosis", "other_diagnosis")}] * 4)
    assert labels == [{("diagnosis", "Q87.4"): "other_diagnosis"}]  # "other" is shared with the cohort already there


def test_measurements_are_coded_at_the_percentiles_and_never_nearer_the_end_than_k():
    small = {"weight": [(60.0 + index, 61.0 + index) for index in range(20)] + [(240.0, 250.0)]}
    bounds = measurement_bounds(small, 5)["weight"]
    assert bounds is not None and (bounds.low, bounds.high) == (64.0, 77.0)  # the 5th from each end, 250 kg gone
    large = {"weight": [(float(index), float(index)) for index in range(1000)]}
    bounds = measurement_bounds(large, 5)["weight"]
    assert bounds is not None and (bounds.low, bounds.high) == (9.0, 990.0)  # 1st and 99th percentiles
    assert measurement_bounds({"crp": [(1.0, 2.0)] * 4}, 5) == {"crp": None}  # fewer than k have it
    crossing = {"ldl": [(100.0 + index, 100.0 + index) for index in range(6)]}
    assert measurement_bounds(crossing, 5) == {"ldl": None}  # six people cannot share both ends five by five
    assert history_top_code(lengths=[30] * 5 + [900], k=5) == 30 and history_top_code(lengths=[30] * 4, k=5) is None
