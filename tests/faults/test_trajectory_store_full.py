"""Fault: the trajectory store's disk fills up in the middle of an import (a real 1 MiB tmpfs).

The import must roll back whole (no cohort, participant or file left, the space given back) and
say what happened. Mounting needs root (CI and these machines run as root); elsewhere it skips.
"""

import os
import re
import shutil
import subprocess

import pytest

from healthagent.cohort.importers.synthetic import synthetic_participants
from healthagent.cohort.importing import CohortImportError, cohort_import
from healthagent.models import Cohort, Participant

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_store(settings, tmp_path):
    """TRAJECTORY_ROOT on its own 1 MiB filesystem: room for a few two-day participants, not ten."""
    store = tmp_path / "store"
    store.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(store)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    settings.TRAJECTORY_ROOT = store
    yield store
    subprocess.run(["umount", str(store)], check=True)


def test_a_full_trajectory_store_rolls_the_import_back_with_a_clear_message(small_store):
    free_before = shutil.disk_usage(small_store).free
    participants, report = synthetic_participants(participants=10, days=2, seed=4, history_days=10)
    with pytest.raises(CohortImportError) as error:
        cohort_import(
            name="Too big",
            source="synthetic",
            participants=participants,
            source_report=report,
            k=1,
            allow_k_below_minimum=True,
        )
    message = str(error.value)
    assert re.search(
        r"the trajectory store cannot take its file \(.*No space left on device.*\); nothing of this import was kept",
        message,
    ), message
    assert not message.startswith("participant #1:"), "the disk must fill up after some files were written"
    assert not Cohort.objects.exists() and not Participant.objects.exists()
    assert [path for path in small_store.rglob("*") if path.is_file()] == []  # no trajectory, no partial file
    assert shutil.disk_usage(small_store).free == free_before
