"""`make prod` on this machine, as an operator runs it: the whole production stack (PostgreSQL, Redis, nginx with TLS,
granian, daphne, a Celery worker per queue under honcho) comes up from nothing, serves a signed-in admin's pages,
answers on every queue and upgrades a websocket through the proxy; Ctrl-C stops every process it started."""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from tests.conftest import free_port, service_missing

pytestmark = [pytest.mark.services, pytest.mark.slow]
PASSWORD = "a-long-Passphrase-7"


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def websocket_handshake(port: int, session: str) -> str:
    """The status line of a websocket upgrade of /ws/jobs/ through the TLS proxy."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the stack's self-signed certificate
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, context.wrap_socket(raw) as tls:
        tls.sendall(
            (
                f"GET /ws/jobs/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: https://127.0.0.1:{port}\r\nCookie: sessionid={session}\r\n\r\n"
            ).encode()
        )
        return tls.recv(200).decode().splitlines()[0]


def test_make_prod_brings_the_stack_up_serves_it_and_stops_it_on_ctrl_c():
    installed = shutil.which("nginx") and shutil.which("redis-server") and Path("/usr/lib/postgresql").is_dir()
    if os.geteuid() != 0 and not installed:
        service_missing("make prod needs root (to install and run PostgreSQL, Redis and nginx) or all three installed")
    prod_dir = Path(tempfile.mkdtemp(prefix="healthagent-prod-"))  # not under pytest's tmp: postgres must reach it
    prod_dir.chmod(0o755)
    ports = {
        name: free_port() for name in ("PROD_PORT", "PROD_PG_PORT", "PROD_REDIS_PORT", "PROD_WEB_PORT", "PROD_WS_PORT")
    }
    environment = {**os.environ, "PROD_DIR": str(prod_dir), **{name: str(port) for name, port in ports.items()}}
    for inherited in ("DATABASE_URL", "REDIS_URL", "HEALTHAGENT_VAR_DIR", "DJANGO_SETTINGS_MODULE"):
        environment.pop(inherited, None)  # the stack reads its own environment (PROD_DIR/env)
    log = (prod_dir / "make.log").open("w")
    stack = subprocess.Popen(
        ["make", "prod"],
        cwd=settings.BASE_DIR,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"https://127.0.0.1:{ports['PROD_PORT']}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert stack.poll() is None, (prod_dir / "make.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/health/", verify=False, timeout=5).json() == {"status": "ok"}:
                    break
            except (httpx.HTTPError, ValueError):  # not listening yet, or nginx's 502 before granian is up
                pass
            assert time.monotonic() < deadline, "the stack did not come up in 5 minutes"
            time.sleep(1)
        assert oct((prod_dir / "env").stat().st_mode)[-3:] == "600"  # the generated secrets
        subprocess.run(
            ["deploy/prod.sh", "manage", "create_user", "boss", "--role", "admin", "--password-env", "BOSS_PASSWORD"],
            cwd=settings.BASE_DIR,
            env={**environment, "BOSS_PASSWORD": PASSWORD},
            check=True,
            capture_output=True,
            timeout=120,
        )
        with httpx.Client(base_url=base, verify=False, timeout=30) as client:
            client.get("/login/")
            signed_in = client.post(
                "/login/",
                data={"username": "boss", "password": PASSWORD, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
                headers={"Referer": f"{base}/login/"},
            )
            assert signed_in.status_code == 302
            system = client.get("/system/?workers=1")
            assert system.status_code == 200 and "<strong>embedded</strong>" not in system.text
            assert system.text.count(">answered<") == len(settings.JOB_QUEUES)  # a worker on each queue
            assert client.get("/static/css/site.css").status_code == 200  # collected and served
            assert (
                websocket_handshake(ports["PROD_PORT"], client.cookies["sessionid"])
                == "HTTP/1.1 101 Switching Protocols"
            )
    finally:
        os.killpg(stack.pid, signal.SIGINT)  # Ctrl-C at the terminal
        stack.wait(timeout=120)
        log.close()
    output = (prod_dir / "make.log").read_text()
    assert "== stopping PostgreSQL and Redis" in output
    deadline = time.monotonic() + 30
    while any(listening(port) for port in ports.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [name for name, port in ports.items() if listening(port)] == []  # every process it started has stopped
    shutil.rmtree(prod_dir, ignore_errors=True)
