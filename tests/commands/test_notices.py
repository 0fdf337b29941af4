"""The outbox: a Slack outage delays a message but never loses it, never sends it twice and never
undoes the state change it reports."""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta

from commands.notices import Kind, Message, deliver
from commands.request import request
from commands.review import approve
from commands.states import State
from commands.sweep import sweep
from fakes.notifier import RecordingNotifier
from tests.commands.helpers import file, lease, notices
from tests.conftest import OWNER, REVIEWER, request_input


class Flaky(RecordingNotifier):
    """Refuses every message while `down` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.attempts = 0

    def deliver(self, message: Message) -> str | None:
        self.attempts += 1
        if self.down:
            raise ConnectionError("slack is down")
        return super().deliver(message)


def test_a_failing_notifier_never_undoes_the_state_change(lab, clock):
    lab.notifier = Flaky()
    outcome = request(lab, OWNER, request_input(), clock.now)
    assert outcome.ok
    assert approve(lab, REVIEWER, outcome.lease_id, clock.now).ok
    assert lease(lab.db, outcome.lease_id).state == State.PROVISIONING
    assert lab.notifier.messages == []
    waiting = [n for n in notices(lab.db) if n.delivered_at is None]
    assert len(waiting) == 5
    assert all(n.last_error == "ConnectionError: slack is down" for n in waiting)


def test_the_sweep_delivers_later_exactly_once(lab, clock):
    lab.notifier = Flaky()
    lease_id = file(lab, clock)
    sweep(lab, clock.advance(seconds=1))  # still down: backoff grows
    lab.notifier.down = False
    sweep(lab, clock.advance(seconds=2))  # too early for the retry
    assert lab.notifier.messages == []
    sweep(lab, clock.advance(minutes=1))
    kinds = [m.kind for m in lab.notifier.messages]
    assert kinds == [Kind.REQUEST_RECEIVED, Kind.REVIEW_CARD]
    assert lab.notifier.messages[0].lease_id == lease_id
    for _ in range(3):
        sweep(lab, clock.advance(hours=1))
    assert len(lab.notifier.messages) == 2
    assert all(n.delivered_at is not None and n.retry_at is None for n in notices(lab.db))
    assert [n.ref for n in notices(lab.db)] == [f"rec-{m.id}" for m in lab.notifier.messages]


def test_two_deliverers_at_once_send_each_notice_once(lab, clock):
    lab.notifier = Flaky()
    for _ in range(3):
        file(lab, clock)
    lab.notifier.down = False
    later = clock.now + timedelta(minutes=5)
    barrier = threading.Barrier(4)

    def run():
        barrier.wait()
        deliver(lab.db, lab.notifier, later, owner=lab.replica)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [m.id for m in lab.notifier.messages]
    assert sorted(ids) == sorted(set(ids))
    assert len(ids) == 6


def test_a_deliverer_that_died_mid_send_is_retried_after_its_claim_lapses(lab, clock):
    class Dies(RecordingNotifier):
        def deliver(self, message):
            raise SystemExit("process killed")

    lab.notifier = Dies()
    with contextlib.suppress(SystemExit):
        file(lab, clock)
    lab.notifier = RecordingNotifier()
    sweep(lab, clock.now + timedelta(seconds=30))
    assert lab.notifier.messages == []  # the chunk it claimed waits for the claim to lapse
    sweep(lab, clock.now + timedelta(seconds=61))
    assert [m.kind for m in lab.notifier.messages] == [Kind.REQUEST_RECEIVED, Kind.REVIEW_CARD]
