"""`manage.py serve` (what `make demo` ends with) stops every process it started within seconds of Ctrl-C,
even a worker in the middle of a job (which used to hold the stop up for 20 s per busy worker, or be
left running by an impatient second Ctrl-C)."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

SLOW_JOB = (
    "from modeling.jobs import job_queue; job_queue(kind_name='demo_training', config={'task': 'hypertension', 'participants': 20, "
    "'days': 1, 'steps': 1000, 'checkpoint_every': 1000, 'learning_rate': 0.003, 'step_delay_s': 5.0, 'seed': 1})"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to collect it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from the parent ids in /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def job_row(database: Path, columns: str = "state, attempts") -> tuple | None:
    """The job's state and attempts (or other ``columns``)."""
    try:
        with sqlite3.connect(database, timeout=5) as connection:
            return connection.execute(f"SELECT {columns} FROM modeling_job").fetchone()
    except sqlite3.Error:
        return None


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_stops_the_server_and_every_worker_process_even_one_running_a_job_which_runs_again_next_time(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key not in {"REDIS_URL", "DATABASE_URL"}}
    environment.update(HEALTHAGENT_VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="healthagent.settings")
    manage = [sys.executable, str(ROOT / "manage.py")]
    migrate = "from django.core.management import call_command; call_command('migrate', interactive=False, verbosity=0)"
    # One process for both: each start of Django is seconds on a busy machine.
    subprocess.run(
        [*manage, "shell", "-c", f"{migrate}\n{SLOW_JOB}"], cwd=ROOT, env=environment, check=True, timeout=300
    )
    database = tmp_path / "var" / "healthagent.sqlite3"
    started = set()

    def serve_until_the_job_runs(attempt: int) -> subprocess.Popen:
        port = free_port()
        # Its own process group, as a command run in a terminal's foreground: Ctrl-C signals the whole group.
        serve = subprocess.Popen(
            [*manage, "serve", "--port", str(port)],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        started.add(serve.pid)
        wait_for(lambda: port_open(port), 120, "the server")
        wait_for(lambda: job_row(database) == ("running", attempt), 180, f"a worker to run the job (attempt {attempt})")
        # Inside the job's run, not only claimed: its first report (modeling.kinds.demo, as the run starts) leaves a
        # message; a queued job has none (a second attempt finds the first's, which is all it needs).
        wait_for(lambda: (job_row(database, "message") or ("",))[0] != "", 60, "the job's first progress report")
        return serve

    def ctrl_c(serve: subprocess.Popen) -> None:
        children = descendants(serve.pid)
        started.update(children)
        assert len(children) >= 5  # daphne, two workers and their pool processes
        stopped_at = time.monotonic()
        os.killpg(serve.pid, signal.SIGINT)
        wait_for(
            lambda: not any(alive(pid) for pid in {serve.pid, *children}), 12, "every process serve started to end"
        )
        assert serve.wait(timeout=1) == 0 and time.monotonic() - stopped_at < 12

    try:
        ctrl_c(serve_until_the_job_runs(attempt=1))
        assert job_row(database) == ("running", 1)  # its worker was stopped mid-run
        ctrl_c(serve_until_the_job_runs(attempt=2))  # serve started again: the job was queued again and resumed
    finally:
        for pid in started:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
