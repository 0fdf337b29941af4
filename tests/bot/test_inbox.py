"""A click acknowledged by a replica that is killed before doing it is still done, once: kept
in the database before the ack, taken over by another replica's sweeper after its claim lapses;
and one the taking over cannot do is told to its person, who saw it acknowledged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlmodel import select

from bot.app import build_context
from bot.blocks import cards
from bot.inbox import MAX_ATTEMPTS, claim_lapsed, keep
from bot.takeover import take_over
from commands.lab import Lab
from commands.request import request
from commands.states import State
from fakes.slack import FakeSlack
from fakes.slack_sender import SlackSender
from metal.simulated import SimulatedProvider
from storage.db import Database
from storage.models import AuditEvent, InboxItem, Lease
from tests.bot.conftest import SECRET, Slack, file_request, serve, settings_for
from tests.bot.test_serve import DEADLINE, free_port, serve_env, wait_healthy
from tests.conftest import OWNER, REVIEWER, ROLES, Clock, request_input

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
    _serve_until_inbox_empty(env, db)

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
    _serve_until_inbox_empty(env, db, click=lambda: _approve(env, lease_id))

    assert _inbox(db) == []
    assert _approvals(db, lease_id) == [(GROUP_REVIEWER, "ok")]
    db.dispose()


def test_a_taken_over_click_that_fails_is_told_to_its_person(
    fake: FakeSlack, db: Database, clock: Clock
) -> None:
    """The replica that takes the click over cannot read the reviewer group (Slack does not
    answer it in time): the approval is not done, and the reviewer is told so in a DM, once."""
    settings = settings_for(fake, reviewer_group=GROUP)
    fake.set_usergroup(GROUP, [GROUP_REVIEWER])
    for slack in serve(fake, db, clock, settings):
        lease_id = file_request(slack)
        _kept_by_a_replica_that_died(slack, lease_id, GROUP_REVIEWER)
        survivor = build_context(settings, clock=clock, db=db)  # another process: no cache
        survivor.client.timeout = 1
        fake.delay(SLOW, 2)
        try:
            assert take_over(survivor, clock.advance(minutes=3)) == 0
        finally:
            survivor.shutdown()
        assert _dms(slack, GROUP_REVIEWER) == [
            f"Your Approve on request #{lease_id} was acknowledged but could not be done (it "
            "is logged for the admins): click again, or ask an admin if it fails again."
        ]
        assert _inbox(db) == []
        assert slack.lease(lease_id).state == State.PENDING

        fake.delay(SLOW, 0)  # clicking again, as the sentence says, works
        slack.card_click(cards.APPROVE, lease_id, GROUP_REVIEWER)
        assert _approvals(db, lease_id) == [(GROUP_REVIEWER, "ok")]
        assert len(_dms(slack, GROUP_REVIEWER)) == 1


def test_a_click_that_stopped_every_replica_trying_it_is_given_up_and_told(
    slack: Slack, db: Database, clock: Clock
) -> None:
    """Acked by a replica that died, then taken over by replicas that died doing it: the last
    taker gives up instead of dying too, and the reviewer learns that it was never done."""
    lease_id = file_request(slack)
    _kept_by_a_replica_that_died(slack, lease_id, REVIEWER)
    for _ in range(MAX_ATTEMPTS - 1):
        assert claim_lapsed(slack.ctx.lab, clock.advance(minutes=3))  # and died doing it

    assert take_over(slack.ctx, clock.advance(minutes=3)) == 0
    assert _dms(slack, REVIEWER) == [
        f"Your Approve on request #{lease_id} was acknowledged but never done: labbot stopped "
        f"{MAX_ATTEMPTS} times while doing it and gave up (it is logged for the admins), so ask "
        "an admin before clicking again."
    ]
    assert _inbox(db) == []
    assert slack.lease(lease_id).state == State.PENDING


def _kept_by_a_replica_that_died(slack: Slack, lease_id: int, reviewer: str) -> None:
    """A click on the request's card, kept before the ack (bot.inbox) as Slack sent it, by a
    replica that died before doing it."""
    channel, ts = slack.card_ref(lease_id)
    click = slack.sender.click_payload(
        f"{cards.APPROVE}:{lease_id}", str(lease_id), reviewer, channel_id=channel, message_ts=ts
    )
    keep(slack.ctx.lab, click, slack.clock())


def _dms(slack: Slack, user: str) -> list[str]:
    return [m["text"] for m in slack.dms(user)]


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


def _serve_until_inbox_empty(
    env: dict[str, str], db: Database, click: Callable[[], Any] | None = None
) -> None:
    """Run a replica (after its one click, if given) until the inbox is empty or the deadline
    passes, then stop it."""
    replica = _serve(env)
    try:
        wait_healthy(int(env["PORT"]), replica)
        if click is not None:
            assert click().status_code == 200
        deadline = time.monotonic() + DEADLINE
        while _inbox(db) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.killpg(replica.pid, signal.SIGTERM)
        replica.wait(DEADLINE)


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
