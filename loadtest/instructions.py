"""``python -m loadtest.instructions``: the web server's work per rated item, counted in instructions, which the
machine's speed does not move.

CPU milliseconds on a shared machine move by up to 1.65x within minutes (docs/load-and-faults.md, session 27): two
commits' load figures then differ by more than most changes save. This counts what one web process executes for a
rated item (its item page, chart and submit, as the load test's clinicians ask for them, through the WSGI application
of the production profile, PostgreSQL and Redis real) with valgrind's instruction counter (callgrind) switched on for
the measured items only, and the database statements each item sends. Same code and seed: within 0.5 % run to run.
PostgreSQL's own work is not in it (``python -m loadtest --pg-statements`` measures that); nor the HTTP server's.

The driver runs in the process valgrind runs (``--drive``); the rest starts the services, seeds them as the load test
does (loadtest/seed.py) and switches the counter on and off around the measured items (``callgrind_control``).
"""

import argparse
import io
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from loadtest.seed import seed_stack
from loadtest.services import Services
from loadtest.stack import ROOT, production_environment

RESULTS_DIR = ROOT / "bench" / "results"
ITEM_URL = re.compile(r"/evaluation/items/(\d+)/$")
CHART_URL = re.compile(rb'data-minute-figure-url="([^"]+)"')
PASSWORD = "instructions-password-7"


class Browser:
    """One clinician's requests straight into a WSGI application, with their cookies, as the load test's client
    sends them (loadtest/client.py: behind a TLS-terminating proxy, gzip accepted)."""

    def __init__(self, application, session_key: str):
        self.application = application
        self.cookies = {"sessionid": session_key}

    def request(self, method: str, path: str, data: dict | None = None) -> tuple[int, str, bytes]:
        body = urlencode(data).encode() if data else b""
        path, _, query = path.partition("?")  # a chart's link (evaluation.chart_links) is in its query
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "443",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_X_FORWARDED_PROTO": "https",
            "HTTP_ORIGIN": "https://127.0.0.1",
            "HTTP_ACCEPT_ENCODING": "gzip, deflate",
            "HTTP_COOKIE": "; ".join(f"{name}={value}" for name, value in self.cookies.items()),
            "CONTENT_LENGTH": str(len(body)),
        }
        if data:
            environ["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
            environ["HTTP_REFERER"] = f"https://127.0.0.1{path}"
        answer: dict = {}

        def start_response(status, headers, exc_info=None):
            answer["status"], answer["headers"] = int(status.split()[0]), headers

        content = b"".join(self.application(environ, start_response))
        for name, value in answer["headers"]:
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key.strip()] = rest.split(";", 1)[0]
        # Where a redirect leads, or which page a 200 is (a submit answers with the next item's page)
        wanted = "location" if answer["status"] in (301, 302, 303) else "content-location"
        location = next((value for name, value in answer["headers"] if name.lower() == wanted), "")
        return answer["status"], location, content


class Rater:
    """A clinician going through their queue: the item page, its chart, the submit (which answers with the next
    item's page); the queue's page only for the first item."""

    def __init__(self, browser: Browser, *, study_id: int, dimensions: dict, seed: int):
        self.browser, self.study_id, self.dimensions = browser, study_id, dimensions
        self.random = random.Random(seed)
        self.location = ""
        self.page = b""  # the page the last submit answered with, if it did

    def open(self) -> str:
        if not ITEM_URL.search(self.location):
            status, self.location, _ = self.browser.request("GET", f"/evaluation/queue/{self.study_id}/next/")
            if status != 302 or not ITEM_URL.search(self.location):
                raise RuntimeError(f"the queue handed out no item (HTTP {status}, to {self.location!r})")
        return ITEM_URL.search(self.location).group(0)  # type: ignore[union-attr]

    def rate(self) -> None:
        path = self.open()
        if self.page:  # the last submit answered with this page
            status, page, self.page = 200, self.page, b""
        else:
            status, _, page = self.browser.request("GET", path)
        chart = CHART_URL.search(page)
        if status != 200 or chart is None:
            raise RuntimeError(f"the item page {path} answered HTTP {status}")
        status, _, body = self.browser.request("GET", chart.group(1).decode())
        if status != 200 or not body.startswith(b"\x1f\x8b"):
            raise RuntimeError(f"the chart of {path} answered HTTP {status}")
        form = {f"score-{key}": str(self.random.choice(points)) for key, points in self.dimensions.items()}
        form.update(
            {"csrfmiddlewaretoken": self.browser.cookies.get("csrftoken", ""), "time_spent_s": "30", "comment": ""}
        )
        status, self.location, answer = self.browser.request("POST", f"{path}submit/", form)
        following = ITEM_URL.search(self.location)
        # Saved: another item's page (or a redirect to it, or to the queue's page); refused: back to this item's form.
        if status not in (200, 302) or self.location.endswith(path) or (status == 200 and following is None):
            raise RuntimeError(f"the submit of {path} was not saved (HTTP {status}, to {self.location!r})")
        self.page = answer if status == 200 else b""


def drive(raters: list[Rater], *, items: int, warmup: int, signal_folder: Path | None = None) -> dict:
    """Rate ``warmup`` items, then ``items`` more, one rater after another as in the open loop. With ``warmup`` at
    least the raters' number, every rater's first item is rated before the measure, so that each measured item is
    what a clinician's items are in the open loop's steady state: its page is the one the rater's last submit answered
    with, and its submit answers with the next one (a rater's first page is a request of its own, in the ramp); with ``signal_folder``, wait for ``go`` there before the measured items and say ``done`` after
    (the counter is switched on and off between). Returns the statements the measured items sent."""
    from django.db import connection

    statements = 0

    def count(execute, sql, params, many, context):
        nonlocal statements
        statements += 1
        return execute(sql, params, many, context)

    for rater in raters:
        rater.open()  # every rater's first hand-out, outside the measure (the open loop's ramp)
    for number in range(warmup):
        raters[number % len(raters)].rate()
    if signal_folder is not None:
        (signal_folder / "ready").touch()
        while not (signal_folder / "go").exists():
            time.sleep(0.1)
    with connection.execute_wrapper(count):
        for number in range(items):
            raters[(warmup + number) % len(raters)].rate()
    if signal_folder is not None:
        (signal_folder / "done").touch()
        while (signal_folder / "go").exists():
            time.sleep(0.1)
    return {"items": items, "statements_per_item": round(statements / items, 2)}


def _drive_main(seeded_path: Path, *, items: int, warmup: int, signal_folder: Path) -> None:
    seeded = json.loads(seeded_path.read_text())
    from healthagent.wsgi import application

    raters = [
        Rater(
            Browser(application, clinician["session"]),
            study_id=seeded["studies"]["open"],
            dimensions=seeded["dimensions"],
            seed=number,
        )
        for number, clinician in enumerate(seeded["clinicians"])
    ]
    result = drive(raters, items=items, warmup=warmup, signal_folder=signal_folder)
    (signal_folder / "driven.json").write_text(json.dumps(result))


def _callgrind_total(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")) and int(line.split()[1]) > 0:
            return int(line.split()[1])
    raise RuntimeError(f"no instruction count in {path}")


def _control(pid: int, instrumentation: str) -> None:
    """Switch valgrind's instruction counter in process ``pid`` on or off."""
    subprocess.run(
        ["callgrind_control", f"--instr={instrumentation}", str(pid)], check=True, capture_output=True, timeout=120
    )


def _wait_for(path: Path, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"the driver ended (exit {process.returncode}) before {path.name}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {path.name} from the driver within {timeout_s:.0f} s")
        time.sleep(0.2)


def measure(*, items: int, warmup: int | None, clinicians: int, work: Path, keep: Path | None = None) -> dict:
    """``warmup`` None: every rater's first item (``clinicians``), so that the measure is of the steady state."""
    warmup = clinicians if warmup is None else warmup
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian package 'valgrind')")
    with Services() as services:
        environment = production_environment(services_environment=services.environment(), var_dir=work / "var")
        environment["PYTHONHASHSEED"] = "0"  # the same dictionaries' layouts, so the same instructions, run to run
        plan = {
            "participants": 40,
            "variants": 8,
            "days": 14,
            "seed": 12,
            "clinicians": clinicians,
            "password": PASSWORD,
            "studies": {"open": clinicians},
        }
        seed_stack(plan, environment=environment, work=work)
        output = work / "callgrind.out"
        log = (work / "driver.log").open("w")
        driver = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={output}",
                sys.executable,
                "-m",
                "loadtest.instructions",
                "--drive",
                str(work / "seeded.json"),
                "--items",
                str(items),
                "--warmup",
                str(warmup),
                "--signal-folder",
                str(work),
            ],
            env=environment,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for(work / "ready", driver, timeout_s=1800)
            _control(driver.pid, "on")
            (work / "go").touch()
            _wait_for(work / "done", driver, timeout_s=3600)
            _control(driver.pid, "off")
            (work / "go").unlink()
            if driver.wait(timeout=600) != 0:
                raise RuntimeError(f"the driver ended with exit {driver.returncode}")
        except (RuntimeError, subprocess.SubprocessError) as error:
            # The work folder (and the log in it) is removed after: what the driver said goes with the error.
            log.flush()
            tail = "\n".join(Path(log.name).read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"{error}; the driver's last lines:\n{tail}") from error
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait(timeout=30)
            log.close()
        driven = json.loads((work / "driven.json").read_text())
        total = _callgrind_total(output)
        if keep is not None:  # the counts by function, for a closer look (callgrind_annotate)
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(output, keep)
    return {
        "instructions_per_item_millions": round(total / items / 1e6, 2),
        "statements_per_item": driven["statements_per_item"],
        "items": items,
        "warmup_items": warmup,
        "clinicians": clinicians,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100, help="measured rated items")
    parser.add_argument(
        "--warmup", type=int, help="rated items before the measure (default: one per clinician, each rater's first)"
    )
    parser.add_argument("--clinicians", type=int, default=120, help="raters, taking items in turn")
    parser.add_argument("--output", default="instructions", help="bench/results/<output>.json")
    parser.add_argument("--keep", type=Path, help="keep valgrind's counts by function here (callgrind_annotate)")
    parser.add_argument("--drive", type=Path, help=argparse.SUPPRESS)  # the driver, inside valgrind
    parser.add_argument("--signal-folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        import django

        django.setup()
        _drive_main(args.drive, items=args.items, warmup=args.warmup, signal_folder=args.signal_folder)
        return 0
    work = Path(tempfile.mkdtemp(prefix="healthagent-instructions."))
    try:
        result = measure(items=args.items, warmup=args.warmup, clinicians=args.clinicians, work=work, keep=args.keep)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{args.output}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
