"""Where a rated item's web CPU goes, without the HTTP server: ``python -m loadtest.profile``.

Starts a private PostgreSQL and Redis, seeds a small study in the production profile, then runs
one clinician's items (item page -> chart -> submit, which hands out the next item; the queue's "next" only for
the first) in-process through Django's test client (all middleware, no HTTP server), and prints per endpoint the CPU ms and the database queries per
request, and with ``--cprofile`` the functions that take the most cumulative time. The load test
measures the same three requests through the server; the difference is the server's own cost.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from loadtest.services import Services
from loadtest.stack import ROOT, production_environment


def template_clock() -> dict[str, list[float]]:
    """Each template's own CPU time (its includes' taken out), summed per name: [inclusive ms, own ms, renders]."""
    import time

    from django.template.base import Template

    spent: dict[str, list[float]] = {}
    stack: list[list[float]] = []  # per template being rendered: [time its includes took]
    original = Template._render

    def timed_render(self, context):
        stack.append([0.0])
        started = time.process_time()
        try:
            return original(self, context)
        finally:
            took = (time.process_time() - started) * 1000
            (children,) = stack.pop()
            if stack:
                stack[-1][0] += took
            row = spent.setdefault(str(self.origin.template_name or self.name), [0.0, 0.0, 0])
            row[0], row[1], row[2] = row[0] + took, row[1] + took - children, row[2] + 1

    Template._render = timed_render
    return spent


def measure(seeded: dict, items: int, cprofile: bool, show_queries: bool, templates: bool = False) -> None:
    """Runs inside the stack's environment (Django set up against the private database)."""
    import cProfile
    import pstats
    import time

    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    person = seeded["clinicians"][0]
    client = Client(HTTP_X_FORWARDED_PROTO="https", HTTP_HOST="127.0.0.1")
    client.cookies["sessionid"] = person["session"]
    study_id = seeded["studies"]["profile"]
    form = {f"score-{key}": str(points[0]) for key, points in seeded["dimensions"].items()}
    form.update({"time_spent_s": "30", "comment": ""})
    cpu_ms: dict[str, list[float]] = {}
    shown: set[str] = set()
    fetched_charts: set[str] = set()
    queries: dict[str, list[int]] = {}

    def timed(name, call):
        with CaptureQueriesContext(connection) as captured:
            started = time.process_time()
            response = call()
            if response.streaming:  # a chart's file: read as the server would send it
                b"".join(response.streaming_content)
            cpu_ms.setdefault(name, []).append((time.process_time() - started) * 1000)
        queries.setdefault(name, []).append(len(captured.captured_queries))
        if show_queries and name not in shown:
            shown.add(name)
            print(f"--- {name}: " + "\n".join(query["sql"][:300] for query in captured.captured_queries))
        assert response.status_code in (200, 302), (name, response.status_code)
        return response

    profiler = cProfile.Profile(time.process_time) if cprofile else None  # CPU time: the machine is shared
    spent = template_clock() if templates else None
    location, page = "", None
    for number in range(items + 2):
        if number == 2:  # the first two items warm the chart cache and the pool: measure the rest
            cpu_ms.clear()
            queries.clear()
            if spent is not None:
                spent.clear()
            shown.clear()
            if profiler:
                profiler.enable()
        if not re.search(r"/evaluation/items/\d+/$", location):  # the first item; else the submit named it
            location = timed("next", lambda: client.get(f"/evaluation/queue/{study_id}/next/"))["location"]
        if page is None:  # else the submit answered with this item's page
            page = timed("item_page", lambda: client.get(location))  # noqa: B023 - called within this iteration
        chart_url = re.search(r'data-minute-figure-url="([^"]+)"', page.content.decode())
        if chart_url and chart_url.group(1) not in fetched_charts:  # as a browser's cache would
            fetched_charts.add(chart_url.group(1))
            timed("chart", lambda: client.get(chart_url.group(1)))  # noqa: B023 - called within this iteration
        answer = timed("submit", lambda: client.post(location + "submit/", form))  # noqa: B023
        # The next item's page itself (named by its Content-Location), or a redirect to it or to the queue.
        page = answer if answer.status_code == 200 else None
        location = answer["Content-Location" if page is not None else "Location"]
    if profiler:
        profiler.disable()
    for name in cpu_ms:
        values = sorted(cpu_ms[name])
        print(
            f"{name:10s} CPU ms median {values[len(values) // 2]:6.1f}  mean {sum(values) / len(values):6.1f}  "
            f"queries {sum(queries[name]) / len(queries[name]):4.1f}"
        )
    if spent is not None:
        pages = (
            len(cpu_ms.get("submit", [])) or 1
        )  # an item page per rated item: its own request, or the submit's answer
        print("template CPU ms per item page (inclusive / own), renders per page:")
        for name, (inclusive, own, renders) in sorted(spent.items(), key=lambda row: -row[1][1]):
            print(f"  {name:55s} {inclusive / pages:6.2f} / {own / pages:6.2f}   {renders / pages:4.1f}")
    if profiler:
        if os.environ.get("PROFILE_STATS_FILE"):  # for a closer look: python -m pstats <file>
            profiler.dump_stats(os.environ["PROFILE_STATS_FILE"])
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(70)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--queries", action="store_true", help="print the SQL of one request per endpoint")
    parser.add_argument("--templates", action="store_true", help="each template's CPU time per item page")
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        measure(json.loads(Path(args.inside).read_text()), args.items, args.cprofile, args.queries, args.templates)
        return 0
    work = Path(tempfile.mkdtemp(prefix="healthagent-profile."))
    variants = 8
    plan = {
        # enough items for the clinician's run: one study item per participant and variant, two of them to warm up
        "participants": max(8, -(-(args.items + 2) // variants)),
        "variants": variants,
        "days": 14,
        "seed": 12,
        "clinicians": 2,
        "password": "profile-password-42",
        "studies": {"profile": 1},
    }
    (work / "plan.json").write_text(json.dumps(plan))
    with Services() as services:
        environment = production_environment(services_environment=services.environment(), var_dir=work / "var")
        subprocess.run(
            [sys.executable, "-m", "loadtest.seed", str(work / "plan.json"), str(work / "seeded.json")],
            cwd=ROOT,
            env=environment,
            check=True,
        )
        command = [
            sys.executable,
            "-m",
            "loadtest.profile",
            "--inside",
            str(work / "seeded.json"),
            "--items",
            str(args.items),
        ]
        command += (["--cprofile"] if args.cprofile else []) + (["--queries"] if args.queries else [])
        command += ["--templates"] if args.templates else []
        subprocess.run(command, cwd=ROOT, env=environment, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
