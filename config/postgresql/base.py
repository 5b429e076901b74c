"""Django's PostgreSQL backend whose psycopg pool fails fast when the database is down.

psycopg's pool keeps a request waiting up to its ``timeout`` (DATABASE_POOL_TIMEOUT) while
it retries connecting in the background: with PostgreSQL stopped, uploads and uncached
lookups would hang that long instead of answering 503 at once, as they do without a pool
(README, Failure behaviour). :class:`FailFastPool` hands every waiting request the error
as soon as a new connection cannot be made; requests that find a free connection, and
the pool's own retries, go on as before. ENGINE ``config.postgresql`` (config/settings.py
sets it when the pool is on).
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


class DatabaseUnreachable(psycopg.OperationalError):
    """A new connection failed: Django reports it as an OperationalError (the API's 503)."""


class FailFastPool(ConnectionPool):
    def _connect(self, timeout: float | None = None) -> Any:
        try:
            return super()._connect(timeout)
        except Exception as exc:
            self._fail_waiting(exc)
            raise

    def _fail_waiting(self, cause: Exception) -> None:
        """The requests queued for a connection get the error now, not at their timeout."""
        with self._lock:
            waiting = list(self._waiting)
            self._waiting.clear()
        error = DatabaseUnreachable(f"cannot connect to the database: {cause}".strip())
        for client in waiting:
            client.fail(error)


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> FailFastPool | None:
        """Django 5.2's ``pool``, with :class:`FailFastPool` as the pool's class."""
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == base.NO_DB_ALIAS or not pool_options:
            return None
        if self.alias not in self._connection_pools:
            if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
                raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
            if pool_options is True:
                pool_options = {}
            connect_kwargs = self.get_connection_params()
            connect_kwargs["autocommit"] = True
            enable_checks = self.settings_dict["CONN_HEALTH_CHECKS"]
            pool = FailFastPool(
                kwargs=connect_kwargs,
                open=False,
                configure=self._configure_connection,
                check=ConnectionPool.check_connection if enable_checks else None,
                **pool_options,
            )
            self._connection_pools.setdefault(self.alias, pool)
        pool_of_alias: FailFastPool = self._connection_pools[self.alias]
        return pool_of_alias
