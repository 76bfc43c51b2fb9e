"""A sampling profile of the web workers while a load shape runs (``python -m loadtest --py-spy``): py-spy records
every worker's stacks from outside the process (no change to the server, ~1 % overhead), and the collapsed stacks
are summed into where the server's time goes, written beside the load figures.

Only samples of a thread holding the GIL are kept (``--gil``): a thread waiting on the database, Redis or a socket
releases it, so the shares are of the Python CPU the workers spend, not of their waits (without it, psycopg's wait
for PostgreSQL's answer and gunicorn's idle ``select`` took half the samples). The sampler itself takes CPU on the
same cores: load figures come from a run without it.
"""

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# Frames that name where a request's time goes, matched in order against each sample's stack (innermost first):
# the first that matches takes the sample. Anything else falls under the innermost frame's file.
BUCKETS = (
    ("template rendering", ("django/template/",)),
    ("ORM: compiling SQL", ("django/db/models/sql/compiler.py", "django/db/models/sql/query.py")),
    ("database driver (psycopg)", ("psycopg/", "psycopg_pool/")),
    ("ORM: model instances and querysets", ("django/db/models/",)),
    ("Redis (sessions, channel layer)", ("redis/", "django/core/cache/")),
    ("JSON", ("json/", "orjson")),
    ("gzip / file serving", ("gzip", "django/http/response.py", "whitenoise/")),
    (
        "HTTP server (gunicorn or granian: parsing, sockets, threads)",
        ("gunicorn/", "granian/", "(selectors.py:", "(socket.py:", "(ssl.py:"),
    ),
    ("Django request handling and middleware", ("django/core/handlers/", "django/middleware/", "django/contrib/")),
    ("the site's own code", ("healthagent/", "evaluation/", "modeling/")),
)
SITE = BUCKETS[-1][1]
_LINE = re.compile(r":\d+\)$")  # a frame's line number: a function's samples are counted together


def py_spy_command() -> str | None:
    """py-spy beside this interpreter (the virtualenv's, from requirements-test.txt), else on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def py_spy_available() -> bool:
    return py_spy_command() is not None


class SamplingProfile:
    """``with SamplingProfile(pid, output): ...`` records ``pid`` (the server's master) and its workers."""

    def __init__(self, pid: int, output: Path, rate: int = 250):
        self.pid, self.output, self.rate = pid, output, rate
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "SamplingProfile":
        self.log = self.output.with_suffix(".log").open("w")  # why, when no stacks were written
        self.process = subprocess.Popen(
            [
                py_spy_command() or "py-spy",
                "record",
                "--pid",
                str(self.pid),
                "--subprocesses",
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--output",
                str(self.output),
                "--nonblocking",
                "--gil",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


def summarize(collapsed: Path, top: int = 25) -> dict:
    """Shares of the samples by bucket (:data:`BUCKETS`) and the functions with the most samples at the top of the
    stack (self time), from py-spy's collapsed stacks (``frame;frame;... count`` per line, outermost first)."""
    if not collapsed.exists():
        log = collapsed.with_suffix(".log")
        raise RuntimeError(f"py-spy wrote no stacks: {log.read_text().strip() if log.exists() else 'no log'}")
    buckets: Counter[str] = Counter()
    own: Counter[str] = Counter()
    within: Counter[str] = Counter()  # the site's functions, by the samples they are anywhere on the stack of
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in {_LINE.sub(")", frame) for frame in frames if any(needle in frame for needle in SITE)}:
            within[frame] += count
        bucket = next(
            (
                name
                for frame in reversed(frames)
                for name, needles in BUCKETS
                if any(needle in frame for needle in needles)
            ),
            "other",
        )
        buckets[bucket] += count
    share = (lambda count: round(100 * count / total, 1)) if total else (lambda count: 0.0)
    return {
        "samples": total,
        "buckets_percent": {name: share(count) for name, count in buckets.most_common()},
        "top_self_percent": [(frame, share(count)) for frame, count in own.most_common(top)],
        "site_inclusive_percent": [(frame, share(count)) for frame, count in within.most_common(top)],
    }


def markdown(summaries: dict[str, dict]) -> str:
    lines = ["## Where the web workers' CPU goes (py-spy, sampled from outside the processes)", ""]
    for shape, summary in summaries.items():
        load = summary.get("load_average_before", "not recorded")
        lines += [f"### {shape}: {summary['samples']:,} samples (load average before, 1/5/15 min: {load})", ""]
        lines += ["| share | what |", "|---:|---|"]
        lines += [f"| {percent} % | {name} |" for name, percent in summary["buckets_percent"].items()]
        lines += ["", "Functions at the top of the stack (self time):", "", "| share | function |", "|---:|---|"]
        lines += [f"| {percent} % | `{frame}` |" for frame, percent in summary["top_self_percent"]]
        if summary.get("site_inclusive_percent"):
            lines += ["", "The site's own functions, by the samples they are on the stack of (inclusive time):", ""]
            lines += ["| share | function |", "|---:|---|"]
            lines += [f"| {percent} % | `{frame}` |" for frame, percent in summary["site_inclusive_percent"]]
        lines.append("")
    return "\n".join(lines) + "\n"
