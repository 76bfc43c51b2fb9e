"""``make faults``: the fault scenarios of issue 12 against a private PostgreSQL and Redis.

Each scenario is a pytest test that also runs in ``make test`` (CI has PostgreSQL, Redis and
Chromium up); this runner starts the services itself, runs the scenarios, and prints one
PASS/FAIL line each. Exit status 0 only when all pass.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from loadtest.services import Services
from loadtest.stack import ROOT

SCENARIOS = {
    "tests/modeling/test_jobs.py::test_a_killed_worker_s_job_resumes_from_its_checkpoint_on_another_worker": "a worker SIGKILLed mid-job: the job is redelivered and resumes from its checkpoint",
    "tests/faults/test_redis_restart.py::test_ratings_commit_while_redis_is_down_and_the_dashboard_reconnects": "Redis restarted during an open study: ratings still commit, the dashboard reconnects",
    "tests/faults/test_database_drop.py::test_a_dropped_connection_during_submit_leaves_nothing_and_a_retry_saves_once": "database connection dropped during a rating submit: an error, nothing half-written, a safe retry",
    "tests/faults/test_trajectory_store_full.py::test_a_full_trajectory_store_rolls_the_import_back_with_a_clear_message": "trajectory store's disk full during an import: the import rolls back with a clear message",
}


def outcomes(report: Path) -> dict[str, str]:
    """Test id -> PASS/FAIL/SKIP from pytest's JUnit XML."""
    results = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        test_id = case.get("classname", "").replace(".", "/") + ".py::" + case.get("name", "")
        if case.find("failure") is not None or case.find("error") is not None:
            results[test_id] = "FAIL"
        elif case.find("skipped") is not None:
            results[test_id] = "SKIP"
        else:
            results[test_id] = "PASS"
    return results


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="healthagent-faults."))
    with Services() as services:
        environment = {**services.environment(), "REQUIRE_SERVICES": "1", "HEALTHAGENT_VAR_DIR": str(work / "var")}
        report = work / "report.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *SCENARIOS]
        subprocess.run(command, cwd=ROOT, env={**os.environ, **environment})
    results = outcomes(report) if report.exists() else {}
    shutil.rmtree(work, ignore_errors=True)
    print()
    for test_id, scenario in SCENARIOS.items():
        print(f"{results.get(test_id, 'FAIL')}  {scenario}  ({test_id.split('::')[0]})")
    return 0 if all(results.get(test_id) == "PASS" for test_id in SCENARIOS) else 1


if __name__ == "__main__":
    sys.exit(main())
