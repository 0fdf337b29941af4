"""Small steps every lease-engine test repeats: file a request, bring a lease up, look at rows."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import inspect
from sqlmodel import SQLModel, col, select

from commands.lab import Lab
from commands.request import request
from commands.review import approve
from commands.states import State
from commands.sweep import sweep
from storage.db import Database
from storage.models import AuditEvent, Lease, LedgerEntry, Notice, Server, ServerKeys
from tests.conftest import ADMIN, OWNER, REVIEWER, Clock, request_input

PROVISION = timedelta(seconds=120)


def file(lab: Lab, clock: Clock, actor: str = OWNER, **changes) -> int:
    outcome = request(lab, actor, request_input(**changes), clock.now)
    assert outcome.ok, outcome.message
    return outcome.lease_id


def approved(lab: Lab, clock: Clock, actor: str = OWNER, **changes) -> int:
    lease_id = file(lab, clock, actor, **changes)
    reviewer = ADMIN if actor == REVIEWER else REVIEWER  # nobody approves their own request
    outcome = approve(lab, reviewer, lease_id, clock.now)
    assert outcome.ok, outcome.message
    return lease_id


def active(lab: Lab, clock: Clock, actor: str = OWNER, **changes) -> int:
    """A lease whose servers are all up: filed, approved, and swept once they are ready."""
    lease_id = approved(lab, clock, actor, **changes)
    clock.advance(seconds=PROVISION.total_seconds() + 30)
    sweep(lab, clock.now)
    assert lease(lab.db, lease_id).state == State.ACTIVE
    return lease_id


def lease(db: Database, lease_id: int) -> Lease:
    with db.read() as session:
        return session.get(Lease, lease_id)


def servers(db: Database, lease_id: int) -> list[Server]:
    with db.read() as session:
        return list(
            session.exec(
                select(Server).where(Server.lease_id == lease_id).order_by(col(Server.id))
            ).all()
        )


def audits(db: Database, lease_id: int | None = None, action: str | None = None) -> list:
    with db.read() as session:
        query = select(AuditEvent).order_by(col(AuditEvent.id))
        if lease_id is not None:
            query = query.where(AuditEvent.lease_id == lease_id)
        if action is not None:
            query = query.where(AuditEvent.action == action)
        return list(session.exec(query).all())


def ledger(db: Database, kind: str | None = None) -> list[LedgerEntry]:
    with db.read() as session:
        query = select(LedgerEntry).order_by(col(LedgerEntry.id))
        if kind is not None:
            query = query.where(LedgerEntry.kind == kind)
        return list(session.exec(query).all())


def notices(db: Database) -> list[Notice]:
    with db.read() as session:
        return list(session.exec(select(Notice).order_by(col(Notice.id))).all())


def snapshot(db: Database, skip: tuple[str, ...] = ("auditevent",)) -> dict[str, list]:
    """Every row of every table except `skip`, to show a refusal changed nothing else."""
    out: dict[str, list] = {}
    with db.read() as session:
        for table in SQLModel.metadata.sorted_tables:
            if table.name in skip:
                continue
            rows = session.execute(select(table)).all()
            out[table.name] = sorted(json.dumps(list(r), default=str) for r in rows)
    return out


def live_devices(lab: Lab, lease_id: int | None = None) -> list:
    devices = lab.provider.list_all()
    if lease_id is None:
        return devices
    return [d for d in devices if f"lease-{lease_id}" in d.tags]


def sweep_until_quiet(lab: Lab, clock: Clock, step: timedelta, limit: int = 50) -> None:
    for _ in range(limit):
        clock.now += step
        sweep(lab, clock.now)


def table_names(db: Database) -> list[str]:
    return inspect(db.engine).get_table_names()


def created_with(db: Database, lease_id: int) -> list[str]:
    """Per server of the lease, in order, the fingerprints its create call carried ("" when
    none were recorded)."""
    with db.read() as session:
        rows = session.exec(
            select(Server.id, ServerKeys.fingerprints)
            .join(ServerKeys, col(ServerKeys.server_id) == col(Server.id), isouter=True)
            .where(Server.lease_id == lease_id)
            .order_by(col(Server.id))
        ).all()
    return [fingerprints or "" for _, fingerprints in rows]
