"""A real process killed with SIGKILL in the middle of provisioning: the next sweep, in another
process, finishes the work with exactly one device per server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

from sqlmodel import select

from commands.states import ServerState, State
from commands.sweep import sweep
from storage.db import Database
from storage.models import Lease, Server, SimDevice
from tests.conftest import START, Clock, make_lab

ROOT = Path(__file__).parents[2]

# The doomed process: files a request and approves it; the provider takes a minute to answer
# each create, so the kill lands between the committed claim and the recorded answer.
DOOMED = textwrap.dedent(
    """
    import sys
    from commands.lab import Lab
    from fakes.notifier import RecordingNotifier
    from commands.policy import Policy
    from commands.request import request
    from commands.review import approve
    from metal.simulated import SimulatedProvider
    from storage.db import Database
    from tests.conftest import ROLES, START, OWNER, REVIEWER, request_input

    db = Database(sys.argv[1])
    provider = SimulatedProvider(db, clock=lambda: START, provision_seconds=120, create_delay=60)
    lab = Lab(db, provider, RecordingNotifier(), Policy(), ROLES)
    filed = request(lab, OWNER, request_input(count=3), START)
    approve(lab, REVIEWER, filed.lease_id, START)
    """
)


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the doomed process never got there"
        time.sleep(0.05)


def creating(db: Database) -> int:
    with db.read() as session:
        return len(session.exec(select(Server).where(Server.state == ServerState.CREATING)).all())


def test_sigkill_between_the_claim_and_the_answer_is_finished_by_the_next_sweep(
    db: Database,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    doomed = subprocess.Popen([sys.executable, "-c", DOOMED, db.url], env=env)
    try:
        wait_for(lambda: creating(db) == 3)
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    assert doomed.returncode == -signal.SIGKILL

    clock = Clock(START)
    lab = make_lab(db, clock)
    sweep(lab, clock.advance(minutes=10))  # the claims have lapsed: create again, once
    sweep(lab, clock.advance(minutes=3))
    with db.read() as session:
        lease = session.exec(select(Lease)).one()
        devices = session.exec(select(SimDevice)).all()
    assert lease.state == State.ACTIVE
    assert sorted(d.hostname for d in devices) == [f"coredns-{lease.id}-{n}" for n in (1, 2, 3)]
    assert lease.ends_at - lease.starts_at == timedelta(hours=48)
