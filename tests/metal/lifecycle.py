"""What the lifecycle tests of every real backend share: reading leases and servers back, and
driving a lease to active with the sweep on a stepped clock."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from commands.lab import Lab
from commands.policy import Policy
from commands.request import request
from commands.review import approve
from commands.states import State
from commands.sweep import sweep
from storage.db import Database
from storage.models import Lease, Server
from tests.conftest import OWNER, REVIEWER, request_input
from tests.metal.conftest import SteppedClock

POLICY = Policy(reconcile_every=timedelta(minutes=1), orphan_grace=timedelta(minutes=30))


def lease_of(db: Database, lease_id: int) -> Lease:
    with db.read() as session:
        return session.get(Lease, lease_id)


def servers_of(db: Database, lease_id: int) -> list[Server]:
    with db.read() as session:
        return list(session.exec(select(Server).where(Server.lease_id == lease_id)).all())


def filed_lease(lab: Lab, clock: SteppedClock, **changes: object) -> int:
    filed = request(lab, OWNER, request_input(**changes), clock.now)
    assert filed.ok, filed.message
    return filed.lease_id


def approved_lease(lab: Lab, clock: SteppedClock, **changes: object) -> int:
    lease_id = filed_lease(lab, clock, **changes)
    decided = approve(lab, REVIEWER, lease_id, clock.now)
    assert decided.ok, decided.message
    return lease_id


def run_until_active(lab: Lab, clock: SteppedClock, lease_id: int, rounds: int = 10) -> None:
    for _ in range(rounds):
        if lease_of(lab.db, lease_id).state == State.ACTIVE:
            return
        clock.advance(10)
        sweep(lab, clock.now)
    raise AssertionError(f"lease {lease_id} is {lease_of(lab.db, lease_id).state}")
