"""The load test's figures of a shape (loadtest/report.py): CPU per rated item over the steady window, the ramp's
one-off work (log-ins, first items) left out, and over the whole shape beside it."""

from pathlib import Path

from loadtest.client import Recorder
from loadtest.report import _process_seconds, child_pids, shape_summary


def _snapshot(wall: float, server: float, postgres: float) -> dict:
    return {
        "wall": wall,
        "server": server,
        "postgres": postgres,
        "client": 0.0,
        "machine_busy": 0.0,
        "machine_total": 0.0,
    }


def test_cpu_per_rated_item_is_the_steady_window_s_and_the_whole_shape_s_is_kept_beside_it():
    recorder = Recorder()
    for number in range(10):  # submits at 0..9 s; the window starts at 5 s
        recorder.add("submit", float(number), 20.0, True)
        recorder.acknowledged.add(number)
    recorder.add("submit", 7.0, 20.0, False, "timeout")  # not acknowledged: not an item
    summary = shape_summary(
        recorder,
        started=0.0,
        steady_after_s=5.0,
        cpu_before=_snapshot(0.0, server=0.0, postgres=0.0),
        cpu_steady=_snapshot(5.0, server=3.0, postgres=1.0),  # the ramp took 3 s of the server's CPU
        cpu_after=_snapshot(10.0, server=3.05, postgres=1.02),
    )
    assert summary["cpu_ms_per_rated_item"] == {"server": 10.0, "postgres": 4.0, "client": 0.0}  # 5 items
    assert summary["cpu_ms_per_rated_item_whole_shape"]["server"] == 305.0  # 10 items, the ramp's work included


def test_a_process_that_ends_while_its_stat_file_is_read_is_skipped(monkeypatch):
    """/proc/<pid>/stat of a process that ended after the listing raises ProcessLookupError (ESRCH) on read, not
    FileNotFoundError: a web worker's thread ending then stopped a whole run (session 26)."""
    real_read_text = Path.read_text

    def read_text(path, *args, **kwargs):
        if path.name == "stat" and path.parent.name.isdigit() and int(path.parent.name) != 1:
            raise ProcessLookupError(3, "No such process")
        return real_read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    assert child_pids(1) == [] and _process_seconds(2) == 0.0


def test_the_reference_workload_is_steady_and_a_shape_reads_in_its_units():
    from loadtest.reference import reference_cpu_ms
    from loadtest.report import _in_reference_units, _reference_line

    first, second = reference_cpu_ms(repeats=3, rounds=4), reference_cpu_ms(repeats=3, rounds=4)
    assert first > 0 and second > 0
    assert 0.5 < first / second < 2  # the fastest of repeats: the same machine gives about the same time
    conditions = {"reference_cpu_ms": 40.0}
    shape = {"cpu_ms_per_rated_item": {"server": 9.0, "postgres": 5.0, "client": 1.0}}
    assert _in_reference_units(shape, conditions).endswith("14.0 ms per rated item = 0.350 of the reference workload.")
    assert "40.0 ms of CPU" in _reference_line(conditions)[0]
    assert _in_reference_units(shape, {}) == "" and _reference_line({}) == []  # an older run's results still render
    steady = {**shape, "reference_cpu_ms": {"before": 36.0, "after": 37.0}}  # taken around the shape: their mean
    assert _in_reference_units(steady, conditions) == (
        " Server + PostgreSQL: 14.0 ms per rated item = 0.384 of the reference workload (36.0 ms just before the"
        " shape, 37.0 just after)."
    )
    moved = {**shape, "reference_cpu_ms": {"before": 36.0, "after": 60.0}}
    assert "moved by 67% during the shape" in _in_reference_units(moved, conditions)
