"""What Slack was told labbot has is done exactly once: kept in the database before the ack,
done by a worker, taken over by another worker when the one doing it dies, refused as done when
a second run tries it, kept once when Slack delivers it twice; an ack that cannot keep its
request within a second (SQLite busy with a sweep) is still answered in time, and the work done
in process."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlmodel import col, func, select

from bot.app import build_context
from bot.blocks import cards, dms, modals
from bot.inbox import KEEP_WAIT, MAX_ATTEMPTS, claim_due, keep_all
from bot.work import run, take_over
from commands.lab import Lab
from commands.request import request
from commands.states import State
from fakes.keys import public_key
from fakes.slack import FakeSlack
from fakes.slack_sender import SlackSender, field
from metal.simulated import SimulatedProvider
from storage.db import Database
from storage.models import AuditEvent, CoOwner, InboxItem, Lease, SshKey
from tests.bot.conftest import (
    INLINE,
    MEMBERS,
    SECRET,
    Slack,
    active_lease,
    file_request,
    lease_id_in,
    serve,
    settings_for,
)
from tests.bot.test_commands import request_values
from tests.bot.test_serve import DEADLINE, free_port, serve_env, wait_healthy
from tests.conftest import OTHER, OWNER, REVIEWER, ROLES, Clock, request_input

GROUP, GROUP_REVIEWER = "S0REVIEWERS", "U0GROUPREV"
SLOW = "usergroups.users.list"  # the first thing the click's work asks Slack: who reviews
CAROL = MEMBERS["carol"]
SECOND_KEY = public_key("other", "other@laptop")


# -- a worker killed after the ack ---------------------------------------------------------------


def test_a_click_acked_by_a_replica_killed_before_doing_it_is_done_by_another(
    fake: FakeSlack, database_url: str
) -> None:
    """The doomed replica's worker is busy with the click (its work waits on Slack) when the
    whole replica is killed; the next replica's worker takes it over once its claim lapses."""
    db = Database(database_url)
    lease_id = _filed(db)
    fake.set_usergroup(GROUP, [GROUP_REVIEWER])
    fake.delay(SLOW, DEADLINE)  # the doomed replica's work waits here until it is killed
    env = _env(fake, database_url)
    doomed = _serve(env)
    try:
        wait_healthy(int(env["PORT"]), doomed)
        assert _approve(env, lease_id).status_code == 200
        _wait_for(lambda: _claimed(db), "the doomed replica's worker to claim the click")
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(DEADLINE)

    assert _lease(db, lease_id).state == State.PENDING  # acked, not done
    [kept] = _inbox(db)
    assert "token" not in json.loads(kept.body)  # Slack's verification token is not stored

    fake.delay(SLOW, 0)
    env = {**env, "PORT": str(free_port())}
    _serve_until_all_done(env, db)

    assert _lease(db, lease_id).state != State.PENDING
    assert _approvals(db, lease_id) == [(GROUP_REVIEWER, "ok")]
    db.dispose()


def test_writes_acked_by_a_replica_killed_before_any_work_are_each_done_once_by_the_next(
    fake: FakeSlack, database_url: str
) -> None:
    """A replica whose web process acked a filed request, a submitted form, a denial with its
    reason and a saved key, and was killed before a worker did any of them: the next replica
    does each, once."""
    db = Database(database_url)
    pending = _filed(db)
    env = _env(fake, database_url, LABBOT_WORKERS="0")  # the web process only keeps and acks
    doomed = _serve(env)
    sender = SlackSender(
        f"http://127.0.0.1:{env['PORT']}/slack/events", SECRET, response_url_base=fake
    )
    try:
        wait_healthy(int(env["PORT"]), doomed)
        for answer in (
            sender.slash_command(text=INLINE, user_id=OTHER),
            sender.view_submission(modals.REQUEST, request_values(), OTHER),
            sender.view_submission(
                modals.DENY,
                {"reason": {"value": field("not open source")}},
                REVIEWER,
                private_metadata=f"lease:{pending}",
            ),
            sender.slash_command(text=f"keys add {SECOND_KEY}", user_id=OTHER),
        ):
            assert answer.status_code == 200
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(DEADLINE)
    assert len(_inbox(db)) == 4 and fake.calls("response_url") == []

    _serve_until_all_done({**env, "PORT": str(free_port()), "LABBOT_WORKERS": "1"}, db)

    assert _count(db, Lease, Lease.owner == OTHER) == 2
    assert _lease(db, pending).state == State.DENIED
    assert _audits(db, "deny") == [(REVIEWER, "ok")]
    assert _count(db, SshKey, SshKey.user == OTHER) == 1
    told = [c.params.get("text", "") for c in fake.calls("response_url")]
    assert sum("filed" in t for t in told) == 1 and sum("Saved" in t for t in told) == 1
    db.dispose()


def test_a_click_whose_worker_is_alive_but_slow_is_not_taken_over(
    fake: FakeSlack, database_url: str
) -> None:
    """The work waits three claim periods on Slack; the worker renews its claim meanwhile, so
    no other worker does the click a second time."""
    db = Database(database_url)
    lease_id = _filed(db)
    fake.set_usergroup(GROUP, [GROUP_REVIEWER])
    fake.delay(SLOW, 6)
    env = _env(fake, database_url, LABBOT_WORKERS="2")
    _serve_until_all_done(env, db, click=lambda: _approve(env, lease_id))

    assert _approvals(db, lease_id) == [(GROUP_REVIEWER, "ok")]
    db.dispose()


# -- every kind of write, once -------------------------------------------------------------------


def test_every_kind_of_write_is_done_once_however_many_runs_try_it(
    slack: Slack, db: Database, clock: Clock
) -> None:
    """Each write is done by the first run; a second run of the same kept request (a worker
    whose claim lapsed while it was slow) is refused as done and writes nothing, and once done
    no worker claims it again."""
    pending = file_request(slack)
    shared = active_lease(slack)
    slack.ctx.works_here = False  # as a web process of `labbot serve`: it keeps and acks
    extended_before = slack.lease(shared).extended_s
    send: list[Callable[[], Any]] = [
        lambda: slack.command(INLINE, OTHER),
        lambda: slack.sender.view_submission(modals.REQUEST, request_values(), OTHER),
        lambda: slack.sender.view_submission(
            modals.DENY,
            {"reason": {"value": field("not open source")}},
            REVIEWER,
            private_metadata=f"lease:{pending}",
        ),
        lambda: slack.command(f"extend {shared} 12h", OWNER),
        lambda: slack.click(dms.EXTEND, f"{shared}-12h", OWNER),
        lambda: slack.command(f"keys add {SECOND_KEY}", OTHER),
        lambda: slack.sender.view_submission(
            modals.SHARE,
            {
                "co_owners": {
                    modals.VALUE: {"type": "multi_users_select", "selected_users": [CAROL]}
                }
            },
            OWNER,
            private_metadata=str(shared),
        ),
    ]
    for sent in send:
        assert sent().status_code == 200
    slack.fake.reset()

    items = claim_due(slack.ctx.lab, clock(), 50)
    assert len(items) == len(send)
    for item in items:
        run(slack.ctx, item)
    for item in items:  # a second worker, whose claim had lapsed meanwhile
        run(slack.ctx, item)
    assert take_over(slack.ctx, clock.advance(minutes=5)) == 0

    assert _count(db, Lease, Lease.owner == OTHER) == 2
    assert _audits(db, "deny") == [(REVIEWER, "ok")]
    assert slack.lease(shared).extended_s - extended_before == timedelta(hours=24).total_seconds()
    assert _count(db, SshKey, SshKey.user == OTHER) == 1
    assert _count(db, CoOwner, CoOwner.lease_id == shared) == 1
    assert len(slack.audits("share")) == 1
    replies = slack.replies()  # filed, extended twice, key saved: each told once
    assert len(replies) == 4 and sum(r.startswith("Saved") for r in replies) == 1
    assert _undone(db) == 0


def test_a_worker_doing_many_requests_starts_no_thread_per_request(
    slack: Slack, clock: Clock
) -> None:
    """Each kept request runs on a copy of the worker's context; a copy built by
    `dataclasses.replace` started a keeper thread of its own that nothing stopped, so a worker
    grew one idle thread (and its memory) per request it did."""
    slack.ctx.works_here = False
    keepers = _keepers()
    for _ in range(25):
        assert slack.command("list", OWNER).status_code == 200
    items = claim_due(slack.ctx.lab, clock(), 50)
    for item in items:
        run(slack.ctx, item)

    assert len(items) == 25 and len(slack.replies()) == 25
    assert _keepers() == keepers


def _keepers() -> int:
    return sum(thread.name == "inbox-keeper" for thread in threading.enumerate())


def test_a_delivery_slack_repeats_is_kept_and_done_once(slack: Slack, db: Database) -> None:
    """Slack sends the same request again (`X-Slack-Retry-Num`): acknowledged again, done once."""
    fields = {
        "token": "verification-token",
        "team_id": "T0LAB",
        "user_id": OWNER,
        "channel_id": "C1",
        "command": "/lab",
        "text": INLINE,
        "response_url": slack.fake.response_url("commands-1"),
        "trigger_id": "1.1700000000.repeated",
    }
    body = urlencode(fields).encode()
    for retry in (None, "1", "2"):
        headers = {"X-Slack-Retry-Num": retry, "X-Slack-Retry-Reason": "http_timeout"}
        answer = slack.sender.post(
            body, "application/x-www-form-urlencoded", headers=headers if retry else None
        )
        assert answer.status_code == 200
        slack.settle()

    assert _count(db, Lease, Lease.owner == OWNER) == 1
    [told] = slack.replies()
    assert slack.lease(lease_id_in(told)).owner == OWNER
    assert _count(db, InboxItem) == 1


# -- SQLite's write lock taken by a sweep --------------------------------------------------------


def test_an_ack_does_not_wait_behind_a_long_sqlite_write_and_the_work_is_done_in_process(
    fake: FakeSlack, sqlite_db: Database, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process (a sweep pass) holds SQLite's write lock: the request is acknowledged
    within KEEP_WAIT and Slack's three seconds, the log says it is done in process, and it is
    done, once, when the lock is free."""
    for slack in serve(fake, sqlite_db, clock, settings_for(fake)):
        slack.ctx.works_here = False  # a web process: only the fallback works here
        sweep = sqlite3.connect(sqlite_db.path, isolation_level=None)
        sweep.execute("BEGIN IMMEDIATE")
        try:
            with caplog.at_level(logging.WARNING, logger="bot.app"):
                started = time.monotonic()
                answer = slack.sender.slash_command(text=INLINE, user_id=OWNER)
                took = time.monotonic() - started
        finally:
            sweep.execute("ROLLBACK")
            sweep.close()
        assert answer.status_code == 200
        assert KEEP_WAIT <= took < 3
        assert "done in this process instead of by a worker" in caplog.text
        slack.settle()
        assert _count(sqlite_db, Lease, Lease.owner == OWNER) == 1
        assert "filed" in slack.replies()[-1]
        assert _count(sqlite_db, InboxItem) == 0


# -- a taken-over request that cannot be done ----------------------------------------------------


def test_a_taken_over_click_that_fails_is_told_to_its_person(
    fake: FakeSlack, db: Database, clock: Clock
) -> None:
    """The worker that takes the click over cannot read the reviewer group (Slack does not
    answer it in time): the approval is not done, and the reviewer is told so in a DM, once."""
    settings = settings_for(fake, reviewer_group=GROUP)
    fake.set_usergroup(GROUP, [GROUP_REVIEWER])
    for slack in serve(fake, db, clock, settings):
        lease_id = file_request(slack)
        _kept_by_a_worker_that_died(slack, lease_id, GROUP_REVIEWER)
        survivor = build_context(settings, clock=clock, db=db)  # another process: no cache
        survivor.client.timeout = 1
        fake.delay(SLOW, 2)
        try:
            assert take_over(survivor, clock.advance(minutes=3)) == 1
        finally:
            survivor.shutdown()
        assert _dms(slack, GROUP_REVIEWER) == [
            f"Your Approve on request #{lease_id} was acknowledged but could not be done (it "
            "is logged for the admins): try again, or ask an admin if it fails again."
        ]
        assert _undone(db) == 0
        assert slack.lease(lease_id).state == State.PENDING

        fake.delay(SLOW, 0)  # clicking again, as the sentence says, works
        slack.card_click(cards.APPROVE, lease_id, GROUP_REVIEWER)
        assert _approvals(db, lease_id) == [(GROUP_REVIEWER, "ok")]
        assert len(_dms(slack, GROUP_REVIEWER)) == 1


def test_a_click_that_stopped_every_worker_trying_it_is_given_up_and_told(
    slack: Slack, db: Database, clock: Clock
) -> None:
    """Acked, then taken over by workers that died doing it: the last taker gives up instead
    of dying too, and the reviewer learns that it was never done."""
    lease_id = file_request(slack)
    _kept_by_a_worker_that_died(slack, lease_id, REVIEWER)
    for _ in range(MAX_ATTEMPTS - 1):
        assert claim_due(slack.ctx.lab, clock.advance(minutes=3), 50)  # and died doing it

    assert take_over(slack.ctx, clock.advance(minutes=3)) == 1
    assert _dms(slack, REVIEWER) == [
        f"Your Approve on request #{lease_id} was acknowledged but never done: labbot stopped "
        f"{MAX_ATTEMPTS} times while doing it and gave up (it is logged for the admins), so ask "
        "an admin before trying again."
    ]
    assert _undone(db) == 0
    assert slack.lease(lease_id).state == State.PENDING


def _kept_by_a_worker_that_died(slack: Slack, lease_id: int, reviewer: str) -> None:
    """A click on the request's card, kept before the ack (bot.inbox) as Slack sent it, and
    claimed by a worker that died before doing it."""
    channel, ts = slack.card_ref(lease_id)
    click = slack.sender.click_payload(
        f"{cards.APPROVE}:{lease_id}", str(lease_id), reviewer, channel_id=channel, message_ts=ts
    )
    keep_all(slack.ctx.lab, [(click, True)], slack.clock(), wait=KEEP_WAIT)


def _dms(slack: Slack, user: str) -> list[str]:
    return [m["text"] for m in slack.dms(user)]


def _filed(db: Database) -> int:
    now = datetime.now(UTC)
    filed = request(Lab(db, SimulatedProvider(db), None, roles=ROLES), OWNER, request_input(), now)
    assert filed.ok, filed.message
    return filed.lease_id


def _env(fake: FakeSlack, database_url: str, **changes: str) -> dict[str, str]:
    return serve_env(
        fake,
        database_url,
        free_port(),
        LABBOT_REVIEWER_GROUP=GROUP,
        LABBOT_REVIEWERS=REVIEWER,
        LABBOT_CLAIM_FOR="2s",
        LABBOT_SWEEP_INTERVAL="1s",
        WEB_CONCURRENCY="1",
        **changes,
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


def _audits(db: Database, action: str) -> list[tuple[str, str]]:
    with db.read() as session:
        rows = session.exec(select(AuditEvent).where(AuditEvent.action == action)).all()
    return [(a.actor, a.outcome) for a in rows]


def _serve_until_all_done(
    env: dict[str, str], db: Database, click: Callable[[], Any] | None = None
) -> None:
    """Run a replica (after its one click, if given) until everything kept is done or the
    deadline passes, then stop it."""
    replica = _serve(env)
    try:
        wait_healthy(int(env["PORT"]), replica)
        if click is not None:
            assert click().status_code == 200
        _wait_for(lambda: _undone(db) == 0, "every kept request to be done")
    finally:
        os.killpg(replica.pid, signal.SIGTERM)
        replica.wait(DEADLINE)


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"waited {DEADLINE} s for {what}"
        time.sleep(0.1)


def _serve(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # gunicorn's arbiter and every process it runs: one group
    )


def _lease(db: Database, lease_id: int) -> Lease:
    with db.read() as session:
        return session.get(Lease, lease_id)


def _inbox(db: Database) -> list[InboxItem]:
    with db.read() as session:
        return list(session.exec(select(InboxItem)).all())


def _undone(db: Database) -> int:
    return _count(db, InboxItem, col(InboxItem.done_at).is_(None))


def _claimed(db: Database) -> bool:
    return _count(db, InboxItem, col(InboxItem.claimed_by).is_not(None)) > 0


def _count(db: Database, model: type, *where: Any) -> int:
    with db.read() as session:
        return session.exec(select(func.count()).select_from(model).where(*where)).one()
