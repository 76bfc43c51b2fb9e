"""``make loadtest``: the production stack under simulated clinicians, then a lost/duplicated check.

Starts a private PostgreSQL and Redis (loadtest/services.py), seeds a study (loadtest/seed.py),
serves it with N granian workers (or gunicorn workers, or daphne processes) in the production profile (loadtest/stack.py), runs the two
shapes of issue 12 with the asyncio client (loadtest/client.py), compares the ratings in the
database with the ratings acknowledged to the clients after each run, writes
bench/results/load.json and bench/results/load.md, and stops everything it started.

The client runs on the same two cores as the server: its CPU time is measured and reported.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from loadtest import statements
from loadtest.client import Clinician, Recorder, closed_loop, open_loop, shared_client
from loadtest.reference import reference_cpu_ms
from loadtest.report import cpu_snapshot, integrity_check, markdown, shape_summary
from loadtest.sampling import SamplingProfile, py_spy_available, summarize
from loadtest.sampling import markdown as profile_markdown
from loadtest.seed import seed_stack
from loadtest.services import Services
from loadtest.stack import GUNICORN_THREADS, ROOT, WebServer, production_environment

RESULTS_DIR = ROOT / "bench" / "results"
PASSWORD = "load-test-password-42"


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinicians", type=int, default=1860, help="open loop: the whole panel, at once")
    parser.add_argument(
        "--period-s", type=float, default=30.0, help="open loop: one item per clinician every this many seconds"
    )
    parser.add_argument(
        "--open-duration-s", type=float, default=120.0, help="open loop: whole run; the first period is the ramp"
    )
    parser.add_argument("--closed-clients", default="10,50,200", help="closed loop: client counts, comma-separated")
    parser.add_argument("--closed-duration-s", type=float, default=30.0)
    parser.add_argument(
        "--logins", type=int, default=30, help="clinicians who log in through the form (the rest hold a session)"
    )
    parser.add_argument(
        "--processes", type=int, default=2, help="web processes (granian or gunicorn workers, or daphne processes)"
    )
    parser.add_argument(
        "--server",
        choices=("granian", "gunicorn", "daphne"),
        default="granian",
        help="what serves the pages (production: granian; gunicorn's gthread workers to compare; daphne keeps the "
        "websockets)",
    )
    parser.add_argument("--participants", type=int, default=40)
    parser.add_argument(
        "--variants",
        type=int,
        default=8,
        help="grounded variants rated per participant: items = participants x variants",
    )
    parser.add_argument(
        "--days", type=int, default=14, help="days of minute-level data per participant = the study window"
    )
    parser.add_argument("--shapes", default="open,closed")
    parser.add_argument(
        "--threads",
        type=int,
        default=GUNICORN_THREADS,
        help="granian's blocking threads or gunicorn's threads per worker (the Procfile's 8)",
    )
    parser.add_argument(
        "--extra-env", action="append", default=[], help="NAME=VALUE for the server processes (to compare a setting)"
    )
    parser.add_argument(
        "--py-spy",
        action="store_true",
        help="sample the web workers with py-spy during each shape: bench/results/<output>-profile.md",
    )
    parser.add_argument(
        "--pg-statements",
        action="store_true",
        help="PostgreSQL's time per statement during each shape (pg_stat_statements): bench/results/<output>-statements.md",
    )
    parser.add_argument("--output", default="load", help="bench/results/<output>.json and .md")
    return parser.parse_args(argv)


def clinicians_for(
    seeded: dict, study: str, count: int, *, client, base_url: str, recorder: Recorder, logins: int = 0
) -> list[Clinician]:
    """``count`` clinicians of the seed; every (count / logins)-th logs in through the form, the others hold a session."""
    people = seeded["clinicians"][:count]
    login_every = max(1, count // logins) if logins else 0
    return [
        Clinician(
            client=client,
            base_url=base_url,
            study_id=seeded["studies"][study],
            dimensions=seeded["dimensions"],
            recorder=recorder,
            username=person["username"],
            session=None if login_every and index % login_every == 0 else person["session"],
            password=PASSWORD,
            rng=random.Random(index),
        )
        for index, person in enumerate(people)
    ]


def run_shape(
    name: str,
    runner,
    clinicians: list[Clinician],
    recorder: Recorder,
    server: WebServer,
    services: Services,
    study_id: int,
    *,
    steady_after_s: float,
    offered: dict,
    profile: Path | None = None,
    track_statements: bool = False,
) -> dict:
    database_url = services.database_url.replace("postgres://", "postgresql://")
    sessions_query = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
    with psycopg.connect(database_url) as connection:
        sessions_before = connection.execute(sessions_query).fetchone()[0]
        if track_statements:
            statements.reset(connection)
    load_before = [round(value, 2) for value in os.getloadavg()]  # 1, 5, 15 min: was anything else heavy running?
    # The machine's speed just before and just after (outside the CPU snapshots): it can move within minutes.
    reference_before = reference_cpu_ms()
    before = cpu_snapshot(server.pids(), services.postmaster_pid())
    steady: dict = {}  # the CPU as the steady window begins (the runner's clock starts within a millisecond of this)
    timer = threading.Timer(
        steady_after_s, lambda: steady.update(cpu_snapshot(server.pids(), services.postmaster_pid()))
    )
    timer.start()
    with SamplingProfile(server.children[0].pid, profile) if profile else contextlib.nullcontext():
        started = asyncio.run(runner(clinicians))
    timer.cancel()
    after = cpu_snapshot(server.pids(), services.postmaster_pid())
    reference_after = reference_cpu_ms()
    summary = shape_summary(
        recorder,
        started=started,
        steady_after_s=steady_after_s,
        cpu_before=before,
        cpu_after=after,
        cpu_steady=steady or None,
    )
    with psycopg.connect(database_url) as connection:
        executed = statements.read(connection) if track_statements else None
        summary["integrity"] = integrity_check(connection, study_id=study_id, recorder=recorder)
        # Database sessions opened per rated item (3 requests): 3 means a new connection per request.
        summary["database_sessions_per_rated_item"] = round(
            (connection.execute(sessions_query).fetchone()[0] - sessions_before) / max(len(recorder.acknowledged), 1), 2
        )
    summary["offered"] = offered
    summary["load_average_before"] = load_before
    summary["reference_cpu_ms"] = {"before": reference_before, "after": reference_after}
    if executed is not None:
        summary["statements"] = {
            **statements.summarize(executed, len(recorder.acknowledged)),
            "load_average_before": load_before,
        }
    if profile is not None and profile.exists():
        summary["profile"] = {**summarize(profile), "load_average_before": load_before}
        kept = ROOT / "var" / "loadtest" / profile.name  # the stacks themselves, for a closer look (flamegraph.pl)
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(profile, kept)
    print(f"[{name}] " + json.dumps({key: summary[key] for key in ("throughput_per_s", "integrity")}), flush=True)
    return summary


def run_shapes(args, shapes: set, closed_counts: list[int], plan: dict, work: Path, results: dict) -> None:
    """Start the services and the server, run each shape, and record its figures in ``results``."""
    extra = dict(item.split("=", 1) for item in args.extra_env)
    with Services(track_statements=args.pg_statements) as services:
        environment = production_environment(
            services_environment=services.environment(), var_dir=work / "var", extra=extra
        )
        seeded = seed_stack(plan, environment=environment, work=work, timeout_s=None)  # as large as asked
        results["conditions"]["seed_s"] = seeded["seed_s"]
        results["conditions"]["items_per_study"] = seeded["items_per_study"]
        server = WebServer(
            environment=environment,
            processes=args.processes,
            log_path=work / "server.log",
            server=args.server,
            threads=args.threads,
        ).start()
        try:
            if "open" in shapes:
                print(
                    f"== open loop: {args.clinicians} clinicians, one item per {args.period_s:g} s each, {args.open_duration_s:g} s",
                    flush=True,
                )
                recorder = Recorder()

                async def open_runner(clinicians):
                    async with shared_client(max_connections=args.clinicians) as client:
                        for clinician in clinicians:
                            clinician.client = client
                        return await open_loop(clinicians, period_s=args.period_s, duration_s=args.open_duration_s)

                clinicians = clinicians_for(
                    seeded,
                    "open",
                    args.clinicians,
                    client=None,
                    base_url=server.url,
                    recorder=recorder,
                    logins=args.logins,
                )
                rate = args.clinicians / args.period_s
                results["shapes"]["open"] = run_shape(
                    "open",
                    open_runner,
                    clinicians,
                    recorder,
                    server,
                    services,
                    seeded["studies"]["open"],
                    steady_after_s=args.period_s,
                    profile=work / "py-spy-open.txt" if args.py_spy else None,
                    track_statements=args.pg_statements,
                    offered={
                        "clinicians": args.clinicians,
                        "item_views_per_s": round(rate, 1),
                        "submits_per_s": round(rate, 1),
                        "duration_s": args.open_duration_s,
                        "measured_after_s": args.period_s,
                    },
                )
            for count in closed_counts if "closed" in shapes else []:
                print(f"== closed loop: {count} clients, no think time, {args.closed_duration_s:g} s", flush=True)
                recorder = Recorder()

                async def closed_runner(clinicians, count=count):
                    async with shared_client(max_connections=count) as client:
                        for clinician in clinicians:
                            clinician.client = client
                        return await closed_loop(clinicians, duration_s=args.closed_duration_s)

                clinicians = clinicians_for(
                    seeded, f"closed-{count}", count, client=None, base_url=server.url, recorder=recorder
                )
                results["shapes"][f"closed-{count}"] = run_shape(
                    f"closed-{count}",
                    closed_runner,
                    clinicians,
                    recorder,
                    server,
                    services,
                    seeded["studies"][f"closed-{count}"],
                    steady_after_s=2.0,
                    profile=work / f"py-spy-closed-{count}.txt" if args.py_spy else None,
                    track_statements=args.pg_statements,
                    offered={"clients": count, "duration_s": args.closed_duration_s, "measured_after_s": 2.0},
                )
        finally:
            server.stop()
            log_tail = (work / "server.log").read_text(errors="replace")[-3000:]
            if "Traceback" in log_tail:
                print(f"{args.server} log (tail):\n" + log_tail, file=sys.stderr)


def _server_detail(args) -> str:
    return {
        "gunicorn": f"shared socket, gthread x {args.threads}",
        "granian": f"WSGI, blocking threads x {args.threads}",
    }.get(args.server, "shared socket")


def main(argv=None) -> int:
    args = parse_arguments(argv)
    if args.py_spy and not py_spy_available():
        print("--py-spy: the py-spy command is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    shapes = set(args.shapes.split(","))
    closed_counts = [int(count) for count in args.closed_clients.split(",") if count]
    studies = {}
    if "open" in shapes:
        studies["open"] = args.clinicians
    if "closed" in shapes:
        studies.update({f"closed-{count}": count for count in closed_counts})
    panel = max(studies.values())
    plan = {
        "participants": args.participants,
        "variants": args.variants,
        "days": args.days,
        "seed": 12,
        "clinicians": panel,
        "password": PASSWORD,
        "studies": studies,
    }
    work = Path(tempfile.mkdtemp(prefix="healthagent-loadtest."))
    results = {
        "conditions": {
            **vars(args),
            "cpus": os.cpu_count(),
            "server": f"{args.server} x {args.processes} ({_server_detail(args)}), production profile",
            "database": "PostgreSQL 15 (fsync on)",
            "redis": "channel layer and broker",
            "reference_cpu_ms": reference_cpu_ms(),  # before anything of the test starts: the machine's own speed
        },
        "shapes": {},
    }
    print(
        f"== services, seed ({panel} clinicians, {args.participants} participants x {args.variants} variants), server",
        flush=True,
    )
    try:
        run_shapes(args, shapes, closed_counts, plan, work, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS_DIR.mkdir(exist_ok=True)
    results["finished_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (RESULTS_DIR / f"{args.output}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS_DIR / f"{args.output}.md").write_text(markdown(results))
    profiles = {name: shape["profile"] for name, shape in results["shapes"].items() if "profile" in shape}
    if profiles:
        (RESULTS_DIR / f"{args.output}-profile.md").write_text(profile_markdown(profiles))
    executed = {name: shape["statements"] for name, shape in results["shapes"].items() if "statements" in shape}
    if executed:
        (RESULTS_DIR / f"{args.output}-statements.md").write_text(statements.markdown(executed))
    print(markdown(results))
    failures = [name for name, shape in results["shapes"].items() if not shape["integrity"]["ok"]]
    if failures:
        print(f"FAIL: lost or duplicated ratings in {', '.join(failures)}", file=sys.stderr)
        return 1
    print("PASS: every acknowledged rating is in the database once; none lost, none duplicated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
