"""Hostile exports: zip bombs, entity bombs, records spanning decades. Each is refused quickly with a
message naming the file (and never a date of birth or another identifier), leaving nothing behind."""

import io
import json
import time
import traceback
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from healthagent.cohort.importers import apple, archives, fitbit
from healthagent.cohort.importers.archives import LimitedReader
from healthagent.cohort.importing import CohortImportError
from tests import cohort_files
from tests.healthagent.cohort.test_importers import assert_nothing_stored

pytestmark = pytest.mark.django_db
BIRTH_DATE = cohort_files.PLANTED["birth_date"]


def refusal(source: str, *arguments: Path | str) -> str:
    """The message an import is refused with, and its traceback as a log would show it."""
    with pytest.raises(CommandError) as error:
        call_command("import_cohort", source, *map(str, arguments), "--name", "Hostile")
    assert_nothing_stored()
    return str(error.value) + "\n" + "".join(traceback.format_exception(error.value))


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def test_a_fitbit_zip_bomb_is_refused_before_it_is_unpacked(tmp_path, monkeypatch):
    monkeypatch.setattr(fitbit, "MAX_UNCOMPRESSED_BYTES", 8 * 1024**2)
    bomb = zip_of(tmp_path / "takeout.zip", {"Fitbit/heart_rate-2024-03-04.json": bytes(16 * 1024**2)})
    assert bomb.stat().st_size < 64 * 1024  # kilobytes on disk, 16 MB unpacked
    started = time.perf_counter()
    message = refusal("fitbit", bomb)
    assert time.perf_counter() - started < 1
    assert "takeout.zip: its heart rate, steps, sleep and profile files unpack to 16,777,216 bytes, over the limit" in (
        message
    )


def test_one_oversized_fitbit_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(fitbit, "MAX_FILE_BYTES", 1024**2)
    bomb = zip_of(tmp_path / "takeout.zip", {"Fitbit/steps-2024-03-04.json": b"[" + b" " * 2 * 1024**2 + b"]"})
    assert "takeout.zip/Fitbit/steps-2024-03-04.json: 2,097,154 bytes, over the limit of 1,048,576" in refusal(
        "fitbit", bomb
    )


def test_an_apple_zip_bomb_is_refused_before_it_is_unpacked(tmp_path, monkeypatch):
    monkeypatch.setattr(apple, "MAX_XML_BYTES", 8 * 1024**2)
    xml = cohort_files.apple_xml().encode()
    bomb = zip_of(tmp_path / "export.zip", {"apple_health_export/export.xml": xml + bytes(16 * 1024**2)})
    unpacked = len(xml) + 16 * 1024**2
    assert f"export.zip/apple_health_export/export.xml: unpacks to {unpacked:,} bytes, over the limit of 8,388,608" in (
        refusal("apple", bomb)
    )


def test_a_zip_whose_header_understates_a_member_is_refused(tmp_path):
    """zipfile stops at the declared size and finds the checksum wrong; either way the zip is refused."""
    path = zip_of(tmp_path / "takeout.zip", {"Fitbit/steps-2024-03-04.json": b"[" + b"0," * 1024**2 + b"0]"})
    data = bytearray(path.read_bytes())
    directory = data.rindex(b"PK\x01\x02")  # the member's central directory entry: uncompressed size at +24
    data[directory + 24 : directory + 28] = (100).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert "takeout.zip/Fitbit/steps-2024-03-04.json: cannot be read (Bad CRC-32" in refusal("fitbit", path)


def test_reads_stop_one_byte_past_the_limit_whatever_the_header_says():
    reader = LimitedReader(io.BytesIO(bytes(100)), limit=10, where="export.zip/export.xml")
    assert reader.read(4) == bytes(4)
    with pytest.raises(CohortImportError, match=r"^export.zip/export.xml: unpacks to more than its limit of 10 bytes"):
        reader.read()
    assert reader.bytes_read == 11


@pytest.mark.parametrize("source", ["fitbit", "apple"])
def test_a_zip_of_too_many_members_is_refused(tmp_path, monkeypatch, source):
    monkeypatch.setattr(archives, "MAX_MEMBERS", 50)
    members = {f"Fitbit/other/file-{number}.txt": b"" for number in range(51)}
    path = zip_of(tmp_path / "export.zip", {"apple_health_export/export.xml": b"", **members})
    assert "export.zip: 52 files in the zip, more than the 50 of any real export; refused" in refusal(source, path)


def test_a_damaged_zip_is_refused_naming_it(tmp_path):
    data = cohort_files.write_fitbit_zip(tmp_path / "good.zip").read_bytes()
    directory = data.rindex(b"PK\x01\x02")
    (tmp_path / "takeout.zip").write_bytes(data[: directory + 10] + data[-22:])  # a cut central directory
    assert "takeout.zip: a damaged zip (" in refusal("fitbit", tmp_path / "takeout.zip")


ENTITY_BOMB = '<!ENTITY lol0 "lol">\n' + "".join(
    f'<!ENTITY lol{level} "' + f"&lol{level - 1};" * 10 + '">\n' for level in range(1, 10)
)  # lol9 expands to a billion "lol"s


@pytest.mark.parametrize(
    "declarations",
    [
        pytest.param(ENTITY_BOMB, id="billion laughs"),
        pytest.param('<!ENTITY lol9 "a harmless-looking entity">\n', id="one small entity"),
        pytest.param('<!ENTITY lol9 SYSTEM "file:///etc/passwd">\n', id="external entity"),
    ],
)
def test_an_apple_export_declaring_entities_is_refused(tmp_path, declarations):
    text = cohort_files.apple_xml().replace("<!DOCTYPE HealthData [\n", "<!DOCTYPE HealthData [\n" + declarations)
    text = text.replace('<ExportDate value="2024-03-08 10:00:00 -0500"/>', '<ExportDate value="&lol9;"/>')
    path = tmp_path / "export.xml"
    path.write_text(text)
    started = time.perf_counter()
    message = refusal("apple", path)
    assert time.perf_counter() - started < 1
    assert "export.xml: the XML declares entities or external references, which exports never do" in message


def sleep_record(start: str, end: str) -> str:
    return (
        '<Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Watch" '
        f'startDate="{start} -0500" endDate="{end} -0500" value="HKCategoryValueSleepAnalysisAsleepCore"/>'
    )


def test_an_apple_record_spanning_thirty_years_is_refused_not_laid_out(tmp_path):
    record = sleep_record("1994-03-04 23:00:00", "2024-03-04 07:00:00")
    path = tmp_path / "export.xml"
    path.write_text(
        cohort_files.apple_xml().replace('<HealthData locale="en_US">', f'<HealthData locale="en_US">{record}')
    )
    started = time.perf_counter()
    message = refusal("apple", path)
    assert time.perf_counter() - started < 1  # fifteen million minutes, never expanded
    assert "export.xml record 1: a HKCategoryTypeIdentifierSleepAnalysis record spans more than 2 days; refused" in (
        message
    )
    assert "1994" not in message and "2024-03-04" not in message


def test_a_fitbit_sleep_level_spanning_thirty_years_is_refused(tmp_path):
    folder = cohort_files.write_fitbit_folder(tmp_path / "takeout")
    sleep_file = next(folder.rglob("sleep-*.json"))
    logs = json.loads(sleep_file.read_text())
    logs[0]["levels"]["data"][1]["seconds"] = 30 * 365 * 86400
    sleep_file.write_text(json.dumps(logs))
    started = time.perf_counter()
    message = refusal("fitbit", folder)
    assert time.perf_counter() - started < 2  # the export's three days of heart rate are read first
    assert (
        f"takeout/Fitbit/Global Export Data/{sleep_file.name} sleep log 1: a sleep level spans more than 2" in message
    )


def test_overlapping_records_cannot_multiply_the_minutes_laid_out(tmp_path):
    """Each record is short enough, but thousands stacked on the same two days would be millions of minutes."""
    records = "".join(
        sleep_record(f"2024-03-04 00:{second // 60:02}:{second % 60:02}", "2024-03-05 23:59:00")
        for second in range(2000)
    )
    path = tmp_path / "export.xml"
    path.write_text(
        cohort_files.apple_xml().replace('<HealthData locale="en_US">', f'<HealthData locale="en_US">{records}')
    )
    started = time.perf_counter()
    message = refusal("apple", path)
    assert time.perf_counter() - started < 2
    assert "export.xml: interval records cover" in message and "more than the grid's" in message


def test_apple_elements_are_released_at_every_depth_and_text_is_not_kept(tmp_path):
    """Records inside another element (not at depth 1) are released as they are read, and text (exports
    have none) is never held: memory stays flat."""
    records = "".join(
        f'<Record type="HKQuantityTypeIdentifierBodyMass" sourceName="Scale" unit="kg" value="{number}" '
        'startDate="2024-03-04 08:00:00 -0500" endDate="2024-03-04 08:00:00 -0500"/>'
        for number in range(20_000)
    )
    path = tmp_path / "export.xml"
    text = "x" * 5_000_000
    path.write_text(
        f'<?xml version="1.0"?>\n<HealthData><Wrapper>{records}<Note>{text}</Note></Wrapper></HealthData>\n'
    )
    tracemalloc.start()
    try:
        with pytest.raises(CohortImportError, match=r"export\.xml: no heart rate"):  # body mass is not read
            apple.apple_participants(paths=[path])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024**2, f"{peak:,} bytes at the peak for a {path.stat().st_size:,}-byte file"


def test_deep_nesting_is_refused(tmp_path):
    path = tmp_path / "export.xml"
    path.write_text('<?xml version="1.0"?>\n<HealthData>' + "<a>" * 20 + "</a>" * 20 + "</HealthData>\n")
    assert "export.xml: elements nested more than 16 deep, which no export is; refused" in refusal("apple", path)


def fitbit_record_with_a_name_for_a_value(folder: Path) -> list:
    export = cohort_files.write_fitbit_folder(folder / "takeout")
    steps_file = min(export.rglob("steps-*.json"))
    records = json.loads(steps_file.read_text())
    records[0]["value"] = cohort_files.PLANTED["name"]
    steps_file.write_text(json.dumps(records))
    return [export]


def fitbit_profile_with_an_invalid_birth_date(folder: Path) -> list:
    export = cohort_files.write_fitbit_folder(folder / "takeout")
    profile = next(export.rglob("Profile.csv"))
    profile.write_text(profile.read_text().replace(BIRTH_DATE, "1979-04-31"))
    return [export]


def apple_with_an_invalid_birth_date(folder: Path) -> list:
    path = folder / "export.xml"
    path.write_text(cohort_files.apple_xml().replace(BIRTH_DATE, "1979-04-31"))
    return [path]


def apple_record_at_hour_25(folder: Path) -> list:
    path = folder / "export.xml"
    path.write_text(
        cohort_files.apple_xml().replace('startDate="2024-03-04 00:00:00', 'startDate="2024-03-04 25:00:00', 1)
    )
    return [path]


def csv_demographics_with_an_invalid_birth_date(folder: Path) -> list:
    files = cohort_files.write_csv_long(folder)
    text = files["demographics"].read_text().replace(",age,", ",birth_date,").replace(",47,", ",1979-04-31,")
    files["demographics"].write_text(text)
    return [files["signals"], "--demographics", files["demographics"]]


def csv_demographics_without_its_header_line(folder: Path) -> list:
    files = cohort_files.write_csv_long(folder)
    lines = files["demographics"].read_text().splitlines(keepends=True)
    files["demographics"].write_text("".join(lines[1:]))  # without its header line, the first row is read as one
    return [files["signals"], "--demographics", files["demographics"]]


@pytest.mark.parametrize(
    ("source", "write", "expected"),
    [
        ("fitbit", fitbit_record_with_a_name_for_a_value, "steps-2024-03-04.json record 1: a field of the wrong type"),
        ("fitbit", fitbit_profile_with_an_invalid_birth_date, "Profile.csv line 2: date_of_birth is not a date"),
        ("apple", apple_with_an_invalid_birth_date, "export.xml: the date of birth in <Me> is not a date"),
        ("apple", apple_record_at_hour_25, "export.xml record 1: a HKQuantityTypeIdentifierHeartRate record has an"),
        ("csv", csv_demographics_with_an_invalid_birth_date, "participants.csv line 2: birth_date is not a date"),
        ("csv", csv_demographics_without_its_header_line, "participants.csv: missing column(s) participant_id"),
    ],
)
def test_no_refusal_shows_a_date_of_birth_or_another_identifier(tmp_path, source, write, expected):
    """Neither the message nor the traceback a log would print: file names are the only dates shown."""
    message = refusal(source, *write(tmp_path))
    assert expected in message
    for identifier in [*cohort_files.PLANTED.values(), "MRN-00077-ZX", "1979", "2024-03-04 25", "03/04/24"]:
        assert identifier not in message, f"{identifier!r} shown in {message}"
