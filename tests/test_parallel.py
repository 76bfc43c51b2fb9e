"""The suite's workers (pytest-xdist) each get a Redis database and a var folder of their own (tests/parallel.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.parallel import DEFAULT_VAR_DIR, isolate, worker_redis_url


def test_each_worker_gets_its_own_redis_database_and_var_folder():
    environment = {"REDIS_URL": "redis://:secret@127.0.0.1:56379/0", "HEALTHAGENT_VAR_DIR": "/srv/var/test"}
    isolate(environment, "gw0", workers=2, cores=2)
    assert environment == {
        "REDIS_URL": "redis://:secret@127.0.0.1:56379/1",
        "HEALTHAGENT_VAR_DIR": "/srv/var/test/gw0",
        "OMP_NUM_THREADS": "1",  # two workers on two cores: one thread each
    }
    isolate(second := {"REDIS_URL": "redis://127.0.0.1:56379"}, "gw3", workers=4, cores=16)
    assert second == {
        "REDIS_URL": "redis://127.0.0.1:56379/4",
        "HEALTHAGENT_VAR_DIR": str(DEFAULT_VAR_DIR / "gw3"),
        "OMP_NUM_THREADS": "4",
    }
    isolate(chosen := {"OMP_NUM_THREADS": "3"}, "gw1", workers=2, cores=2)
    assert chosen["OMP_NUM_THREADS"] == "3"  # a setting of one's own is kept


def test_the_configured_database_is_never_a_worker_s_and_a_socket_s_is_its_db_parameter():
    assert worker_redis_url("redis://127.0.0.1:6379/3", 0) == "redis://127.0.0.1:6379/4"
    assert worker_redis_url("unix:///run/redis.sock?db=2", 1) == "unix:///run/redis.sock?db=4"
    assert worker_redis_url("unix:///run/redis.sock", 0) == "unix:///run/redis.sock?db=1"


def test_more_workers_than_redis_has_databases_is_refused_with_the_limit():
    assert worker_redis_url("redis://127.0.0.1:6379/0", 14).endswith("/15")
    with pytest.raises(RuntimeError, match="at most 15 workers"):
        worker_redis_url("redis://127.0.0.1:6379/0", 15)
    with pytest.raises(RuntimeError, match="at most 5 workers"):
        worker_redis_url("redis://127.0.0.1:6379/10", 5)


def test_this_worker_s_settings_use_its_own_redis_database_and_var_folder():
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        pytest.skip("not under pytest-xdist (make test runs the suite with -n)")
    number = int(worker.removeprefix("gw"))
    if settings.REDIS_URL:
        assert settings.REDIS_URL.endswith(f"/{number + 1}")
        assert settings.CELERY_BROKER_URL == settings.REDIS_URL
    assert Path(settings.VAR_DIR).name == worker
    # what a process this worker starts runs with (a test before this one may have set this process's own)
    threads = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert int(threads) == int(os.environ["OMP_NUM_THREADS"])
