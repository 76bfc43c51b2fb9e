"""The production web tier for the load test: N web processes sharing one listening socket.

``granian`` (the pages, as in production): one master with N WSGI workers, which binds the port the
parent picked (it cannot adopt a socket). ``gunicorn`` (to compare): one master with N gthread workers on the socket
the parent opened (``--bind fd://N``). ``daphne`` (the websockets in production; the fault scenario
with a live dashboard uses it): N daphne processes, each adopting the socket with ``--fd``, so the
kernel spreads connections over them (as systemd's socket activation or supervisord's
fcgi-program would in production).
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from loadtest.report import child_pids

ROOT = Path(__file__).resolve().parent.parent


def production_environment(*, services_environment: dict, var_dir: Path, extra: dict | None = None) -> dict:
    """The environment of every stack process: the production profile, behind a TLS-terminating proxy."""
    return {
        **os.environ,
        **services_environment,
        "DJANGO_SETTINGS_MODULE": "healthagent.settings",
        "HEALTHAGENT_PROFILE": "production",
        "HEALTHAGENT_VAR_DIR": str(var_dir),
        "SECRET_KEY": "load-test-secret-key-not-for-production-use-0123456789abcdef",
        "ANONYMIZATION_KEY": "load-test-anonymization-key",
        "ALLOWED_HOSTS": "127.0.0.1",
        # TLS ends at the proxy, which says so with X-Forwarded-Proto; the client sends that header.
        "SECURE_SSL_REDIRECT": "0",
        # The simulated clinicians connect to daphne directly: the peer address is the client's.
        "TRUSTED_PROXY_COUNT": "0",
        "LOG_LEVEL": "WARNING",
        **(extra or {}),
    }


GUNICORN_THREADS = 8  # per worker; as many as the worker's PostgreSQL pool holds (DATABASE_POOL_MAX_SIZE, 8)
# Longer than the client's (or proxy's) idle keep-alive, so the client always closes an idle connection
# first: with gunicorn's default 2 s, a request sent on a connection the server just closed fails.
GUNICORN_KEEP_ALIVE_S = 75


def server_command(
    server: str, *, descriptor: int, processes: int, threads: int = GUNICORN_THREADS, port: int = 0
) -> list[list[str]]:
    """The command line of each process to start: one gunicorn (or granian) master, or one per daphne process."""
    if server == "gunicorn":
        return [
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"fd://{descriptor}",
                "--workers",
                str(processes),
                "--worker-class",
                "gthread",
                "--threads",
                str(threads),
                "--keep-alive",
                str(GUNICORN_KEEP_ALIVE_S),
                "healthagent.wsgi:application",
            ]
        ]
    if server == "granian":  # binds the port itself: it cannot adopt a descriptor
        return [
            [
                sys.executable,
                "-m",
                "granian",
                "--interface",
                "wsgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(processes),
                "--respawn-failed-workers",
                "--blocking-threads",
                str(threads),
                "--http",
                "1",
                "--no-ws",
                "--log-level",
                "warning",
                "healthagent.wsgi:application",
            ]
        ]
    if server == "daphne":
        return [
            [sys.executable, "-m", "daphne", "--fd", str(descriptor), "--proxy-headers", "healthagent.asgi:application"]
        ] * processes
    raise ValueError(f"unknown web server {server!r}: gunicorn, granian or daphne")


class WebServer:
    """``processes`` web processes (``server``: granian or gunicorn workers, or daphne processes) on 127.0.0.1:``port`` (0 picks a free port)."""

    def __init__(
        self,
        *,
        environment: dict,
        processes: int,
        log_path: Path,
        port: int = 0,
        server: str = "daphne",
        threads: int = GUNICORN_THREADS,
    ):
        self.environment, self.processes, self.log_path, self.server = environment, processes, log_path, server
        self.threads = threads
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(4096)
        self.port = self.listener.getsockname()[1]
        self.children: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "WebServer":
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "WebServer":
        log = open(self.log_path, "ab")  # noqa: SIM115 - the server writes to it until it stops
        descriptor = self.listener.fileno()
        if self.server == "granian":
            self.listener.close()  # the port stays picked; granian binds it
        for command in server_command(
            self.server, descriptor=descriptor, processes=self.processes, threads=self.threads, port=self.port
        ):
            self.children.append(
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=self.environment,
                    pass_fds=() if self.server == "granian" else (descriptor,),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if (
                    httpx.get(f"{self.url}/login/", headers={"X-Forwarded-Proto": "https"}, timeout=5).status_code
                    == 200
                ):
                    return self
            except httpx.HTTPError:
                pass
            if any(child.poll() is not None for child in self.children):
                raise RuntimeError(f"{self.server} exited at start-up; see {self.log_path}")
            time.sleep(0.5)
        raise RuntimeError(f"{self.server} did not answer within 60 s; see {self.log_path}")

    def pids(self) -> list[int]:
        """Every web process: those started here and their children (granian's or gunicorn's workers)."""
        return [pid for child in self.children for pid in (child.pid, *child_pids(child.pid))]

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        self.listener.close()
