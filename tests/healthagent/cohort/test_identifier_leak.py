"""Identifiers planted in every source format reach neither the database, the files nor any page."""

import io
import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from healthagent.cohort.store import trajectory_root
from healthagent.models import Participant
from tests import cohort_files
from tests.factories import UserFactory

PLANTED = [
    *cohort_files.PLANTED.values(),
    "FITBITUSER9",
    "FITBITUSER7",
    "Johanna",
    "Quinteros",
    "MRN-00077-ZX",
    "WIDE-SUBJECT-31",
]
REAL_DATES = ["2024-03-0", "2024-01-15", "03/04/24", "1979"]  # calendar dates of the data and the birth date


@pytest.fixture
def imported_everything(db, tmp_path):
    files = cohort_files.write_csv_long(tmp_path / "csv")
    call_command(
        "import_cohort",
        "csv",
        str(files["signals"]),
        "--name",
        "CSV",
        "--k",
        "1",
        "--allow-k-below-minimum",
        "--demographics",
        str(files["demographics"]),
        "--measurements",
        str(files["measurements"]),
    )
    call_command(
        "import_cohort",
        "csv",
        str(cohort_files.write_csv_wide(tmp_path / "wide")),
        "--name",
        "Wide",
        "--k",
        "1",
        "--allow-k-below-minimum",
    )
    call_command(
        "import_cohort",
        "fitbit",
        str(cohort_files.write_fitbit_folder(tmp_path / "fitbit")),
        str(cohort_files.write_fitbit_zip(tmp_path / "fitbit.zip")),
        "--name",
        "Fitbit",
        "--k",
        "1",
        "--allow-k-below-minimum",
    )
    call_command(
        "import_cohort",
        "apple",
        str(cohort_files.write_apple_zip(tmp_path / "apple.zip")),
        "--name",
        "Apple",
        "--k",
        "1",
        "--allow-k-below-minimum",
    )
    assert Participant.objects.count() == 6


def assert_clean(text: str, where: str):
    for needle in PLANTED + REAL_DATES:
        assert needle.lower() not in text.lower(), f"{needle!r} leaked into {where}"


def test_no_identifier_reaches_the_database(imported_everything):
    dump = io.StringIO()
    call_command(
        "dumpdata", "--exclude", "contenttypes", "--exclude", "auth.permission", "--exclude", "sessions", stdout=dump
    )
    text = dump.getvalue()
    assert '"model": "healthagent.participant"' in text  # the dump holds the participants
    assert_clean(text, "the database")


def test_no_identifier_reaches_the_trajectory_files(imported_everything):
    files = list(trajectory_root().rglob("*"))
    assert len([f for f in files if f.suffix == ".parquet"]) == 6
    for path in files:
        assert_clean(path.name, "a file name")
        if path.is_file():
            assert_clean(path.read_bytes().decode("latin-1"), f"the file {path.name}")


def test_no_identifier_reaches_any_page(imported_everything, client):
    client.force_login(UserFactory(role="researcher"))
    pages = [reverse("cohort:cohort_list")]
    for participant in Participant.objects.select_related("cohort"):
        pages += [
            reverse("cohort:cohort_detail", args=[participant.cohort_id]),
            reverse("cohort:participant_detail", args=[participant.pk]),
            reverse("cohort:participant_minutes", args=[participant.pk]) + "?start=0&end=2000",
        ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert_clean(response.content.decode(), url)


def test_the_import_report_counts_files_but_never_names_them(imported_everything):
    from healthagent.models import Cohort

    report = json.dumps(Cohort.objects.get(name="Fitbit").import_report)
    assert '"heart_rate": 6' in report  # two exports, three days each
    assert ".json" not in report
