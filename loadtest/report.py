"""What a load run measured: latency percentiles, throughput, CPU shares, and the rating ledger check."""

import os
import time
from pathlib import Path

import numpy as np

from loadtest.client import ENDPOINTS, Recorder

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_seconds(pid: int, *, with_children: bool = False) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # gone: FileNotFoundError before it is opened, ProcessLookupError (ESRCH) while it is read
        return 0.0
    # fields[11:15] = utime, stime, cutime, cstime (fields 14-17 of proc(5), after the command name)
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if with_children else 0)
    return ticks / CLOCK_TICKS


def child_pids(parent: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    pids.append(int(entry))
            except (OSError, IndexError, ValueError):  # a process that ended between the listing and the read
                continue
    return pids


def cpu_snapshot(server_pids: list[int], postmaster_pid: int | None = None) -> dict:
    """CPU seconds so far: the web processes, PostgreSQL's (ours only), this client, and the whole machine."""
    busy, total = 0, 0
    with open("/proc/stat") as stat:
        values = [int(value) for value in stat.readline().split()[1:]]
        total, busy = sum(values[:8]), sum(values[:8]) - values[3] - values[4]  # minus idle and iowait
    postgres = 0.0
    if postmaster_pid:
        postgres = _process_seconds(postmaster_pid, with_children=True) + sum(
            _process_seconds(pid) for pid in child_pids(postmaster_pid)
        )
    return {
        "wall": time.perf_counter(),
        "server": sum(_process_seconds(pid) for pid in server_pids),
        "postgres": postgres,
        "client": time.process_time(),
        "machine_busy": busy / CLOCK_TICKS,
        "machine_total": total / CLOCK_TICKS,
    }


def _percentiles(latencies: list[float]) -> dict:
    if not latencies:
        return {"count": 0}
    values = np.asarray(latencies)
    return {
        "count": len(values),
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p95_ms": round(float(np.percentile(values, 95)), 1),
        "p99_ms": round(float(np.percentile(values, 99)), 1),
        "max_ms": round(float(values.max()), 1),
    }


def _cpu_ms_per_item(before: dict, after: dict, items: int) -> dict:
    return {
        name: round((after[name] - before[name]) / items * 1000, 1) if items else None
        for name in ("server", "postgres", "client")
    }


def shape_summary(
    recorder: Recorder,
    *,
    started: float,
    steady_after_s: float,
    cpu_before: dict,
    cpu_after: dict,
    cpu_steady: dict | None = None,
) -> dict:
    """Per endpoint: percentiles and throughput over the steady window (requests started after ``steady_after_s``).
    CPU per rated item over the steady window too, from ``cpu_steady`` (a snapshot taken as it began) to the end, per
    submit acknowledged in it; and over the whole shape, ramp included (log-ins, each clinician's first item)."""
    window_start = started + steady_after_s
    window_end = max(
        (start + latency / 1000 for samples in recorder.samples.values() for start, latency, _ in samples),
        default=window_start,
    )
    window_s = max(window_end - window_start, 1e-9)
    endpoints, throughput = {}, {}
    for endpoint in ENDPOINTS:
        steady = [
            (latency, ok)
            for start, latency, ok in recorder.samples.get(endpoint, [])
            if endpoint == "login" or start >= window_start
        ]
        endpoints[endpoint] = {
            **_percentiles([latency for latency, ok in steady if ok]),
            "errors": sum(1 for _, ok in steady if not ok),
            "error_reasons": dict(recorder.errors.get(endpoint, {})),
        }
        throughput[endpoint] = round(
            sum(1 for start, _, ok in recorder.samples.get(endpoint, []) if ok and start >= window_start) / window_s, 1
        )
    elapsed = cpu_after["wall"] - cpu_before["wall"]
    machine = cpu_after["machine_total"] - cpu_before["machine_total"]
    cores = {
        name: round((cpu_after[name] - cpu_before[name]) / elapsed, 2) for name in ("server", "postgres", "client")
    }
    cores["machine_busy"] = (
        round((cpu_after["machine_busy"] - cpu_before["machine_busy"]) / machine * (os.cpu_count() or 1), 2)
        if machine
        else 0.0
    )
    # CPU per rated item (its item page, chart and submit requests) is steadier than throughput on a machine shared
    # with other work: it does not depend on how much of the CPU the stack was given. The steady window's leaves out
    # the ramp's one-off work (the log-ins' password hashing, each clinician's first "next"), which the whole shape's
    # divides among its items: at the open loop's 1,860 clinicians that was a quarter of the server's CPU.
    whole_shape = _cpu_ms_per_item(cpu_before, cpu_after, len(recorder.acknowledged))
    cpu_ms_per_item = whole_shape
    if cpu_steady is not None:
        acknowledged = sum(
            1 for start, _, ok in recorder.samples.get("submit", []) if ok and start >= cpu_steady["wall"]
        )
        cpu_ms_per_item = _cpu_ms_per_item(cpu_steady, cpu_after, acknowledged)
    sizes = recorder.item_page_bytes
    return {
        "endpoints": endpoints,
        "throughput_per_s": throughput,
        "steady_window_s": round(window_s, 1),
        "cpu_cores_used": cores,
        "cpu_ms_per_rated_item": cpu_ms_per_item,
        "cpu_ms_per_rated_item_whole_shape": whole_shape,
        "item_page_bytes_median": int(np.median(sizes)) if sizes else 0,
        "chart_bytes_median": int(np.median(recorder.chart_bytes)) if recorder.chart_bytes else 0,
        "chart_fetches_per_item_page": round(len(recorder.chart_bytes) / len(sizes), 2) if sizes else 0,
    }


def integrity_check(connection, *, study_id: int, recorder: Recorder) -> dict:
    """Ratings in the database against ratings acknowledged to the clients: 0 lost, 0 duplicated.

    Lost: acknowledged but not in the database. Duplicated: more than one rating revision for one
    submit (each simulated clinician submits an item once; a retry must add nothing), or two
    assignments of one item to one clinician. Unacknowledged ratings found in the database are
    reported apart: they are submits whose answer the client never received (a time-out).
    """
    rows = connection.execute(
        "SELECT a.id, count(rr.id) FROM evaluation_assignment a JOIN evaluation_rating r ON r.assignment_id = a.id "
        "JOIN evaluation_ratingrevision rr ON rr.rating_id = r.id WHERE a.study_id = %s GROUP BY a.id",
        (study_id,),
    ).fetchall()
    in_database = {assignment_id for assignment_id, _ in rows}
    repeated_revisions = sum(1 for _, revisions in rows if revisions != 1)
    double_assignments = connection.execute(
        "SELECT count(*) FROM (SELECT item_id, rater_id FROM evaluation_assignment WHERE study_id = %s GROUP BY 1, 2 HAVING count(*) > 1) d",
        (study_id,),
    ).fetchone()[0]
    lost = recorder.acknowledged - in_database
    unacknowledged = in_database - recorder.acknowledged
    result = {
        "acknowledged": len(recorder.acknowledged),
        "in_database": len(in_database),
        "lost": len(lost),
        "duplicated": repeated_revisions + double_assignments,
        "committed_without_answer": len(unacknowledged),
        "committed_without_answer_explained": len(unacknowledged & recorder.unconfirmed),
    }
    result["ok"] = (
        result["lost"] == 0
        and result["duplicated"] == 0
        and result["committed_without_answer"] == result["committed_without_answer_explained"]
    )
    return result


def _reference_line(conditions: dict) -> list[str]:
    reference = conditions.get("reference_cpu_ms")
    if not reference:
        return []
    return [
        f"Reference workload (`loadtest/reference.py`, measured before the services start): {reference} ms of CPU on "
        "this machine. A figure divided by it is in the machine's own units: compare runs on different machines (or "
        "days of a shared one) by those."
    ]


def _in_reference_units(shape: dict, conditions: dict) -> str:
    """Server + PostgreSQL CPU per rated item over the reference workload's CPU time (steady window): the mean of the
    references taken just before and just after the shape where it has them, else the run's one before its services."""
    per_item = shape.get("cpu_ms_per_rated_item") or {}
    around = shape.get("reference_cpu_ms") or {}
    reference = (around["before"] + around["after"]) / 2 if around else conditions.get("reference_cpu_ms")
    if not reference or "server" not in per_item or "postgres" not in per_item:
        return ""
    total = per_item["server"] + per_item["postgres"]
    said = f" Server + PostgreSQL: {total:.1f} ms per rated item = {total / reference:.3f} of the reference workload"
    if not around:
        return said + "."
    drift = abs(around["after"] - around["before"]) / min(around["before"], around["after"])
    return (
        said
        + f" ({around['before']} ms just before the shape, {around['after']} just after"
        + (
            f": the machine's speed moved by {drift:.0%} during the shape, so this figure is uncertain by as much)."
            if drift > 0.05
            else ")."
        )
    )


def markdown(results: dict) -> str:
    conditions = results["conditions"]
    lines = [
        f"# Load test ({results.get('finished_at', '')})",
        "",
        f"{conditions['server']}; {conditions['database']}; Redis; {conditions['cpus']} CPUs shared with the client and with other work on the machine.",
        f"Study: {conditions['participants']} participants x {conditions['variants']} variants = {conditions.get('items_per_study')} items per study, "
        f"{conditions['days']}-day charts. {conditions['logins']} clinicians log in through the form; the others hold a session.",
        *_reference_line(conditions),
        "",
    ]
    for name, shape in results["shapes"].items():
        lines += [
            f"## {name}: {shape['offered']}",
            "",
            f"Load average before the shape (1, 5, 15 min): {shape.get('load_average_before', 'not recorded')}. "
            f"Steady window {shape['steady_window_s']} s; item page median {shape['item_page_bytes_median']:,} bytes; "
            f"chart median {shape.get('chart_bytes_median', 0):,} bytes as sent (gzip), fetched for {shape.get('chart_fetches_per_item_page', 0)} of item pages; "
            f"CPU cores used: {shape['cpu_cores_used']}; CPU ms per rated item (steady window): {shape['cpu_ms_per_rated_item']}; "
            f"over the whole shape, ramp included: {shape.get('cpu_ms_per_rated_item_whole_shape', 'not recorded')}; "
            f"database sessions opened per rated item: {shape.get('database_sessions_per_rated_item')}."
            + _in_reference_units(shape, conditions),
            "",
            "A submit answers with the next item's page (evaluation.views._next_item_page): its latency includes that "
            "page's; item_page counts the pages asked for on their own (a clinician's first item).",
            "",
            "| endpoint | requests/s | p50 ms | p95 ms | p99 ms | max ms | errors |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for endpoint, figures in shape["endpoints"].items():
            if figures.get("count"):
                lines.append(
                    f"| {endpoint} | {shape['throughput_per_s'][endpoint]} | {figures['p50_ms']} | {figures['p95_ms']} | {figures['p99_ms']} | "
                    f"{figures['max_ms']} | {figures['errors']} |"
                )
        integrity = shape["integrity"]
        lines += [
            "",
            f"Ratings: {integrity['acknowledged']} acknowledged, {integrity['in_database']} in the database, "
            f"{integrity['lost']} lost, {integrity['duplicated']} duplicated, {integrity['committed_without_answer']} committed without an answer "
            f"({'PASS' if integrity['ok'] else 'FAIL'}).",
            "",
        ]
    return "\n".join(lines) + "\n"
