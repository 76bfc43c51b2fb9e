"""Simulator speed, import speed, 14-day window reads and the 14-day chart payload."""

import json
import os
import statistics
import tempfile
import time

import numpy as np


def _simulator(participants: int = 200, days: int = 14) -> dict:
    from modeling.ml.data.minutes import simulate_minutes
    from modeling.ml.data.traits import sample_traits

    traits = sample_traits(participants, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    simulate_minutes(traits.row(0), days, rng)  # warm-up
    started = time.perf_counter()
    for index in range(participants):
        simulate_minutes(traits.row(index), days, rng)
    seconds = time.perf_counter() - started
    return {
        "participant_days": participants * days,
        "seconds": round(seconds, 3),
        "participant_days_per_s_one_core": round(participants * days / seconds, 1),
        "goal_per_core": 1000,
    }


def run() -> dict:
    os.environ["HEALTHAGENT_VAR_DIR"] = tempfile.mkdtemp(prefix="bench-cohort-")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from healthagent.cohort.charts import minute_figure
    from healthagent.cohort.importers.synthetic import synthetic_participants
    from healthagent.cohort.importing import cohort_import
    from healthagent.cohort.store import read_window, trajectory_root, write_trajectory
    from modeling.ml.data.cohort import make_cohort

    results = {"simulator": _simulator()}

    participants, days = 50, 14
    started = time.perf_counter()
    raw, report = synthetic_participants(participants=participants, days=days, seed=1, history_days=365)
    summary = cohort_import(name="bench", source="synthetic", participants=raw, source_report=report, k=5)
    seconds = time.perf_counter() - started
    results["synthetic_import"] = {
        "participants": participants,
        "days": days,
        "seconds": round(seconds, 2),
        "participant_days_per_s": round(participants * days / seconds, 1),
        "note": "simulation + anonymization + Parquet + daily summaries + measurements, SQLite",
    }

    long_record = make_cohort(participants=1, days=180, seed=2).participant(0).minutes
    path = trajectory_root() / "bench-long.parquet"
    write_trajectory(path=path, values=long_record.values, mask=long_record.mask, start_weekday=0)
    timings = []
    for start_day in range(0, 166, 11):
        began = time.perf_counter()
        read_window(path=path, start_day=start_day, end_day=start_day + 14)
        timings.append((time.perf_counter() - began) * 1000)
    results["window_read"] = {
        "file_days": 180,
        "window_days": 14,
        "median_ms": round(statistics.median(timings), 2),
        "max_ms": round(max(timings), 2),
        "file_bytes": path.stat().st_size,
    }

    participant = summary.cohort.participants.order_by("pk").first()
    sizes, chart_ms = [], []
    for participant in summary.cohort.participants.order_by("pk")[:10]:
        began = time.perf_counter()
        figure = minute_figure(participant=participant)
        chart_ms.append((time.perf_counter() - began) * 1000)
        sizes.append(len(json.dumps(figure)))
    results["chart_14_days"] = {
        "payload_bytes_max": max(sizes),
        "payload_bytes_median": int(statistics.median(sizes)),
        "goal_bytes": 400_000,
        "server_ms_median": round(statistics.median(chart_ms), 1),
    }
    return results
