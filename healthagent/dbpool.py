"""The check of a pooled PostgreSQL connection before the pool lends it again (settings: ``OPTIONS["pool"]``).

Django's own check (``CONN_HEALTH_CHECKS`` with a pool: psycopg_pool's ``check_connection``) sends an empty query
on every loan, which is every request: a round trip for the web process and work for PostgreSQL, on each of the
three requests of a rated item. A connection that died while it sat in the pool says so on its socket: a server
that shuts down or ends a backend (a restart, ``pg_terminate_backend``, a crash: the kernel closes the socket) leaves
a message or the end of the stream to read, where a healthy idle connection has nothing. So the round trip is made
only for a connection whose socket has something to read, or that psycopg already knows is broken. A connection
cut without a word (a firewall's idle timeout, a crashed host) shows an error on its socket once TCP keepalives
(settings) give up on it; one found by its first query before that fails that request, and Django closes a
connection whose query failed at the end of the request (``close_if_unusable_or_obsolete``): the pool drops it.

Django builds the pool itself and gives it its own check when ``CONN_HEALTH_CHECKS`` is on (and refuses a ``check``
among the pool's options), so the pool's check is replaced when its first connection is made
(:func:`pool_checks_if_stirred`, on ``connection_created``): psycopg_pool (pinned) keeps it as ``_check``.
"""

import select
import threading
from collections import deque
from collections.abc import Callable
from typing import Any


class MostRecentFirst(deque):
    """The pool's idle connections, lent most recently returned first. psycopg_pool lends from the left of its deque
    and takes connections back on the right, so a web worker's requests go round all its connections in turn, and
    PostgreSQL's backends (up to 8 per worker) each wake cold for their share; lent from the right, the few
    connections the load needs at a time stay the ones in use, warm in the CPU's caches (PostgreSQL's CPU per rated
    item in the open loop: 4.3-4.5 ms before, 3.8-3.9 after; docs/load-and-faults.md). The pool's shrinking (a
    connection unused for ``max_idle``) still closes the one idle longest: :func:`shrink_coldest`. A connection at
    the cold end is lent again only under more load; one that died meanwhile is caught by :func:`check_if_stirred`."""

    shrinking = threading.local()  # set in the pool's maintenance thread while it shrinks the pool

    def popleft(self) -> Any:
        return super().popleft() if getattr(self.shrinking, "on", False) else self.pop()


def shrink_coldest(shrink: Callable[[], None]) -> Callable[[], None]:
    """The pool's ``_shrink_pool`` taking the connection idle longest (the deque's left, as psycopg_pool means it)."""

    def shrink_pool() -> None:
        MostRecentFirst.shrinking.on = True
        try:
            shrink()
        finally:
            MostRecentFirst.shrinking.on = False

    return shrink_pool


def check_if_stirred(connection: Any) -> None:
    """Raise if ``connection`` (psycopg, idle in the pool) does not work; a round trip only if its socket stirred."""
    from psycopg_pool import ConnectionPool

    if connection.closed or connection.broken:
        raise ConnectionError("the pooled connection is closed")
    poller = select.poll()
    poller.register(connection.pgconn.socket, select.POLLIN | select.POLLPRI)
    if poller.poll(0):  # a message, the end of the stream or an error while it was idle: the real check decides
        ConnectionPool.check_connection(connection)


def pool_checks_if_stirred(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created``: the connection's pool (if it has one) lends with :func:`check_if_stirred` from now
    on, in place of the round trip Django gave it, and lends its idle connections most recent first
    (:class:`MostRecentFirst`)."""
    from psycopg_pool import ConnectionPool

    pool = getattr(connection, "pool", None)  # PostgreSQL's wrapper only; None without a pool
    if pool is None or isinstance(getattr(pool, "_pool", None), MostRecentFirst):
        return  # done at the first connection (a quick look without the lock; decided under it below)
    assert hasattr(pool, "_check"), "psycopg_pool keeps its check elsewhere: see healthagent.dbpool"
    with pool._lock:  # two threads of a fresh worker may both get here: the first one changes the pool
        if isinstance(pool._pool, MostRecentFirst):
            return
        assert type(pool._pool) is deque, "psycopg_pool keeps its idle connections elsewhere: see healthagent.dbpool"
        if pool._check is ConnectionPool.check_connection:  # Django's, with CONN_HEALTH_CHECKS: none stays none
            pool._check = check_if_stirred
        pool._pool = MostRecentFirst(pool._pool)
        pool._shrink_pool = shrink_coldest(pool._shrink_pool)
