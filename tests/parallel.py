"""Each pytest-xdist worker gets services of its own (loaded with ``-p tests.parallel``, before Django's settings).

``make test`` runs the suite on ``TEST_WORKERS`` processes (``pytest -n``). pytest-django already gives each worker its
own test database (``test_healthagent_gw0``, ...). What else the workers would share is made theirs here, in the
environment, so the settings and every process a test starts (daphne, Celery workers, ``manage.py`` runs) read it:

- **Redis**: worker ``gwN`` uses database ``D + 1 + N`` of the configured server, where ``D`` is the configured one
  (left alone), so one worker's Celery worker never takes another's job, and its channel layer, cache and sessions
  are its own.
- **The var folder**: ``$HEALTHAGENT_VAR_DIR/gwN`` (``var/gwN`` when unset): secrets made on first use, static files.
- **The cores**: torch's (OpenMP's) threads are the machine's cores shared out among the workers
  (``OMP_NUM_THREADS``, unless already set). Two workers each running two threads on two cores made every training
  test 2-8 times slower than alone (threads spinning against each other): the suite took 17:53 against 20:44 on one
  process, where one thread each is expected to bring it near half.

Outside xdist (``pytest`` without ``-n``) nothing changes.
"""

import os
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDIS_DATABASES = 16  # redis-server's default ``databases``
DEFAULT_VAR_DIR = Path(__file__).resolve().parents[1] / "var"  # the settings' default


def worker_redis_url(url: str, worker: int) -> str:
    """``url`` with its database number moved to one of the worker's own (a ``unix://`` socket's is its ``db``)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    socket = parts.scheme == "unix"
    configured = int(query.get("db", 0) if socket else parts.path.lstrip("/") or 0)
    database = configured + 1 + worker
    if database >= REDIS_DATABASES:
        raise RuntimeError(
            f"pytest-xdist worker gw{worker} would need Redis database {database}; a default Redis has "
            f"{REDIS_DATABASES} (0-{REDIS_DATABASES - 1}): run at most {REDIS_DATABASES - 1 - configured} workers"
        )
    if socket:  # urlunsplit would drop the empty host of unix:///path
        return f"{url.partition('?')[0]}?{urlencode({**query, 'db': str(database)})}"
    return urlunsplit(parts._replace(path=f"/{database}"))


def isolate(environment: dict[str, str] | os._Environ[str], worker_id: str, *, workers: int, cores: int | None) -> None:
    """Point ``environment``'s Redis and var folder at the worker's own, and give it its share of the ``cores``."""
    worker = int(worker_id.removeprefix("gw"))
    environment.setdefault("OMP_NUM_THREADS", str(max(1, (cores or 1) // max(workers, 1))))
    if environment.get("REDIS_URL"):
        environment["REDIS_URL"] = worker_redis_url(environment["REDIS_URL"], worker)
    var = Path(environment.get("HEALTHAGENT_VAR_DIR") or DEFAULT_VAR_DIR)
    environment["HEALTHAGENT_VAR_DIR"] = str(var / worker_id)


_worker_id = os.environ.get("PYTEST_XDIST_WORKER")
if _worker_id:
    isolate(
        os.environ,
        _worker_id,
        workers=int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")),
        cores=len(os.sched_getaffinity(0)),
    )
