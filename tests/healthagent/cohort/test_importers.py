"""The four importers on files the tests write, broken ones included: all or nothing, idempotent."""

import re

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from healthagent.cohort import importing
from healthagent.cohort.store import read_window, trajectory_root
from healthagent.models import Cohort, DailySummary, Event, Measurement, Participant
from tests import cohort_files

pytestmark = pytest.mark.django_db


def import_cohort(source, *paths, name="Imported", **options):
    call_command(
        "import_cohort",
        source,
        *map(str, paths),
        "--name",
        name,
        "--k",
        "1",
        "--allow-k-below-minimum",
        *[item for key, value in options.items() for item in (f"--{key.replace('_', '-')}", str(value))],
    )
    return Cohort.objects.get(name=name)


def assert_nothing_stored():
    assert Cohort.objects.count() == Participant.objects.count() == 0
    assert DailySummary.objects.count() == Measurement.objects.count() == Event.objects.count() == 0
    root = trajectory_root()
    assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()]


def channel(participant, name):
    values, _ = read_window(
        path=trajectory_root() / participant.trajectory_path,
        start_day=0,
        end_day=participant.minute_days,
        channels=[name],
    )
    return values[:, 0].ravel()


def test_csv_long_with_demographics_measurements_and_unit_conversion(tmp_path):
    files = cohort_files.write_csv_long(tmp_path)
    cohort = import_cohort(
        "csv", files["signals"], demographics=files["demographics"], measurements=files["measurements"]
    )
    participants = list(cohort.participants.order_by("age_band"))
    assert [(p.age_band, p.sex) for p in participants] == [("45-49", "female"), ("45-49", "male")]
    first = participants[0]
    heart = channel(first, "heart_rate")
    assert heart[0] == pytest.approx(58.0, abs=0.1)  # 00:00 local: the offset -05:00 names the local time
    assert np.isnan(heart[1]) and not np.isnan(heart[5])  # sampled every 5 minutes: gaps stay gaps
    assert np.nanmean(channel(first, "skin_temperature")) == pytest.approx(
        (91.5 - 32) * 5 / 9, abs=0.01
    )  # degF converted
    weight = first.measurements.get(name="weight")
    assert weight.value == pytest.approx(180 * 0.45359237, abs=0.01) and weight.unit == "kg"
    assert first.measurements.get(name="systolic_bp").day_index == 0 and first.minute_start_day == 49
    assert first.daily_summaries.get(day_index=49).steps == 40 * 8  # 10:00-10:40, every 5 minutes


def test_csv_wide_layout(tmp_path):
    cohort = import_cohort("csv", cohort_files.write_csv_wide(tmp_path))
    participant = cohort.participants.get()
    spo2 = channel(participant, "spo2")
    assert np.nanmax(spo2) == pytest.approx(96.5) and np.isnan(spo2[7 * 60])  # blank cells are missing
    assert participant.age_band == "unknown"


def test_importing_the_same_export_twice_adds_nothing(tmp_path):
    files = cohort_files.write_csv_long(tmp_path)
    import_cohort("csv", files["signals"], demographics=files["demographics"])
    counts = (
        Participant.objects.count(),
        DailySummary.objects.count(),
        len(list(trajectory_root().rglob("*.parquet"))),
    )
    cohort = import_cohort("csv", files["signals"], demographics=files["demographics"])
    assert (
        Participant.objects.count(),
        DailySummary.objects.count(),
        len(list(trajectory_root().rglob("*.parquet"))),
    ) == counts
    assert cohort.import_report["imports"][-1]["already_present"] == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda text: text.replace("participant_id,timestamp,channel,value", "participant,time,channel,value"),
            "signals.csv: missing column(s) participant_id, timestamp",
        ),
        (lambda text: text.replace("heart_rate", "pulse", 1), "signals.csv line 2: unknown channel 'pulse'"),
        (lambda text: text.replace(",bpm", ",Hz", 1), "signals.csv line 2: heart_rate is measured in bpm, not 'Hz'"),
        (
            lambda text: text.replace("2024-03-04T00:05:00-05:00", "yesterday", 1),
            "signals.csv line 5: 'yesterday' is not an ISO 8601 timestamp",
        ),
        (
            lambda text: text.replace("2024-03-04T00:00:00-05:00,steps,0", "2024-03-04T00:00:00-05:00,steps,lots", 1),
            "signals.csv line 3: value 'lots' is not a number",
        ),
    ],
)
def test_a_broken_csv_names_the_line_and_leaves_nothing(tmp_path, edit, message):
    files = cohort_files.write_csv_long(tmp_path)
    files["signals"].write_text(edit(files["signals"].read_text()))
    with pytest.raises(CommandError) as error:
        import_cohort("csv", files["signals"], demographics=files["demographics"])
    assert message in str(error.value)
    assert_nothing_stored()


def test_a_failure_while_storing_rolls_back_rows_and_files(tmp_path, monkeypatch):
    files = cohort_files.write_csv_long(tmp_path)
    real_write = importing.write_trajectory
    calls = []

    def fail_on_second(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real_write(**kwargs)

    monkeypatch.setattr(importing, "write_trajectory", fail_on_second)
    with pytest.raises(
        CommandError,
        match=r"participant #2 \(signals.csv, participants.csv\): the trajectory store cannot take its file .No space left on device.; nothing",
    ):
        import_cohort("csv", files["signals"], demographics=files["demographics"], measurements=files["measurements"])
    assert len(calls) == 2
    assert_nothing_stored()


def test_files_over_the_size_limit_are_refused_before_reading(tmp_path, settings):
    settings.COHORT_IMPORT_MAX_BYTES = 1000
    files = cohort_files.write_csv_long(tmp_path)
    with pytest.raises(CommandError, match=r"signals.csv: [\d,]+ bytes is over the import limit of 1,000 bytes"):
        import_cohort("csv", files["signals"])
    assert_nothing_stored()


@pytest.mark.parametrize("as_zip", [False, True])
def test_fitbit_export(tmp_path, as_zip):
    path = (
        cohort_files.write_fitbit_zip(tmp_path / "takeout.zip")
        if as_zip
        else cohort_files.write_fitbit_folder(tmp_path / "takeout")
    )
    cohort = import_cohort("fitbit", path)
    participant = cohort.participants.get()
    assert (participant.age_band, participant.sex) == ("40-44", "female")  # born 1979-04-17, data from 2024-03
    stages = channel(participant, "sleep_stage")
    assert set(np.unique(stages[~np.isnan(stages)])) == {0, 1, 2, 3}
    heart = channel(participant, "heart_rate")
    assert np.isnan(heart[:1440]).sum() > 1000  # day 0 is the evening before the first night: mostly empty
    report = cohort.import_report["imports"][0]
    assert report["files"] == {"heart_rate": 3, "steps": 3, "sleep": 3}
    assert report["merged_into_minutes"]["heart_rate"] == 3 * 1440 * 3  # four 15-second samples per minute


def test_a_malformed_fitbit_file_names_the_file(tmp_path):
    folder = cohort_files.write_fitbit_folder(tmp_path / "takeout")
    broken = next(folder.rglob("steps-*.json"))
    broken.write_text('[{"dateTime": "03/04/24 00:00:00", "value": "1"}, {"dateT')
    with pytest.raises(CommandError, match=rf"{broken.name}: not valid JSON"):
        import_cohort("fitbit", folder)
    assert_nothing_stored()


@pytest.mark.parametrize("as_zip", [False, True])
def test_apple_health_export(tmp_path, as_zip):
    path = (
        cohort_files.write_apple_zip(tmp_path / "export.zip")
        if as_zip
        else cohort_files.write_apple_xml(tmp_path / "export.xml")
    )
    cohort = import_cohort("apple", path)
    participant = cohort.participants.get()
    assert (participant.age_band, participant.sex) == ("40-44", "female")
    report = cohort.import_report["imports"][0]
    assert report["dropped"] == {
        "StepCount: records of a second source (phone or other device) overlapping the kept one": 6
    }
    steps = channel(participant, "steps")
    assert np.nansum(steps) == pytest.approx(3 * 2 * 1000)  # the watch's counts only, spread over their minutes
    assert np.nanmax(channel(participant, "spo2")) == pytest.approx(96.0)  # 0.96 as a fraction -> percent
    stages = channel(participant, "sleep_stage")
    assert set(np.unique(stages[~np.isnan(stages)])) == {0, 1, 2, 3}


def test_a_truncated_apple_export_is_refused(tmp_path):
    path = cohort_files.write_apple_xml(tmp_path / "export.xml")
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(
        CommandError, match=r"export.xml: the XML ends early|export.xml line \d+ column \d+: malformed XML"
    ):
        import_cohort("apple", path)
    assert_nothing_stored()


def test_apple_export_with_a_bad_unit_names_the_problem(tmp_path):
    path = cohort_files.write_apple_xml(tmp_path / "export.xml")
    path.write_text(path.read_text().replace('unit="count/min"', 'unit="count/s"', 1))
    with pytest.raises(CommandError, match="HKQuantityTypeIdentifierHeartRate in 'count/s', expected 'count/min'"):
        import_cohort("apple", path)
    assert_nothing_stored()


def test_an_apple_export_s_latest_height_is_kept_in_centimetres(tmp_path):
    """Health writes a height in the owner's unit; the latest is kept, in cm. One recorded before the first day of
    data (when the watch was set up) is kept on that day."""
    path = cohort_files.write_apple_xml(tmp_path / "export.xml")
    heights = (
        '<Record type="HKQuantityTypeIdentifierHeight" sourceName="Health" unit="ft" '
        'startDate="2019-05-01 10:00:00 -0500" endDate="2019-05-01 10:00:00 -0500" value="5.5"/>\n'
        '<Record type="HKQuantityTypeIdentifierHeight" sourceName="Health" unit="in" '
        'startDate="2021-06-01 10:00:00 -0500" endDate="2021-06-01 10:00:00 -0500" value="69"/>\n'
    )
    path.write_text(path.read_text().replace("<Record ", heights + "<Record ", 1))
    participant = import_cohort("apple", path).participants.get()
    height = participant.measurements.get()
    assert (height.name, height.value, height.unit, height.day_index) == ("height", 175.3, "cm", 0)


@pytest.mark.parametrize(
    ("value", "unit", "message"),
    [
        ("175", "m", "height 175 m is 17500 cm, outside 100-250 cm: is its unit right?"),
        ("175", "stone", "HKQuantityTypeIdentifierHeight in 'stone', expected one of cm, m, in, ft"),
        ("tall", "cm", "a HKQuantityTypeIdentifierHeight record has an invalid date or value"),
    ],
)
def test_an_apple_height_that_cannot_be_one_is_refused(tmp_path, value, unit, message):
    path = cohort_files.write_apple_xml(tmp_path / "export.xml")
    bad = (
        f'<Record type="HKQuantityTypeIdentifierHeight" sourceName="Health" unit="{unit}" '
        f'startDate="2021-06-01 10:00:00 -0500" endDate="2021-06-01 10:00:00 -0500" value="{value}"/>\n'
    )
    path.write_text(path.read_text().replace("<Record ", bad + "<Record ", 1))
    with pytest.raises(CommandError, match=re.escape(f"export.xml record 1: {message}")):
        import_cohort("apple", path)
    assert_nothing_stored()


def test_synthetic_import_keeps_ground_truth_and_events(tmp_path):
    cohort = import_cohort("synthetic", participants=4, days=3, seed=1, history_days=100)
    participant = cohort.participants.order_by("pk").first()
    assert participant.minute_days == 3 and participant.minute_start_day == 97
    assert set(participant.ground_truth) == {"traits", "labels", "seed", "index"}
    assert participant.events.filter(kind="sleep").exists() and participant.events.filter(kind="activity").exists()
    assert participant.measurements.filter(name="hba1c").exists()
    assert participant.daily_summaries.count() == 3
    height = participant.measurements.get(name="height")  # the simulator's, measured at the last weighing
    assert height.value == pytest.approx(100 * participant.ground_truth["traits"]["height_m"], abs=0.05)
    assert height.day_index == participant.measurements.filter(name="weight").latest("day_index").day_index


def test_a_height_is_kept_in_centimetres_and_is_the_twin_s_obesity_height(tmp_path):
    """A height in m or in is stored in cm, as a measurement (coded at import as any is); the twin's record from the
    database takes the latest as its height (no token), so obesity is read from the weight as in the evaluation."""
    from modeling.selectors import participant_record

    files = cohort_files.write_csv_long(tmp_path)
    first, second = cohort_files.PLANTED["participant_id"], "MRN-00077-ZX"
    with files["measurements"].open("a") as out:
        out.write(f"{first},2024-01-15T09:00:00,height,1.68,m\n{first},2024-03-05T09:00:00,height,168.4,cm\n")
        out.write(f"{second},2024-01-15T09:00:00,height,70,in\n")
    cohort = import_cohort(
        "csv", files["signals"], demographics=files["demographics"], measurements=files["measurements"]
    )
    heights = Measurement.objects.filter(name="height").order_by("participant__sex", "day_index")
    assert [(m.value, m.unit, m.modality) for m in heights] == [
        (168.0, "cm", "body_composition"),
        (168.4, "cm", "body_composition"),
        (177.8, "cm", "body_composition"),
    ]
    records = {p.sex: participant_record(participant=p) for p in cohort.participants.all()}
    assert records["female"].height_m == pytest.approx(1.684) and records["male"].height_m == pytest.approx(1.778)
    assert all(m["name"] != "height" for record in records.values() for m in record.measurements)


@pytest.mark.parametrize(("value", "unit"), [("1.75", "cm"), ("175", "m"), ("5.9", "in")])
def test_a_height_no_adult_has_is_refused_naming_its_line(tmp_path, value, unit):
    files = cohort_files.write_csv_long(tmp_path)
    with files["measurements"].open("a") as out:
        out.write(f"{cohort_files.PLANTED['participant_id']},2024-01-15T09:00:00,height,{value},{unit}\n")
    with pytest.raises(CommandError) as error:
        import_cohort("csv", files["signals"], demographics=files["demographics"], measurements=files["measurements"])
    converted = "" if unit == "cm" else f" is {float(value) * {'m': 100, 'in': 2.54}[unit]:g} cm,"
    expected = f"measurements.csv line 6: height {value} {unit}{converted} outside 100-250 cm: is its unit right"
    assert expected in str(error.value)
    assert_nothing_stored()


def test_unknown_sources_and_missing_paths(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        import_cohort("apple", tmp_path / "nothing.xml")
    with pytest.raises(CommandError, match="exactly one signals file"):
        import_cohort("csv")
    assert_nothing_stored()


def test_a_cohort_holds_one_source(tmp_path):
    import_cohort("synthetic", participants=1, days=1, seed=1, history_days=1, name="Mixed")
    with pytest.raises(CommandError, match="holds synthetic data"):
        import_cohort("csv", cohort_files.write_csv_wide(tmp_path), name="Mixed")
    assert Participant.objects.count() == 1


def test_parquet_signals_import_like_csv(tmp_path):
    import pandas as pd

    wide_csv = cohort_files.write_csv_wide(tmp_path)
    frame = pd.read_csv(wide_csv, dtype={"participant_id": str, "timestamp": str})
    frame.to_parquet(tmp_path / "wide.parquet")
    parquet_cohort = import_cohort("csv", tmp_path / "wide.parquet", name="From Parquet")
    csv_cohort = import_cohort("csv", wide_csv, name="From CSV")
    from_parquet, from_csv = parquet_cohort.participants.get(), csv_cohort.participants.get()
    np.testing.assert_array_equal(channel(from_parquet, "heart_rate"), channel(from_csv, "heart_rate"))
    assert from_parquet.pseudonym == from_csv.pseudonym  # same source identifier, same pseudonym


@pytest.mark.parametrize("value", ["", "inf", "1e999", "-1e999"])
def test_a_measurement_without_a_finite_value_is_refused_naming_its_line(tmp_path, value):
    files = cohort_files.write_csv_long(tmp_path)
    text = files["measurements"].read_text()
    files["measurements"].write_text(text.replace(",systolic_bp,131,", f",systolic_bp,{value},", 1))
    with pytest.raises(CommandError) as error:
        import_cohort("csv", files["signals"], demographics=files["demographics"], measurements=files["measurements"])
    assert "measurements.csv line 2: the value is missing, infinite or out of range" in str(error.value)
    assert_nothing_stored()
