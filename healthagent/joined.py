"""Model instances of several joined tables, read by one statement written once per process.

For the hottest requests (a rater's item page, chart and submit), where compiling an ORM query with its
``select_related`` joins costs more CPU than the database spends running it. The statement's column list and the
row's conversion come from the models' metadata and the database backend (the same converters the ORM applies), so a
field added to a model is read here too; only the joins and the conditions are written by hand.
"""

from collections.abc import Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import Model
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init
from django.utils.asyncio import async_unsafe


@async_unsafe
def prepared_cursor(connection: BaseDatabaseWrapper) -> CursorWrapper:
    """A cursor whose statements PostgreSQL prepares on the connection's first use of each and plans once: psycopg's
    server-side binding, with the connection's ``prepare_threshold`` of 0 (settings; ``None`` turns it off, and then
    this is a plain cursor). For the few statements every request runs with new parameters, where planning cost
    more than executing. Django's own cursors bind on the client and never prepare. Elsewhere (SQLite) Django's
    cursor. Wrapped as Django wraps its own, so query logging, counting and error translation see these too."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    # What Django's cursor() does first: replace a kept connection that failed its health check, then connect.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        raw = _preparing_cursor_class()(connection.connection)
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


@cache
def _preparing_cursor_class() -> type:
    import psycopg  # the PostgreSQL backend's driver: imported where it is the backend

    class PreparingCursor(psycopg.Cursor):
        """psycopg's server-binding cursor, which also keeps a prepared statement's text where Django's query log
        reads it (``last_executed_query``: psycopg sets it for a statement it sends whole, not for a prepared one)."""

        def _send_query_prepared(self, name, pgq, *, binary=None):
            self._query = pgq
            super()._send_query_prepared(name, pgq, binary=binary)

    return PreparingCursor


class JoinedRead:
    """``SELECT`` every concrete column of each ``(model, alias)`` in ``parts`` ``FROM`` the caller's joins; each row
    becomes one instance per part, the first part's instance linked to the others by the caller."""

    def __init__(self, parts: Sequence[tuple[type[Model], str]], using: str = "default"):
        self.parts = tuple(parts)
        self.using = using
        connection = connections[using]
        quote = connection.ops.quote_name
        self.columns = ", ".join(
            f"{alias}.{quote(str(field.column))}"
            for model, alias in self.parts
            for field in model._meta.concrete_fields
        )
        self._converters: list[tuple[int, list[tuple[Any, Any]]]] | None = None
        # Each part's model, its fields' attribute names in column order, and where its primary key is among them.
        self._layout = [
            (
                model,
                names := [field.attname for field in model._meta.concrete_fields],
                names.index(model._meta.pk.attname),
            )
            for model, _ in self.parts
        ]

    def _converters_for(self, connection) -> list[tuple[int, list[tuple[Any, Any]]]]:
        """(position, converters) of the columns that have any: most have none, and are left as they are."""
        if self._converters is None:
            converters = []
            for model, alias in self.parts:
                for field in model._meta.concrete_fields:
                    column = field.get_col(alias)
                    both = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
                    converters.append([(converter, column) for converter in both])
            self._converters = [(position, chain) for position, chain in enumerate(converters) if chain]
        return self._converters

    def fetch_one(self, sql: str, params: Sequence[Any]) -> list[Model] | None:
        """Run ``sql`` (which selects ``self.columns`` first) and turn its first row into instances, or None."""
        found = self.fetch_one_with_extra(sql, params)
        return None if found is None else found[0]

    def fetch_one_with_extra(self, sql: str, params: Sequence[Any]) -> tuple[list[Any], list[Any]] | None:
        """:meth:`fetch_one`, and the row's values after ``self.columns`` as the driver gives them. A part whose
        primary key is NULL (the missing side of a ``LEFT JOIN``) is None."""
        connection = connections[self.using]
        with prepared_cursor(connection) as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        values = list(row)
        for position, chain in self._converters_for(connection):  # the parts' columns; the extra ones stay as they are
            for converter, column in chain:
                values[position] = converter(values[position], column, connection)
        instances: list[Any] = []
        offset = 0
        for model, names, pk_index in self._layout:
            own = values[offset : offset + len(names)]
            instances.append(from_row(model, self.using, names, own) if own[pk_index] is not None else None)
            offset += len(names)
        return instances, values[offset:]


def from_row(model: type[Model], using: str, names: list[str], values: Sequence[Any]) -> Model:
    """``model.from_db(using, names, values)`` for a row of every concrete field, in field order, without
    ``Model.__init__``'s setattr of each field through its descriptor, nor its ``pre_init``/``post_init`` signals when
    nothing listens to them: the instance's attributes are set in one update, as ``__init__`` would leave them. The
    hottest requests build four or five instances of wide models (a study has 28 fields): 1.5 % of a rated item's
    server instructions (callgrind). A model with its own ``__init__`` or ``from_db``, or any receiver of either
    signal, goes through ``from_db``."""
    special = model.__init__ is not Model.__init__ or model.from_db.__func__ is not _FROM_DB  # type: ignore[attr-defined]
    if special or pre_init.receivers or post_init.receivers:
        return model.from_db(using, names, values)
    instance = model.__new__(model)
    state = instance._state = ModelState()
    state.adding, state.db = False, using
    instance.__dict__.update(zip(names, values, strict=True))
    return instance


_FROM_DB = Model.from_db.__func__  # type: ignore[attr-defined]

M = TypeVar("M", bound=Model)


class PreparedInsert:
    """``INSERT`` of one model's row, its statement written once per process from the model's metadata and prepared
    (:func:`prepared_cursor`): for the rows every rated item writes, where the ORM's insert compiles the statement
    again each time. The values are prepared as the ORM's insert prepares them (``pre_save``, so ``auto_now`` fields
    are set on the instance too, then ``get_db_prep_save``), so a field added to the model is written here too. No
    ``pre_save``/``post_save`` signal is sent: for models that have no receivers (``tests/evaluation/test_writes.py``
    checks those written here)."""

    def __init__(self, model: type[Model], using: str = "default"):
        self.model = model
        self.using = using
        connection = connections[using]
        quote = connection.ops.quote_name
        self.fields = [
            field
            for field in model._meta.concrete_fields
            if field is not model._meta.auto_field and not getattr(field, "generated", False)  # the database's own
        ]
        defaulted = [field.name for field in self.fields if field.has_db_default()]
        if defaulted:  # an unset one would be sent as the ORM's DatabaseDefault expression, which no driver adapts
            raise ValueError(f"{model.__name__}: PreparedInsert writes no db_default field ({', '.join(defaulted)})")
        self.table = quote(model._meta.db_table)
        self.column_list = ", ".join(quote(str(field.column)) for field in self.fields)
        self.sql = (
            f"INSERT INTO {self.table} ({self.column_list}) VALUES ({', '.join(['%s'] * len(self.fields))})"
            f" RETURNING {quote(str(model._meta.pk.column))}"
        )

    def values(self, instance: Model) -> list[Any]:
        connection = connections[self.using]
        return [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in self.fields]

    def saved(self, instance: M, pk: Any) -> M:
        """``instance`` as the ORM leaves one it inserted: its primary key set, no longer being added."""
        instance.pk = pk
        instance._state.adding = False
        instance._state.db = self.using
        return instance

    def insert(self, instance: M) -> M:
        """Insert ``instance`` (new, its primary key unset) and return it saved. Elsewhere than on PostgreSQL, the
        ORM's ``save``."""
        connection = connections[self.using]
        if connection.vendor != "postgresql":
            instance.save(force_insert=True, using=self.using)
            return instance
        with prepared_cursor(connection) as cursor:
            cursor.execute(self.sql, self.values(instance))
            (pk,) = cursor.fetchone()
        return self.saved(instance, pk)
