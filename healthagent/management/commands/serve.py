import contextlib
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from healthagent.celery import before_workers_start

# How long the server and the workers get to stop after Ctrl-C or SIGTERM before they are killed: a
# worker in the middle of a job would otherwise wait for the job to end (the job resumes from its
# checkpoint when it is delivered again).
STOP_GRACE_S = 5
QUEUES = settings.JOB_QUEUES


class StopRequested(Exception):
    """Ctrl-C (SIGINT) or SIGTERM arrived."""


class Command(BaseCommand):
    help = "Serve the site with daphne and one Celery worker per job queue (cpu, gpu, quick) beside it, stopping them together."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="Serve only; workers run elsewhere.")

    def handle(self, *args, host, port, no_worker, **options):
        log_dir = settings.VAR_DIR / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        children: list[subprocess.Popen] = []

        def raise_stop(*_):
            raise StopRequested()

        # Installed first, so a signal that arrives while the children start still stops the ones started.
        signal.signal(signal.SIGINT, raise_stop)
        signal.signal(signal.SIGTERM, raise_stop)
        try:
            if not no_worker:
                if settings.EMBEDDED:
                    # The workers about to start are the embedded mode's only ones: a job still marked running lost its
                    # worker (and the broker its message) when serve last stopped; the job system re-queues it (a hook).
                    for line in before_workers_start(tuple(QUEUES)):
                        self.stdout.write(line)
                # One worker per queue, as in production: a long language-model generation on the gpu
                # queue never holds up a training run or other work on the cpu queue.
                for queue in QUEUES:
                    log = open(log_dir / f"worker-{queue}.log", "ab")  # noqa: SIM115 - the worker writes to it until it stops
                    command = [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "healthagent",
                        "worker",
                        "-Q",
                        queue,
                        "-c",
                        "1",
                        "--loglevel",
                        "INFO",
                        "-n",
                        f"{queue}@%h",
                    ]
                    children.append(_start(command, stdout=log, stderr=subprocess.STDOUT))
                    self.stdout.write(
                        f"Worker for the {queue} queue started; its log is {log_dir / f'worker-{queue}.log'}"
                    )
            server = _start(
                [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "healthagent.asgi:application"]
            )
            children.append(server)
            self.stdout.write(self.style.SUCCESS(f"Serving on http://{host}:{port}/ (Ctrl-C stops)"))
            self.stdout.flush()
            server.wait()
        except StopRequested:
            self.stdout.write("Stopping the server and the workers...")
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not leave the children half-stopped
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _stop(children)


def _start(command: list[str], **options) -> subprocess.Popen:
    """Start a child as the leader of its own process group: stopping the group reaches its own children too
    (a Celery worker's pool process running a job), and only this command decides when they stop."""
    return subprocess.Popen(command, start_new_session=True, **options)


def _signal_group(child: subprocess.Popen, signal_number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group has already ended
        os.killpg(child.pid, signal_number)


def _stop(children: list[subprocess.Popen]) -> None:
    """SIGTERM to each child's process group; whatever still runs after STOP_GRACE_S is killed."""
    for child in children:
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
    for child in children:
        _signal_group(child, signal.SIGKILL)  # also the group's other members, if its leader ended before them
        child.wait()
