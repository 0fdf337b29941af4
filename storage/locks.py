"""Holding what a write transaction reads to decide, on any database.

On SQLite `Database.write()` holds the one write lock from its first statement, so a read inside
it cannot change before the commit. PostgreSQL runs READ COMMITTED: two transactions may read the
same row, both decide, and both write. So a read that decides a write takes the row with
`SELECT ... FOR UPDATE` (`locked`), a decision that rests on many rows (the month's books) holds a
named advisory lock (`serialize`), and an insert that may meet a twin uses ON CONFLICT DO NOTHING
(`insert_once`). The rule for row locks: a lease before its servers, so two transactions never
wait on each other in a circle.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel

Row = TypeVar("Row", bound=SQLModel)


def locked(session: Session, model: type[Row], key: object) -> Row | None:
    """The row as committed now, held until the transaction ends (FOR UPDATE; SQLite's write
    transaction already holds everything)."""
    return session.get(model, key, with_for_update=True, populate_existing=True)


def locked_all(session: Session, model: type[Row], keys: Iterable[object]) -> list[Row]:
    """The rows as committed now, held until the transaction ends, taken in key order so two
    holders of overlapping sets never wait on each other in a circle."""
    (key,) = model.__table__.primary_key.columns
    query = select(model).where(key.in_(sorted(set(keys)))).order_by(key).with_for_update()
    return list(session.scalars(query, execution_options={"populate_existing": True}).all())


def serialize(session: Session, *names: str) -> None:
    """Hold a lock on each name until the transaction ends: `pg_advisory_xact_lock` on
    PostgreSQL, taken in sorted order so two holders of overlapping names never deadlock."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for name in sorted(set(names)):
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(name))))


def insert_all_once(session: Session, model: type[SQLModel], rows: list[dict[str, object]]) -> None:
    """Insert each row unless one with the same key exists, in one statement."""
    if rows:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.execute(dialect.insert(model).on_conflict_do_nothing(), rows)


def insert_new(
    connection: Connection, model: type[SQLModel], rows: list[dict[str, object]], *returning: Any
) -> list[Row]:
    """Insert each row unless one with the same key exists (in the table or earlier in `rows`),
    in one statement; returns the `returning` columns of the rows this call inserted."""
    if not rows:
        return []
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(model.__table__).on_conflict_do_nothing().returning(*returning)
    return list(connection.execute(statement, rows).all())  # one statement however many rows


def insert_once(session: Session, model: type[SQLModel], **values: object) -> bool:
    """Insert the row unless one with the same key exists; True when this call inserted it.
    Two transactions racing to insert the same key both succeed and exactly one gets True."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    key = model.__table__.primary_key.columns
    statement = dialect.insert(model).values(**values).on_conflict_do_nothing().returning(*key)
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT.
    return session.execute(statement).first() is not None
