"""The pool's check of a connection it lends again (healthagent.dbpool): no round trip for a healthy idle one, and a
connection whose backend ended while it sat in the pool is never lent."""

import contextlib
import copy
import time

import pytest
from django.db import connection, connections

from healthagent.dbpool import check_if_stirred
from tests.conftest import postgres_connect_kwargs, service_missing

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def pool():
    if connection.vendor != "postgresql":
        service_missing("PostgreSQL is not configured (DATABASE_URL is not a postgres:// URL)")
    import psycopg_pool

    kwargs = postgres_connect_kwargs()
    with psycopg_pool.ConnectionPool(kwargs=kwargs, min_size=1, max_size=1, check=check_if_stirred) as opened:
        yield opened


def _backend(pool) -> int:
    with pool.connection() as conn:
        return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_a_healthy_idle_connection_is_lent_without_a_round_trip(pool, monkeypatch):
    import psycopg_pool

    round_trips = []
    real = psycopg_pool.ConnectionPool.check_connection
    monkeypatch.setattr(
        psycopg_pool.ConnectionPool, "check_connection", staticmethod(lambda conn: round_trips.append(1) or real(conn))
    )
    first = _backend(pool)
    assert [_backend(pool) for _ in range(5)] == [first] * 5 and round_trips == []


def test_a_connection_ended_while_idle_is_replaced_before_it_is_lent(pool):
    import psycopg

    first = _backend(pool)
    with psycopg.connect(**postgres_connect_kwargs()) as other:
        assert other.execute("SELECT pg_terminate_backend(%s, 5000)", [first]).fetchone()[0]
    time.sleep(0.2)  # the backend's goodbye reaches the pooled connection's socket
    second = _backend(pool)  # lent and used without an error: the dead one was checked and dropped
    assert second != first


@contextlib.contextmanager
def _django_pool(alias: str, *, health_checks: bool):
    """A database wrapper of Django's with a pool (as settings configure the production profile's), connected once."""
    settings = copy.deepcopy(connection.settings_dict)
    settings["OPTIONS"] = {**settings.get("OPTIONS", {}), "pool": {"min_size": 1, "max_size": 2}, "keepalives": 1}
    settings["CONN_HEALTH_CHECKS"], settings["CONN_MAX_AGE"] = health_checks, 0
    wrapper = type(connections["default"])(settings, alias=alias)
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
        yield wrapper
    finally:
        wrapper.close()
        wrapper.close_pool()


def test_django_s_pool_lends_with_this_check_once_it_made_a_connection(pool):
    """The production profile's pool (settings: OPTIONS["pool"], CONN_HEALTH_CHECKS on): Django gives it the round
    trip, the first connection made swaps it for ``check_if_stirred`` (healthagent.apps)."""
    with _django_pool("pool_check_test", health_checks=True) as wrapper:
        assert wrapper.pool._check is check_if_stirred


def test_a_pool_without_checks_is_left_without_one(pool):
    """``CONN_HEALTH_CHECKS`` off: Django gives the pool no check, and none is added."""
    with _django_pool("pool_no_check_test", health_checks=False) as wrapper:
        assert wrapper.pool._check is None


def test_django_s_pool_lends_the_connection_returned_last_first(pool):
    """Two idle connections: the one given back last is lent next, again and again (psycopg_pool alone would go
    round both), so a worker's few busy connections stay warm and the others idle."""
    with _django_pool("pool_lifo_test", health_checks=True) as wrapper:
        pool_ = wrapper.pool
        wrapper.close()  # its connection back in the pool
        first, second = pool_.getconn(), pool_.getconn()
        first_pid, second_pid = first.info.backend_pid, second.info.backend_pid
        pool_.putconn(first)
        pool_.putconn(second)  # given back last
        assert first_pid != second_pid
        lent = []
        for _ in range(4):
            with pool_.connection() as conn:
                lent.append(conn.info.backend_pid)
        assert lent == [second_pid] * 4

        # Shrinking (both idle for max_idle: the pool's maintenance calls this once to note it, again to act) closes
        # the one idle longest, not the warm one.
        pool_._shrink_pool()
        pool_._shrink_pool()
        assert first.closed and not second.closed
        with pool_.connection() as conn:
            assert conn.info.backend_pid == second_pid
