""".ci/audit-dependencies: a found vulnerability always fails (exit 1), even when its description reads
like a network error; only an audit that produced no report is "not run" (exit 2)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent

# Stands in for `python -m pip_audit` (writes the JSON report the scenario names to the -o file);
# any other use of the interpreter goes to the real one.
FAKE_PIP_AUDIT = """
import os, sys
arguments = sys.argv[1:]
if arguments[:2] != ["-m", "pip_audit"]:
    os.execv(sys.executable, [sys.executable, *arguments])
report = os.environ["FAKE_AUDIT_REPORT"]
print("Tip: ConnectionError, Max retries exceeded, the request timed out")  # the noise of descriptions
if report == "unreachable":
    print("ConnectionError: HTTPSConnectionPool(host='api.osv.dev'): Max retries exceeded", file=sys.stderr)
    sys.exit(1)
output = arguments[arguments.index("-o") + 1] if "-o" in arguments else arguments[arguments.index("--output") + 1]
open(output, "w").write(report)
sys.exit(1 if '"vulns": [{' in report else 0)
"""

CLEAN = {"dependencies": [{"name": "django", "version": "5.2", "vulns": []}], "fixes": []}
VULNERABLE = {
    "dependencies": [
        {
            "name": "django",
            "version": "5.2",
            "vulns": [
                {
                    "id": "PYSEC-0",
                    "fix_versions": ["5.2.1"],
                    "aliases": [],
                    "description": "A ConnectionError is raised when the request timed out",
                }
            ],
        }
    ],
    "fixes": [],
}
SKIPPED = {"dependencies": [{"name": "healthagent-local", "skip_reason": "not found on PyPI"}], "fixes": []}


def run_audit(tmp_path, report: str):
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\n" + FAKE_PIP_AUDIT)
    fake.chmod(0o755)
    return subprocess.run(
        ["bash", ".ci/audit-dependencies"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PY": str(fake), "FAKE_AUDIT_REPORT": report},
    )


@pytest.mark.parametrize(
    ("report", "status", "said"),
    [
        (json.dumps(CLEAN), 0, "no known vulnerability"),
        (json.dumps(VULNERABLE), 1, "1 known vulnerability"),
        (json.dumps(SKIPPED), 1, "could not be audited: healthagent-local"),
        ("unreachable", 2, "DEPENDENCY AUDIT NOT RUN"),
    ],
)
def test_the_exit_status_follows_the_parsed_report(tmp_path, report, status, said):
    result = run_audit(tmp_path, report)
    assert result.returncode == status, result.stdout + result.stderr
    assert said in result.stdout + result.stderr
