"""Claims: how several replicas share work without doing any of it twice.

Work that more than one process could do (a lease due for the sweep, a notice due for delivery,
the reconcile pass, the credit alerts) is claimed in the database before it is done: the row
gets an owner (`claimed_by`) and an expiry (`claimed_until`). One SQL shape does it everywhere:

    SELECT id FROM t WHERE <due> AND (claimed_until IS NULL OR claimed_until <= :now)
        ORDER BY ... LIMIT n FOR UPDATE SKIP LOCKED;
    UPDATE t SET claimed_by = :me, claimed_until = :now + :hold WHERE id IN (...);

On PostgreSQL, SKIP LOCKED lets two replicas claiming at once take different rows instead of
waiting for each other (as procrastinate, pgqueuer, Oban and River do); on SQLite the write
transaction's `BEGIN IMMEDIATE` serializes claimers, across processes too, so a second process on
the same file shares the work the same way. A replica that dies mid-step leaves its claims to
lapse: after `hold` any replica takes the work over. A claim only says who should do the work;
the work itself stays a conditional change, so a claim that lapsed while its owner was merely
slow costs a repeated check, never a repeated effect.

Named periodic work (`claim_period`) is a row of the `claim` table held for the whole period and
not given back: whichever replica takes it does the work, and nobody does it again until the
period is over.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlmodel import Session, SQLModel, col

from storage.locks import insert_once
from storage.models import Claim


def replica_name() -> str:
    """Who claims: host, process and a random part (a restarted process is a new owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def claim(
    session: Session,
    model: type[SQLModel],
    *due: ColumnElement[bool],
    owner: str,
    now: datetime,
    hold: timedelta,
    order_by: Sequence[Any] = (),
    limit: int | None = None,
    **values: Any,
) -> list[Any]:
    """Claim the free rows of `model` matching `due` for `hold`; returns their keys. `values`
    are set on the claimed rows in the same UPDATE (an attempt counter, say)."""
    (key,) = model.__table__.primary_key.columns
    free = or_(col(model.claimed_until).is_(None), col(model.claimed_until) <= now)
    query = select(key).where(free, *due).order_by(*order_by).limit(limit)
    keys = list(session.execute(query.with_for_update(skip_locked=True)).scalars())
    if keys:
        session.execute(
            update(model)
            .where(key.in_(keys))
            .values(claimed_by=owner, claimed_until=now + hold, **values)
        )
    return keys


def give_back(session: Session, model: type[SQLModel], keys: Sequence[Any], owner: str) -> None:
    """Give claimed rows back early (the work is done), if they are still ours."""
    (key,) = model.__table__.primary_key.columns
    session.execute(
        update(model)
        .where(key.in_(keys), col(model.claimed_by) == owner)
        .values(claimed_by=None, claimed_until=None)
    )


def claim_period(session: Session, name: str, owner: str, now: datetime, period: timedelta) -> bool:
    """True for the one replica that does the named work this period."""
    insert_once(session, Claim, name=name)
    return bool(claim(session, Claim, col(Claim.name) == name, owner=owner, now=now, hold=period))


def give_back_period(session: Session, name: str, owner: str, now: datetime) -> None:
    """The work failed: let the next sweep, on any replica, try again."""
    session.execute(
        update(Claim)
        .where(col(Claim.name) == name, col(Claim.claimed_by) == owner)
        .values(claimed_until=now)
    )
