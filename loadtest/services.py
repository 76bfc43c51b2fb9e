"""PostgreSQL and Redis for the load test and the fault scenarios, on their own ports and folders.

Started from the Debian packages (as .ci/run does), as the ``postgres`` user when run as root,
in a throw-away folder that :meth:`Services.stop` removes. Nothing else on the machine is touched:
another PostgreSQL or Redis (CI's, another engineer's) keeps running on its own port.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from loadtest import statements

PG_PORT = int(os.environ.get("LOADTEST_PG_PORT", "55499"))
REDIS_PORT = int(os.environ.get("LOADTEST_REDIS_PORT", "56499"))


class ServiceError(Exception):
    pass


def _postgres_bin() -> Path:
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(path.split("/")[-2]))
    if not folders:
        raise ServiceError("PostgreSQL is not installed (Debian package 'postgresql')")
    return Path(folders[-1])


def _check_port_free(port: int, what: str) -> None:
    """Refuse a port something else listens on: stopping "our" server there would stop someone else's."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise ServiceError(
                f"port {port} is in use (another {what}?); choose another with LOADTEST_PG_PORT / LOADTEST_REDIS_PORT"
            )


def _as_postgres(command: list[str]) -> list[str]:
    """Run as the ``postgres`` user when we are root (initdb refuses root), else as ourselves."""
    if os.geteuid() != 0:
        return command
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{part}'" for part in command)]


@dataclass
class RedisServer:
    """A private redis-server without persistence: a restart loses every key, as a crashed one would."""

    port: int
    folder: Path
    running: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if shutil.which("redis-server") is None:
            raise ServiceError("Redis is not installed (Debian package 'redis-server')")
        _check_port_free(self.port, "Redis")
        self.folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.folder),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--logfile",
                str(self.folder / "redis.log"),
            ],
            check=True,
        )
        self.running = True
        self._wait(up=True)

    def stop(self) -> None:
        """Stop the server this object started (never one it did not)."""
        if not self.running:
            return
        subprocess.run(
            ["redis-cli", "-p", str(self.port), "shutdown", "nosave"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.running = False
        self._wait(up=False)

    def _wait(self, *, up: bool) -> None:
        for _ in range(100):
            answered = (
                subprocess.run(
                    ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
                ).stdout.strip()
                == "PONG"
            )
            if answered == up:
                return
            time.sleep(0.1)
        raise ServiceError(f"Redis on port {self.port} did not {'start' if up else 'stop'}")


@dataclass
class Services:
    """A private PostgreSQL and Redis; ``database_url`` and ``redis.url`` point at them once started."""

    pg_port: int = PG_PORT
    redis_port: int = REDIS_PORT
    max_connections: int = 300
    track_statements: bool = False  # load pg_stat_statements (loadtest/statements.py)
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="healthagent-load.")))

    def __post_init__(self):
        self.redis = RedisServer(port=self.redis_port, folder=self.folder)
        self.postgres_running = False

    @property
    def database_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.pg_port}/healthagent"

    def start(self) -> "Services":
        _check_port_free(self.pg_port, "PostgreSQL")
        _check_port_free(self.redis_port, "Redis")
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.folder.chmod(0o700)
        pg_bin = _postgres_bin()
        data = self.folder / "pg"
        subprocess.run(
            _as_postgres([str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # fsync stays on: the load figures include the cost of durable commits, as in production.
        options = f"-h 127.0.0.1 -p {self.pg_port} -k {self.folder} -c max_connections={self.max_connections}"
        if self.track_statements:
            options += " " + statements.SERVER_OPTIONS
        subprocess.run(
            _as_postgres(
                [
                    str(pg_bin / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(self.folder / "pg.log"),
                    "-w",
                    "-o",
                    options,
                    "start",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.postgres_running = True
        subprocess.run(
            _as_postgres(
                [str(pg_bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", "healthagent"]
            ),
            check=True,
        )
        if self.track_statements:
            with psycopg.connect(
                self.database_url.replace("postgres://", "postgresql://"), autocommit=True
            ) as connection:
                statements.create_extension(connection)
        self.redis.start()
        return self

    def postmaster_pid(self) -> int:
        return int((self.folder / "pg" / "postmaster.pid").read_text().split()[0])

    def environment(self) -> dict[str, str]:
        return {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis.url}

    def stop(self) -> None:
        """Stop what :meth:`start` started, and remove its folder."""
        if self.postgres_running:
            subprocess.run(
                _as_postgres([str(_postgres_bin() / "pg_ctl"), "-D", str(self.folder / "pg"), "-m", "fast", "stop"]),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.postgres_running = False
        self.redis.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "Services":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info) -> None:
        self.stop()
