"""Every importer under damaged input (Hypothesis): random bytes, truncations, hostile numbers, other
encodings. Each file either imports or is refused with a message naming it (never another
exception, never an identifier), and a refused import leaves no row and no file behind."""

import io
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from healthagent.cohort.importers.minute_grid import SourceReport, samples_to_grid
from healthagent.cohort.store import trajectory_root
from tests import cohort_files
from tests.healthagent.cohort.test_identifier_leak import PLANTED
from tests.healthagent.cohort.test_importers import assert_nothing_stored

# Each example imports for real (PostgreSQL, Parquet files), so examples are few: the whole file runs
# in about 25 s on two cores. No example database: a failing example is printed, not stored.
EXAMPLES = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
HOSTILE_NUMBERS = [b"1e999", b"-1e999", b"nan", b"inf", b"9" * 400, b"1e308", b"-0", b"0", b"", b"\xd9\xa3", b"0x1F"]
ENCODINGS = ["latin-1", "cp1252", "utf-16", "utf-32"]


def damaged(valid: bytes, *, text: bool = True) -> st.SearchStrategy[bytes]:
    """Random bytes, or ``valid`` truncated, overwritten in places, or (text) with a number made
    hostile or in another encoding."""
    variants = [
        st.binary(max_size=2048),
        st.integers(0, len(valid) - 1).map(lambda end: valid[:end]),
        st.tuples(st.integers(0, len(valid) - 1), st.binary(min_size=1, max_size=64)).map(
            lambda choice: valid[: choice[0]] + choice[1] + valid[choice[0] + len(choice[1]) :]
        ),
    ]
    if text:
        numbers = [match.span() for match in re.finditer(rb"\d+(?:\.\d+)?", valid)]
        variants += [
            st.tuples(st.sampled_from(numbers), st.sampled_from(HOSTILE_NUMBERS)).map(
                lambda choice: valid[: choice[0][0]] + choice[1] + valid[choice[0][1] :]
            ),
            st.sampled_from(ENCODINGS).map(lambda encoding: valid.decode().encode(encoding, errors="replace")),
        ]
    return st.one_of(variants)


@pytest.fixture
def each_example(db) -> Callable:
    """A fresh folder per example; whatever an example stores is rolled back and its files removed."""

    @contextmanager
    def example() -> Iterator[Path]:
        with tempfile.TemporaryDirectory() as folder, transaction.atomic():
            try:
                yield Path(folder)
            finally:
                transaction.set_rollback(True)
                shutil.rmtree(trajectory_root(), ignore_errors=True)

    return example


def imports_or_is_refused_naming(name: str, source: str, *arguments: Path | str) -> None:
    """Import (at the default k: the parsing is under test, not the anonymity) or be refused cleanly."""
    try:
        call_command("import_cohort", source, *map(str, arguments), "--name", "Fuzzed")
        event("imported")  # --hypothesis-show-statistics shows how many examples got through
    except CommandError as error:
        event("refused")
        message = str(error)
        assert name in message, message  # a participant refused after parsing names its file too
        for identifier in PLANTED:
            assert identifier.lower() not in message.lower(), f"{identifier!r} shown in {message}"
        assert_nothing_stored()


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


@pytest.fixture(scope="module")
def fitbit_day(tmp_path_factory) -> dict[str, bytes]:
    """The first day of the test export and its profile: a small export keeps each example fast."""
    folder = cohort_files.write_fitbit_folder(tmp_path_factory.mktemp("fitbit") / "takeout")
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and ("2024-03-04" in path.name or path.name == "Profile.csv")
    }


@EXAMPLES
@given(data=st.data())
def test_a_damaged_fitbit_file(each_example, fitbit_day, data):
    member = data.draw(st.sampled_from(sorted(fitbit_day)), label="file")
    files = {**fitbit_day, member: data.draw(damaged(fitbit_day[member]), label="content")}
    with each_example() as folder:
        imports_or_is_refused_naming("takeout", "fitbit", write_files(folder / "takeout", files))


@pytest.fixture(scope="module")
def fitbit_zip(fitbit_day) -> bytes:
    valid = io.BytesIO()
    with zipfile.ZipFile(valid, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in fitbit_day.items():
            archive.writestr(name, content)
    return valid.getvalue()


@EXAMPLES
@given(data=st.data())
def test_a_damaged_fitbit_zip(each_example, fitbit_zip, data):
    content = data.draw(damaged(fitbit_zip, text=False), label="zip")
    with each_example() as folder:
        (folder / "takeout.zip").write_bytes(content)
        imports_or_is_refused_naming("takeout.zip", "fitbit", folder / "takeout.zip")


@EXAMPLES
@given(content=damaged(cohort_files.apple_xml().encode()))
def test_a_damaged_apple_export(each_example, content):
    with each_example() as folder:
        (folder / "export.xml").write_bytes(content)
        imports_or_is_refused_naming("export.xml", "apple", folder / "export.xml")


@pytest.fixture(scope="module")
def apple_zip(tmp_path_factory) -> bytes:
    return cohort_files.write_apple_zip(tmp_path_factory.mktemp("apple") / "export.zip").read_bytes()


@EXAMPLES
@given(data=st.data())
def test_a_damaged_apple_zip(each_example, apple_zip, data):
    content = data.draw(damaged(apple_zip, text=False), label="zip")
    with each_example() as folder:
        (folder / "export.zip").write_bytes(content)
        imports_or_is_refused_naming("export.zip", "apple", folder / "export.zip")


@pytest.fixture(scope="module")
def csv_files(tmp_path_factory) -> dict[str, bytes]:
    files = cohort_files.write_csv_long(tmp_path_factory.mktemp("csv"))
    return {path.name: path.read_bytes() for path in files.values()}


@EXAMPLES
@given(data=st.data())
def test_a_damaged_csv_file(each_example, csv_files, data):
    name = data.draw(st.sampled_from(sorted(csv_files)), label="file")
    files = {**csv_files, name: data.draw(damaged(csv_files[name]), label="content")}
    with each_example() as folder:
        write_files(folder, files)
        imports_or_is_refused_naming(
            name,
            "csv",
            folder / "signals.csv",
            "--demographics",
            folder / "participants.csv",
            "--measurements",
            folder / "measurements.csv",
        )


@pytest.fixture(scope="module")
def parquet_signals(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("parquet")
    frame = pd.read_csv(cohort_files.write_csv_wide(folder), dtype={"participant_id": str, "timestamp": str})
    frame.to_parquet(folder / "wide.parquet")
    return (folder / "wide.parquet").read_bytes()


@EXAMPLES
@given(data=st.data())
def test_a_damaged_parquet_file(each_example, parquet_signals, data):
    content = data.draw(damaged(parquet_signals, text=False), label="parquet")
    with each_example() as folder:
        (folder / "wide.parquet").write_bytes(content)
        imports_or_is_refused_naming("wide.parquet", "csv", folder / "wide.parquet")


CHANNEL_VALUES = {"steps": [0.0, 2.5, 40.0, 900.0], "sleep_stage": [0.0, 1.0, 3.0], "heart_rate": [60.0, 500.0]}
interval = st.sampled_from(sorted(CHANNEL_VALUES)).flatmap(
    lambda channel: st.tuples(
        st.integers(0, 200 * 86400),  # start, seconds into the data
        st.sampled_from([1, 2, 59, 61, 1440, 2880]),  # minutes covered
        st.just(channel),
        st.sampled_from(CHANNEL_VALUES[channel]),
    )
)


@settings(max_examples=60, deadline=None, database=None)
@given(intervals=st.lists(interval, min_size=1, max_size=20), max_days=st.sampled_from([1, 3, 90]))
def test_an_interval_is_laid_on_its_minutes_like_one_sample_per_minute(intervals, max_days):
    """Laying intervals on the kept days only gives the grid (and report) their minutes one by one would."""
    starts, minutes, channels, values = (np.array(column) for column in zip(*intervals, strict=True))
    times = np.datetime64("2024-01-01T00:00:00", "s") + starts.astype("timedelta64[s]")
    as_intervals = pd.DataFrame({"time": times, "channel": channels, "value": values, "minutes": minutes})
    step = np.concatenate([np.arange(count) for count in minutes])  # minute within its interval
    rows = np.repeat(np.arange(len(minutes)), minutes)
    as_minutes = pd.DataFrame(
        {"time": times[rows] + step * np.timedelta64(60, "s"), "channel": channels[rows], "value": values[rows]}
    )
    outcomes = []
    for samples in (as_intervals, as_minutes):
        report = SourceReport(source="test")
        try:
            first_day, grid, mask = samples_to_grid(samples, report, max_days=max_days)
        except ValueError as error:
            outcomes.append(str(error))
            continue
        counts = (report.samples_read, sum(report.dropped.values()), dict(report.resampled), report.notes)
        outcomes.append((first_day, np.nan_to_num(grid, nan=-1.0).tobytes(), mask.tobytes(), counts))
    assert outcomes[0] == outcomes[1]
