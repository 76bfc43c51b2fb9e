"""Sessions read from Redis, kept in the database: one query fewer on every signed-in request.

Django's ``cached_db`` store, with two differences. A cache that fails (Redis restarting, unreachable) is never an
error: every cache call falls back to the database, which stays the record, so a Redis restart signs nobody out and
fails no page. And a cached copy lives at most ``SESSION_CACHE_SECONDS``: a session deleted from the database while
the cache could not be told (a log-out during a Redis outage) stops working within that time, whatever its expiry.

Used when Redis is configured (settings: ``SESSION_ENGINE``); the embedded default keeps database sessions, as a cache
in each process's memory would keep a logged-out session alive in the other processes.
"""

import json
import logging
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

logger = logging.getLogger("django.contrib.sessions")


class JSONSerializer:
    """What the session cache stores: JSON, as the database does (Django's session serializer), never a pickle, so
    whoever can write to Redis cannot make a web process run code by loading a session."""

    def dumps(self, value) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    def loads(self, data: bytes):
        return json.loads(data)


class SessionStore(CachedDBStore):
    def _cache_seconds(self, expiry_age: int) -> int:
        return max(0, min(expiry_age, settings.SESSION_CACHE_SECONDS))

    def load(self):
        try:
            data = self._cache.get(self.cache_key)
        except Exception:
            data = None  # the database answers while the cache does not
        if data is not None:
            return data
        stored = self._get_session_from_db()
        if not stored:
            return {}
        data = self.decode(stored.session_data)
        try:
            self._cache.set(self.cache_key, data, self._cache_seconds(self.get_expiry_age(expiry=stored.expire_date)))
        except Exception:
            logger.warning("session cache unavailable (%s): read from the database", self._cache)
        return data

    def exists(self, session_key):
        return super(CachedDBStore, self).exists(session_key)  # the database's answer: a new key must be unique there

    def save(self, must_create=False):
        super(CachedDBStore, self).save(must_create)
        try:
            self._cache.set(self.cache_key, self._session, self._cache_seconds(self.get_expiry_age()))
        except Exception:
            logger.warning("session cache unavailable (%s): saved in the database only", self._cache)

    def delete(self, session_key=None):
        key = session_key or self.session_key
        super(CachedDBStore, self).delete(session_key)
        if key is None:
            return
        try:
            self._cache.delete(self.cache_key_prefix + key)
        except Exception:
            # The cached copy may outlive the log-out by SESSION_CACHE_SECONDS at most.
            logger.warning("session cache unavailable (%s): a deleted session's copy expires by itself", self._cache)


def session_cache_evict(sender, instance, **kwargs) -> None:
    """A session deleted in the database (a queryset's ``delete()`` too: an operator signing people out) loses its
    cached copy at once, not after SESSION_CACHE_SECONDS."""
    if __name__ != settings.SESSION_ENGINE:
        return
    from django.core.cache import caches

    try:
        caches[settings.SESSION_CACHE_ALIAS].delete(SessionStore.cache_key_prefix + instance.session_key)
    except Exception:
        logger.warning("session cache unavailable: a deleted session's copy expires by itself")


class _ReusedClient(RedisCacheClient):
    """Django's Redis cache client, which makes a ``redis.Redis`` object for every call (50 µs each: its table of
    response callbacks is built anew), keeping one per connection pool instead. A ``redis.Redis`` is safe to share:
    each command takes a connection from the pool and gives it back."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client


class RedisCache(DjangoRedisCache):
    """The session cache's backend (settings: ``CACHES["sessions"]``): Django's, with one client per pool."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = _ReusedClient
