"""The last load test's figures (bench/results/load.json, written by ``make loadtest``).

When there is none yet, runs a short one first (200 clinicians for 40 s, closed loop at 10 and
50 clients for 10 s): it needs root and the Debian PostgreSQL and Redis packages, as the load
test does. ``make loadtest`` gives the full figures (1,860 clinicians; 10, 50 and 200 clients).
"""

import json
import subprocess
import sys
from pathlib import Path

LOAD_RESULTS = Path(__file__).resolve().parent / "results" / "load.json"
SHORT_RUN = [
    "--clinicians",
    "200",
    "--open-duration-s",
    "40",
    "--closed-clients",
    "10,50",
    "--closed-duration-s",
    "10",
    "--participants",
    "10",
    "--variants",
    "4",
    "--logins",
    "5",
]


def run() -> dict:
    if not LOAD_RESULTS.exists():
        subprocess.run([sys.executable, "-m", "loadtest", *SHORT_RUN], cwd=LOAD_RESULTS.parents[2], check=True)
    results = json.loads(LOAD_RESULTS.read_text())
    shapes = {}
    for name, shape in results["shapes"].items():
        shapes[name] = {
            "offered": shape["offered"],
            "throughput_per_s": shape["throughput_per_s"],
            "latency_ms": {
                endpoint: {key: figures[key] for key in ("p50_ms", "p95_ms", "p99_ms")}
                for endpoint, figures in shape["endpoints"].items()
                if figures.get("count")
            },
            "errors": {
                endpoint: figures["errors"] for endpoint, figures in shape["endpoints"].items() if figures.get("errors")
            },
            "cpu_cores_used": shape["cpu_cores_used"],
            "cpu_ms_per_rated_item": shape.get("cpu_ms_per_rated_item"),  # the steady window's (loadtest.report)
            "ratings": {
                key: shape["integrity"][key] for key in ("acknowledged", "in_database", "lost", "duplicated", "ok")
            },
        }
    conditions = results["conditions"]
    return {
        "measured_at": results.get("finished_at"),
        "server": conditions["server"],
        "cpus": conditions["cpus"],
        "reference_cpu_ms": conditions.get("reference_cpu_ms"),  # loadtest.reference: compare machines by it
        "study": f"{conditions['participants']} participants x {conditions['variants']} variants, {conditions['days']}-day charts",
        "shapes": shapes,
        "full_report": "bench/results/load.md",
    }
