"""The outbox: a Slack outage delays a message but never loses it, never sends it twice and never
undoes the state change it reports."""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime, timedelta

from sqlalchemy import event

from commands.notices import (
    REVIEW,
    REVIEW_EDITS,
    Kind,
    Message,
    Rate,
    Throttled,
    deliver,
    enqueue,
    owner,
)
from commands.request import request
from commands.review import approve
from commands.states import State
from commands.sweep import sweep
from fakes.notifier import RecordingNotifier
from tests.commands.helpers import file, lease, notices
from tests.conftest import OWNER, REVIEWER, START, Clock, make_lab, request_input


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


# -- pacing ------------------------------------------------------------------------------------


class Paced(RecordingNotifier):
    """A notifier whose every audience is a lane of `burst` messages, then one a second, and
    which the far end throttles on demand; it records when (on the pass's clock) each went."""

    def __init__(self, clock: Clock, burst: int = 2) -> None:
        super().__init__()
        self.clock = clock
        self.burst = burst
        self.sent_at: dict[str, list[tuple[datetime, str]]] = {}
        self.throttle: dict[str, timedelta] = {}  # lane -> the next message's Retry-After

    def lanes(self, message: Message) -> tuple[Rate, ...]:
        return (Rate(self._lane(message), timedelta(seconds=1), self.burst),)

    @staticmethod
    def _lane(message: Message) -> str:
        return "edits" if message.update_ref else f"post:{message.audience}"

    def deliver(self, message: Message) -> str | None:
        lane = self._lane(message)
        if lane in self.throttle:
            raise Throttled(lane, self.throttle.pop(lane))
        self.sent_at.setdefault(message.audience, []).append((self.clock.now, message.text))
        return super().deliver(message)


def queue(lab, clock, audiences: list[str], each: int) -> None:
    with lab.db.write() as session:
        for n in range(each):
            for audience in audiences:
                enqueue(session, Kind.SHARED, audience, f"{audience} #{n}", clock.now)


def deliver_every_second(lab, clock, seconds: int) -> list[int]:
    return [
        deliver(lab.db, lab.notifier, clock.advance(seconds=1), owner=lab.replica)
        for _ in range(seconds)
    ]


def test_each_audience_goes_at_its_lanes_pace_and_in_order(lab, clock):
    lab.notifier = Paced(clock)
    audiences = [owner("U1"), owner("U2"), REVIEW]
    queue(lab, clock, audiences, each=5)
    assert deliver(lab.db, lab.notifier, clock.now, owner=lab.replica) == 6  # two each at once
    assert deliver(lab.db, lab.notifier, clock.now, owner=lab.replica) == 0
    assert deliver_every_second(lab, clock, 4) == [3, 3, 3, 0]
    start = START
    for audience in audiences:
        sent = lab.notifier.sent_at[audience]
        assert [text for _, text in sent] == [f"{audience} #{n}" for n in range(5)]
        assert [at - start for at, _ in sent] == [timedelta(seconds=s) for s in (0, 0, 1, 2, 3)]


def test_a_throttled_lane_holds_its_audience_alone_until_retry_after(lab, clock):
    lab.notifier = Paced(clock)
    lab.notifier.throttle[f"post:{REVIEW}"] = timedelta(seconds=30)
    queue(lab, clock, [REVIEW, owner("U1")], each=3)
    assert deliver(lab.db, lab.notifier, clock.now, owner=lab.replica) == 2  # U1's burst
    [first] = [n for n in notices(lab.db) if n.audience == REVIEW and n.last_error]
    assert first.retry_at == clock.now + timedelta(seconds=30)
    assert "rate-limited for 30s" in first.last_error

    assert sum(deliver_every_second(lab, clock, 29)) == 1, "only U1's last one"
    assert REVIEW not in lab.notifier.sent_at
    assert deliver_every_second(lab, clock, 3) == [1, 1, 1], "then one a second, no burst"
    assert [t for _, t in lab.notifier.sent_at[REVIEW]] == [f"{REVIEW} #{n}" for n in range(3)]


def test_a_notice_queued_while_its_audience_waits_does_not_overtake(lab, clock):
    lab.notifier = Paced(clock, burst=1)
    queue(lab, clock, [REVIEW], each=2)
    assert deliver(lab.db, lab.notifier, clock.now, owner=lab.replica) == 1
    clock.advance(seconds=0.5)
    with lab.db.write() as session:
        enqueue(session, Kind.SHARED, REVIEW, "late", clock.now)
    assert deliver(lab.db, lab.notifier, clock.now, owner=lab.replica) == 0
    assert deliver_every_second(lab, clock, 2) == [1, 1]
    texts = [t for _, t in lab.notifier.sent_at[REVIEW]]
    assert texts == [f"{REVIEW} #0", f"{REVIEW} #1", "late"]


def test_replicas_delivering_at_once_share_one_pace_and_one_order(lab, clock):
    lab.notifier = Paced(clock, burst=3)
    queue(lab, clock, [REVIEW, owner("U1")], each=6)
    barrier = threading.Barrier(4)

    def replica(name: str) -> None:
        barrier.wait()
        deliver(lab.db, lab.notifier, clock.now, owner=name)

    threads = [threading.Thread(target=replica, args=(f"replica-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {a: len(s) for a, s in lab.notifier.sent_at.items()} == {REVIEW: 3, owner("U1"): 3}
    for i in range(3):
        for name in (f"a-{i}", f"b-{i}"):
            deliver(lab.db, lab.notifier, clock.advance(seconds=0.5), owner=name)
    for audience, sent in lab.notifier.sent_at.items():
        assert [t for _, t in sent] == [f"{audience} #{n}" for n in range(6)]


def test_an_edit_queued_behind_its_waiting_card_edits_that_card(lab, clock):
    lab.notifier = Paced(clock, burst=1)
    with lab.db.write() as session:
        enqueue(session, Kind.ADMIN_ALERT, REVIEW, "before", clock.now)
        enqueue(session, Kind.REVIEW_CARD, REVIEW, "card of #7", clock.now, 7)
        enqueue(session, Kind.CARD_DECIDED, REVIEW, "#7 approved", clock.now, 7)
    assert deliver(lab.db, lab.notifier, clock.now, owner=lab.replica) == 1
    assert deliver_every_second(lab, clock, 1) == [2], "the card, then its edit at once"
    _, card, decided = lab.notifier.messages
    assert (card.text, decided.text) == ("card of #7", "#7 approved")
    assert decided.update_ref == f"rec-{card.id}"


def test_an_edit_of_a_posted_card_does_not_wait_behind_the_cards_still_to_post(lab, clock):
    lab.notifier = Paced(clock, burst=1)
    with lab.db.write() as session:
        for n in range(10):
            enqueue(session, Kind.REVIEW_CARD, REVIEW, f"card of #{n}", clock.now, n)
    assert deliver(lab.db, lab.notifier, clock.now, owner=lab.replica) == 1
    with lab.db.write() as session:
        enqueue(session, Kind.CARD_DECIDED, REVIEW, "#0 approved", clock.now, 0)
        enqueue(session, Kind.CARD_DECIDED, REVIEW, "#5 approved", clock.now, 5)
    assert deliver_every_second(lab, clock, 1) == [2], "card #1, and #0's edit at once"
    assert deliver_every_second(lab, clock, 9) == [1, 1, 1, 2, 1, 1, 1, 1, 0]
    sent = {m.text: m for m in lab.notifier.messages}
    assert [t for t in sent if "approved" in t] == ["#0 approved", "#5 approved"]
    assert sent["#0 approved"].update_ref == f"rec-{sent['card of #0'].id}"
    assert sent["#5 approved"].update_ref == f"rec-{sent['card of #5'].id}", "never a post"
    edits = [at - START for at, _ in lab.notifier.sent_at[REVIEW_EDITS]]
    assert edits == [timedelta(seconds=1), timedelta(seconds=5)]


def test_the_outbox_finds_due_notices_by_their_index_not_among_all_ever_sent(sqlite_db, clock):
    """The outbox keeps every delivered notice: the sweep's delivery must read the due ones by
    the `retry_at` index, not walk the whole table in id order (SQLite's plan, asked of every
    statement the delivery sent)."""
    lab = make_lab(sqlite_db, clock)
    with sqlite_db.write() as session:
        for n in range(3):
            enqueue(session, Kind.REMINDER, owner(f"user{n}"), f"reminder {n}", clock.now)
    sent: list[tuple[str, object]] = []

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append((statement, parameters))

    event.listen(sqlite_db.engine, "before_cursor_execute", seen)
    try:
        assert deliver(sqlite_db, lab.notifier, clock.now, owner="replica-1") == 3
    finally:
        event.remove(sqlite_db.engine, "before_cursor_execute", seen)
    reads = [(s, p) for s, p in sent if s.lstrip().startswith("SELECT") and "FROM notice" in s]
    assert reads
    with sqlite_db.engine.connect() as conn:
        plans = [
            row[3]
            for statement, parameters in reads
            for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        ]
    assert not [step for step in plans if step.startswith("SCAN notice")], plans
