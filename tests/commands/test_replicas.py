"""Several replicas on one database, as real processes: they share the sweep's work through
claims, none of it is done twice, and a replica killed with SIGKILL in the middle of a step has
its claims taken over once they expire. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

from sqlmodel import col, select

from commands.notices import Kind
from commands.states import State
from commands.sweep import sweep
from storage.db import Database
from storage.models import AuditEvent, Lease, Notice
from tests.commands.helpers import active, lease
from tests.commands.test_kill import wait_for
from tests.conftest import make_lab

ROOT = Path(__file__).parents[2]
LEASES = 6

# One replica: its own engine, provider and notifier on the shared database, sweeping once at
# the instant given. `hang` makes every provider delete block, so a kill lands mid-step.
REPLICA = textwrap.dedent(
    """
    import json, sys, threading
    from datetime import datetime
    from commands.lab import Lab
    from fakes.notifier import RecordingNotifier
    from commands.policy import Policy
    from commands.sweep import sweep
    from metal.simulated import SimulatedProvider
    from storage.db import Database
    from tests.conftest import ROLES

    url, at, hang = sys.argv[1], datetime.fromisoformat(sys.argv[2]), sys.argv[3] == "hang"

    class Provider(SimulatedProvider):
        def delete(self, device_id):
            if hang:
                threading.Event().wait()  # hang mid-step until the test kills us
            super().delete(device_id)

    db = Database(url)
    lab = Lab(db, Provider(db, clock=lambda: at, provision_seconds=120), RecordingNotifier(),
              Policy(), ROLES)
    report = sweep(lab, at)
    print(json.dumps({"stepped": report.stepped, "errors": report.errors}))
    """
)


def replica(db: Database, at, hang: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", REPLICA, db.url, at.isoformat(), "hang" if hang else "ok"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)


def ending_leases(lab, clock) -> list[int]:
    """LEASES active leases, all past their end plus grace at clock.now."""
    ids = [active(lab, clock, count=1) for _ in range(LEASES)]
    clock.now = lease(lab.db, ids[-1]).ends_at + lab.policy.grace
    return ids


def expiries(db: Database) -> Counter:
    with db.read() as session:
        actions = session.exec(
            select(AuditEvent.lease_id).where(AuditEvent.action == "expire")
        ).all()
    return Counter(actions)


def released_notices(db: Database) -> Counter:
    with db.read() as session:
        rows = session.exec(select(Notice.lease_id).where(Notice.kind == Kind.RELEASED)).all()
    return Counter(rows)


def test_two_replica_processes_sweeping_at_once_do_each_step_once(db, clock):
    lab = make_lab(db, clock)
    ids = ending_leases(lab, clock)
    replicas = [replica(db, clock.now) for _ in range(2)]
    reports = [json.loads(r.communicate(timeout=120)[0]) for r in replicas]
    assert [r.returncode for r in replicas] == [0, 0]
    assert all(report["errors"] == [] for report in reports)
    stepped = [lease_id for report in reports for lease_id, _ in report["stepped"]]
    assert sorted(stepped) == sorted(ids)  # every due lease stepped, by exactly one replica
    assert expiries(db) == Counter(ids)
    assert released_notices(db) == Counter(ids)
    assert all(lease(db, i).state == State.RECLAIMED for i in ids)
    assert lab.provider.list("labbot") == []


def test_a_replica_killed_mid_step_has_its_claims_taken_over_after_they_expire(db, clock):
    lab = make_lab(db, clock)
    ids = ending_leases(lab, clock)
    doomed = replica(db, clock.now, hang=True)

    def claimed_and_hung() -> bool:
        with db.read() as session:
            return session.exec(
                select(Lease.id).where(col(Lease.claimed_by).is_not(None))
            ).first() is not None and bool(expiries(db))

    try:
        wait_for(claimed_and_hung)
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    with db.read() as session:
        held = set(session.exec(select(Lease.id).where(col(Lease.claimed_by).is_not(None))).all())
    assert held

    # Another replica at the same instant leaves the dead one's claims alone...
    report = sweep(lab, clock.now)
    assert held.isdisjoint(i for i, _ in report.stepped)
    # ...and takes them over once they expire.
    sweep(lab, clock.advance(seconds=lab.policy.claim_for.total_seconds() + 1))
    sweep(lab, clock.advance(minutes=1))
    assert all(lease(db, i).state == State.RECLAIMED for i in ids)
    assert expiries(db) == Counter(ids)
    assert released_notices(db) == Counter(ids)
    assert lab.provider.list("labbot") == []
