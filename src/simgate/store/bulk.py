"""Rows for several tables written by one PostgreSQL statement.

A transaction on PostgreSQL costs a round trip for each statement: BEGIN, an INSERT or
UPDATE per table, a NOTIFY, COMMIT. Under load every round trip also waits for the event
loop to come back to it, so the wait grows with the load. Here the writes become the
data-modifying ``WITH`` parts of one statement: they all happen or none does. Run outside
an explicit transaction, that statement is a transaction of its own and has committed when
the server answers; inside one, it saves the round trips between its parts.

Each part's rows travel as one array per column and are spread out again by ``unnest``, so
the statement's text depends only on the tables and columns, and the driver prepares it
once per connection. No row may be updated by two parts: PostgreSQL would apply only one.

``insert_many`` inserts the rows of one table on any database: on PostgreSQL with that
statement, on SQLite with the driver's ``executemany`` of values already converted (what
SQLAlchemy does per row, at several microseconds a row, is done once per column), elsewhere
with SQLAlchemy's INSERT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, bindparam, insert, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter, TextClause
from sqlalchemy.sql.schema import CallableColumnDefault, ScalarElementColumnDefault

Part = tuple[Table, Sequence[Mapping[str, Any]]]
Shape = tuple[tuple[Table, tuple[str, ...]], ...]


def _columns(table: Table, rows: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    first = rows[0].keys()
    if any(row.keys() != first for row in rows):
        raise ValueError(f"rows for {table.name} name different columns")
    return tuple(first)


def _arrays(
    table: Table, columns: tuple[str, ...], name: str, binds: list[BindParameter[Any]]
) -> str:
    names = []
    for c, column in enumerate(columns):
        binds.append(bindparam(f"{name}_{c}", type_=ARRAY(table.c[column].type)))
        names.append(f":{name}_{c}")
    return f"unnest({', '.join(names)})"


def _quoted(table: Table, columns: tuple[str, ...]) -> str:
    return ", ".join(f'"{table.c[column].name}"' for column in columns)


@lru_cache(maxsize=256)
def _statement(inserts: Shape, updates: Shape, key: str, notify: bool) -> TextClause:
    # Table and column names come from the models; every value is a parameter.
    parts: list[str] = []
    binds: list[BindParameter[Any]] = []
    for t, (table, columns) in enumerate(inserts):
        rows = _arrays(table, columns, f"i{t}", binds)
        into = f'"{table.name}" ({_quoted(table, columns)})'
        parts.append(f"i{t} AS (INSERT INTO {into} SELECT * FROM {rows})")  # noqa: S608
    for t, (table, columns) in enumerate(updates):
        rows = _arrays(table, columns, f"u{t}", binds)
        sets = ", ".join(
            f'"{table.c[c].name}" = v."{table.c[c].name}"' for c in columns if c != key
        )
        parts.append(
            f'u{t} AS (UPDATE "{table.name}" AS t SET {sets} FROM {rows} '  # noqa: S608
            f'AS v({_quoted(table, columns)}) WHERE t."{key}" = v."{key}")'
        )
    tail = "SELECT pg_notify(:channel, :payload)" if notify else "SELECT 1"
    return text(f"WITH {', '.join(parts)} {tail}").bindparams(*binds)


def _defaults(table: Table, given: tuple[str, ...]) -> list[tuple[str, Any]]:
    """The model's Python-side defaults for the columns ``given`` leaves out, as an
    INSERT through SQLAlchemy would fill them in (a callable's per row). A default these
    writes cannot reproduce (an SQL expression, a sequence) is an error, not left out."""
    out = []
    for column in table.c:
        default = column.default
        if column.key in given or default is None:
            continue
        if not isinstance(default, (ScalarElementColumnDefault, CallableColumnDefault)):
            raise ValueError(f"{table.name}.{column.key}: rows must name it (its default is SQL)")
        out.append((column.key, default))
    return out


def _shape(
    parts: Sequence[Part], name: str, params: dict[str, Any], key: str | None = None
) -> Shape:
    shape = []
    for t, (table, rows) in enumerate(p for p in parts if p[1]):
        columns = _columns(table, rows)
        if key is not None and key not in columns:
            raise ValueError(f"rows to update in {table.name} must name {key}")
        filled = _defaults(table, columns) if key is None else []
        shape.append((table, columns + tuple(c for c, _ in filled)))
        for c, column in enumerate(columns):
            params[f"{name}{t}_{c}"] = [row[column] for row in rows]
        for c, (_column, default) in enumerate(filled, start=len(columns)):
            params[f"{name}{t}_{c}"] = [_default(default) for _ in rows]
    return tuple(shape)


def statement(
    *,
    inserts: Sequence[Part] = (),
    updates: Sequence[Part] = (),
    key: str = "id",
    notify: tuple[str, str] | None = None,
) -> tuple[TextClause, dict[str, Any]]:
    """One statement inserting every insert part's rows and updating, for each update
    part's row, the row with its ``key`` to its other columns' values (the rows of a part
    must name the same columns); then ``pg_notify(channel, payload)`` for ``notify``."""
    params: dict[str, Any] = {}
    ins = _shape(inserts, "i", params)
    ups = _shape(updates, "u", params, key)
    if not ins and not ups:
        raise ValueError("nothing to write")
    if notify is not None:
        params["channel"], params["payload"] = notify
    return _statement(ins, ups, key, notify is not None), params


async def insert_many(
    session: AsyncSession, table: Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """INSERT ``rows`` (each naming the same columns) into ``table`` in the session's
    transaction, with the model's Python-side defaults for the columns they leave out."""
    if not rows:
        return
    columns = _columns(table, rows)
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        stmt, params = statement(inserts=[(table, rows)])
        await session.execute(stmt, params)
    elif dialect.name == "sqlite":
        sql, plan = _sqlite_insert(table, columns, dialect)
        values = []
        try:
            for row in rows:
                value = []
                for column, convert, default in plan:
                    v = row[column] if default is None else _default(default)
                    value.append(v if convert is None else convert(v))
                values.append(tuple(value))
        except (TypeError, ValueError) as exc:  # as SQLAlchemy reports a value it cannot bind
            raise StatementError(f"{table.name}: {exc}", sql, None, exc) from exc
        connection = await session.connection()
        await connection.exec_driver_sql(sql, values)
    else:
        await session.execute(insert(table), list(rows))


def _default(default: Any) -> Any:
    """A column default's value for one row (a callable's is called for each)."""
    return default.arg if isinstance(default, ScalarElementColumnDefault) else default.arg(None)


# Per column: its key, its bind processor (None: the driver takes the value as it is) and,
# for a column the rows leave out, its default.
Plan = list[tuple[str, Any, ScalarElementColumnDefault | CallableColumnDefault | None]]


@lru_cache(maxsize=256)
def _sqlite_insert(table: Table, columns: tuple[str, ...], dialect: Dialect) -> tuple[str, Plan]:
    """The INSERT's text with ``?`` parameters, and how each value is made from a row."""
    if dialect.paramstyle != "qmark":
        raise ValueError(f"SQLite driver with paramstyle {dialect.paramstyle!r}, not qmark")

    def converter(column: str) -> Any:
        return table.c[column].type.dialect_impl(dialect).bind_processor(dialect)

    plan: Plan = [(c, converter(c), None) for c in columns]
    for column, default in _defaults(table, columns):
        plan.append((column, converter(column), default))
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(table.c[column].name) for column, _, _ in plan)
    into = dialect.identifier_preparer.format_table(table)
    marks = ", ".join("?" * len(plan))
    return f"INSERT INTO {into} ({names}) VALUES ({marks})", plan  # noqa: S608
