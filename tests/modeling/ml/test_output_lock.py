"""One writer per output folder: a study or a pre-training started on a folder another process is writing stops at
once with a message, and writes nothing."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modeling.ml.common.output_lock import FolderInUse, output_lock
from modeling.ml.lsm.scaling import ScalingSettings, scaling_study

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def held(tmp_path):
    """``tmp_path`` locked by another process until the test ends."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from modeling.ml.common.output_lock import output_lock\n"
            "with output_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    yield holder
    holder.kill()
    holder.wait()


def test_a_second_study_on_a_folder_in_use_stops_before_writing(tmp_path, held):
    with pytest.raises(FolderInUse, match=f"another run \\(process {held.pid}\\)"):
        scaling_study(ScalingSettings(sizes=["32x1"], windows=[20], device="cpu"), tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [".lock"]


def test_the_command_line_says_so_and_exits(tmp_path, held):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "modeling.ml",
            "lsm",
            "pretrain",
            "--size",
            "tiny",
            "--steps",
            "1",
            "--output",
            str(tmp_path),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and f"is being written by another run (process {held.pid})" in done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == [".lock"]


def test_the_lock_is_free_again_when_its_holder_ends(tmp_path, held):
    held.kill()
    held.wait()
    deadline = time.monotonic() + 10
    with output_lock(tmp_path):  # the kernel released the dead process's lock: no stale lock file to clear by hand
        assert (tmp_path / ".lock").read_text() == f"process {os.getpid()}\n"
    assert time.monotonic() < deadline
    with output_lock(tmp_path), pytest.raises(FolderInUse), output_lock(tmp_path):
        pass  # and one process cannot take it twice either
