"""``make bench``: run every benchmark (or those named) and write JSON under bench/results/.

Each benchmark module exposes ``run() -> dict``. Ratios are measured within one run, because
these machines are noisy: compare numbers from the same file, not across files.
"""

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from loadtest.reference import reference_cpu_ms

BENCHMARKS = (
    "bench.site_pages",
    "bench.cohort",
    "bench.rating_page",
    "bench.dashboard",
    "bench.lsm",
    "bench.lsm_probe",
    "bench.twin",
    "bench.twin_fidelity",
    "bench.sensorlm_fidelity",
    "bench.load_summary",
    "bench.rated_item_instructions",
    "bench.rater_quality",
    "bench.judge",
)
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmark modules to run (default: all)")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthagent.settings")
    RESULTS_DIR.mkdir(exist_ok=True)
    selected = [name for name in BENCHMARKS if not args.names or name.rsplit(".", 1)[-1] in args.names]
    if not args.in_process:
        # Each benchmark in a fresh process: each sets up Django on its own throw-away var/ folder.
        failures = [
            name
            for name in selected
            if subprocess.run([sys.executable, "-m", "bench", "--in-process", name.rsplit(".", 1)[-1]]).returncode != 0
        ]
        return 1 if failures else 0
    for module_name in selected:
        load_before = [round(value, 2) for value in os.getloadavg()]
        reference = reference_cpu_ms()  # before the benchmark, as the load test does
        started = time.perf_counter()
        result = importlib.import_module(module_name).run()
        record = {
            "benchmark": module_name,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "reference_cpu_ms": reference,  # loadtest.reference: the machine's speed at this code's kind of work
            },
            # 1-, 5- and 15-minute load averages: a figure measured beside other heavy work cannot be compared.
            "load_average": {"before": load_before, "after": [round(value, 2) for value in os.getloadavg()]},
            "seconds": round(time.perf_counter() - started, 2),
            "result": result,
        }
        path = RESULTS_DIR / f"{module_name.rsplit('.', 1)[-1]}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps(record["result"], indent=2))
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
