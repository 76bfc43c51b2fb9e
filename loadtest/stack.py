"""The production web tier for the load test: N daphne processes sharing one listening socket.

Daphne serves one process per core; the parent opens the socket and each daphne adopts it with
``--fd``, so the kernel spreads connections over the processes (as a process manager such as
systemd's socket activation or supervisord's fcgi-program would in production).
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

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


class WebServer:
    """``processes`` daphne processes on 127.0.0.1:``port`` (0 picks a free port)."""

    def __init__(self, *, environment: dict, processes: int, log_path: Path, port: int = 0):
        self.environment, self.processes, self.log_path = environment, processes, log_path
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
        log = open(self.log_path, "ab")
        descriptor = self.listener.fileno()
        for _ in range(self.processes):
            self.children.append(subprocess.Popen(
                [sys.executable, "-m", "daphne", "--fd", str(descriptor), "--proxy-headers", "healthagent.asgi:application"],
                cwd=ROOT, env=self.environment, pass_fds=(descriptor,), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/login/", headers={"X-Forwarded-Proto": "https"}, timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if any(child.poll() is not None for child in self.children):
                raise RuntimeError(f"daphne exited at start-up; see {self.log_path}")
            time.sleep(0.5)
        raise RuntimeError(f"daphne did not answer within 60 s; see {self.log_path}")

    def pids(self) -> list[int]:
        return [child.pid for child in self.children]

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
