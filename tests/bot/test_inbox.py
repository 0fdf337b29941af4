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
    filed = request(
        Lab(db, SimulatedProvider(db), None, roles=ROLES), OWNER, request_input(), _now()
    )
    fake.set_usergroup(GROUP, [GROUP_REVIEWER])
    fake.delay(SLOW, DEADLINE)  # the doomed replica's work waits here until it is killed
    env = serve_env(
        fake,
        database_url,
        free_port(),
        LABBOT_REVIEWER_GROUP=GROUP,
        LABBOT_CLAIM_FOR="2s",
        LABBOT_SWEEP_INTERVAL="1s",
        WEB_CONCURRENCY="1",
    )
    doomed = _serve(env)
    try:
        wait_healthy(int(env["PORT"]), doomed)
        sender = SlackSender(f"http://127.0.0.1:{env['PORT']}/slack/events", SECRET)
        clicked = sender.block_action(
            f"{cards.APPROVE}:{filed.lease_id}",
            str(filed.lease_id),
            GROUP_REVIEWER,
            channel_id="C0REVIEW",
            message_ts="1700000000.000100",
        )
        assert clicked.status_code == 200
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(DEADLINE)

    assert _lease(db, filed.lease_id).state == State.PENDING  # acked, not done
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
    assert _lease(db, filed.lease_id).state != State.PENDING
    with db.read() as session:
        approvals = session.exec(
            select(AuditEvent).where(
                AuditEvent.lease_id == filed.lease_id, AuditEvent.action == "approve"
            )
        ).all()
    assert [(a.actor, a.outcome) for a in approvals] == [(GROUP_REVIEWER, "ok")]
    db.dispose()


def _now() -> datetime:
    return datetime.now(UTC)


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
