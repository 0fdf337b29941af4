"""A click acknowledged by a replica that is killed before doing it is still done, once: kept
in the database before the ack, taken over by another replica's sweeper after its claim lapses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

from sqlmodel import select

from bot.blocks import cards
from commands.lab import Lab
from commands.request import request
from commands.states import State
from fakes.slack import FakeSlack
from fakes.slack_sender import SlackSender
from metal.simulated import SimulatedProvider
from storage.db import Database
from storage.models import AuditEvent, InboxItem, Lease
from tests.bot.conftest import SECRET
from tests.bot.test_serve import DEADLINE, free_port, serve_env, wait_healthy
from tests.conftest import OWNER, ROLES, request_input

GROUP, GROUP_REVIEWER = "S0REVIEWERS", "U0GROUPREV"
SLOW = "usergroups.users.list"  # the first thing the click's work asks Slack: who reviews


def test_a_click_acked_by_a_replica_killed_before_doing_it_is_done_by_another(
    fake: FakeSlack, database_url: str
) -> None:
    db = Database(database_url)
    lease_id = _filed(db)
    fake.set_usergroup(GROUP, [GROUP_REVIEWER])
    fake.delay(SLOW, DEADLINE)  # the doomed replica's work waits here until it is killed
    env = _env(fake, database_url)
    doomed = _serve(env)
    try:
        wait_healthy(int(env["PORT"]), doomed)
        assert _approve(env, lease_id).status_code == 200
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(DEADLINE)

    assert _lease(db, lease_id).state == State.PENDING  # acked, not done
    [kept] = _inbox(db)
    assert "token" not in json.loads(kept.body)  # Slack's verification token is not stored

    fake.delay(SLOW, 0)
    env = {**env, "PORT": str(free_port())}
    survivor = _serve(env)
    try:
        wait_healthy(int(env["PORT"]), survivor)
        deadline = time.monotonic() + DEADLINE
        while _inbox(db) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.killpg(survivor.pid, signal.SIGTERM)
        survivor.wait(DEADLINE)

    assert _inbox(db) == []
    assert _lease(db, lease_id).state != State.PENDING
    assert _approvals(db, lease_id) == [(GROUP_REVIEWER, "ok")]
    db.dispose()


def test_a_click_whose_replica_is_alive_but_slow_is_not_taken_over(
    fake: FakeSlack, database_url: str
) -> None:
    """The work waits three claim periods on Slack; the replica renews its claim meanwhile,
    so its own sweeper does not do the click a second time."""
    db = Database(database_url)
    lease_id = _filed(db)
    fake.set_usergroup(GROUP, [GROUP_REVIEWER])
    fake.delay(SLOW, 6)
    env = _env(fake, database_url)
    replica = _serve(env)
    try:
        wait_healthy(int(env["PORT"]), replica)
        assert _approve(env, lease_id).status_code == 200
        deadline = time.monotonic() + DEADLINE
        while _inbox(db) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.killpg(replica.pid, signal.SIGTERM)
        replica.wait(DEADLINE)

    assert _inbox(db) == []
    assert _approvals(db, lease_id) == [(GROUP_REVIEWER, "ok")]
    db.dispose()


def _filed(db: Database) -> int:
    now = datetime.now(UTC)
    filed = request(Lab(db, SimulatedProvider(db), None, roles=ROLES), OWNER, request_input(), now)
    assert filed.ok, filed.message
    return filed.lease_id


def _env(fake: FakeSlack, database_url: str) -> dict[str, str]:
    return serve_env(
        fake,
        database_url,
        free_port(),
        LABBOT_REVIEWER_GROUP=GROUP,
        LABBOT_CLAIM_FOR="2s",
        LABBOT_SWEEP_INTERVAL="1s",
        WEB_CONCURRENCY="1",
    )


def _approve(env: dict[str, str], lease_id: int):
    sender = SlackSender(f"http://127.0.0.1:{env['PORT']}/slack/events", SECRET)
    return sender.block_action(
        f"{cards.APPROVE}:{lease_id}",
        str(lease_id),
        GROUP_REVIEWER,
        channel_id="C0REVIEW",
        message_ts="1700000000.000100",
    )


def _approvals(db: Database, lease_id: int) -> list[tuple[str, str]]:
    with db.read() as session:
        rows = session.exec(
            select(AuditEvent).where(
                AuditEvent.lease_id == lease_id, AuditEvent.action == "approve"
            )
        ).all()
    return [(a.actor, a.outcome) for a in rows]


def _serve(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # gunicorn's arbiter, its worker and the sweeper: one group
    )


def _lease(db: Database, lease_id: int) -> Lease:
    with db.read() as session:
        return session.get(Lease, lease_id)


def _inbox(db: Database) -> list[InboxItem]:
    with db.read() as session:
        return list(session.exec(select(InboxItem)).all())
