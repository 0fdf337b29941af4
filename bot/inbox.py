"""What Slack was told labbot has: kept before the ack, done by a worker, exactly once.

The web process only verifies a request (bot.gate), keeps what Slack sent here and acks (and
opens a form, whose trigger expires); the work (the use case, the answer, App Home) is done by a
worker process that claims the row (bot.worker, bot.work). A worker that dies mid-work leaves
its claim to lapse, and another takes the row over, as storage.claims shares due leases.

Exactly once. A row's `key` is what Slack sent that names the delivery (an event's id, the
trigger's id, else a hash of the body), so a delivery Slack repeats (`X-Slack-Retry-Num`) is
kept once. The work's first write transaction also sets the row's `done_at` (`Once`), a
conditional update checked by its row count: a second run, by a worker that took over a claim
that lapsed, finds it set and is refused as done with nothing written. Done rows stay a day, to
recognise a late repeat, and the sweep prunes them (`prune`).

On SQLite a write waits for the one write lock, which a sweep pass may hold for seconds: the
web process waits at most `KEEP_WAIT` for it, and past that acks anyway and does the work in
its own process (logged), so that no ack passes Slack's three seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from bot.listeners.reply import button_of, user_of
from commands.lab import Lab
from commands.notices import Kind, enqueue, owner
from storage.claims import claim
from storage.db import Database
from storage.locks import insert_new
from storage.models import InboxItem

log = logging.getLogger(__name__)

BATCH = 100  # requests kept in one transaction at most
KEEP_WAIT = 1.0  # seconds an ack may wait to keep its request; Slack allows 3 for all of it
RETENTION = timedelta(days=1)  # done rows kept to recognise a delivery Slack repeats
MAX_ATTEMPTS = 3  # a request whose work killed its worker this often is given up, and logged
UNSAFE_FIELDS = ("token",)  # Slack's verification token: a secret, never stored

Body = dict[str, Any]


@dataclass(frozen=True)
class Kept:
    id: int
    body: Body
    attempts: int


class AlreadyDone(Exception):
    """Another run of the same kept request did its work first: nothing was written."""


def key_of(body: Body) -> str:
    """What names one delivery of what Slack sent: the same for a repeat, different for any
    other request."""
    if body.get("event_id"):
        return f"event:{body['event_id']}"
    if body.get("trigger_id"):
        return f"trigger:{body['trigger_id']}"
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return "body:" + hashlib.sha256(canonical.encode()).hexdigest()


def keep_all(lab: Lab, asked: list[tuple[Body, bool]], now: datetime, *, wait: float) -> list:
    """Before the acks: what Slack sent, durably, in one transaction; for each (body, claimed)
    its row id, or None when that delivery is already kept (Slack repeated it). `claimed`: this
    process does the work itself, so no worker elsewhere takes it while this process lives.
    Raises storage.db.Busy after `wait`, and then nothing was kept."""
    rows = [
        {
            "key": key_of(body),
            "received_at": now,
            "body": json.dumps({k: v for k, v in body.items() if k not in UNSAFE_FIELDS}),
            "attempts": 1 if claimed else 0,
            "claimed_by": lab.replica if claimed else None,
            "claimed_until": now + lab.policy.claim_for if claimed else None,
        }
        for body, claimed in asked
    ]
    kept = dict(
        lab.db.one_statement(
            wait,
            lambda connection: insert_new(connection, InboxItem, rows, InboxItem.key, InboxItem.id),
        )
    )
    return [kept.pop(row["key"], None) for row in rows]  # a repeat within the batch: None


class Keeper:
    """The acks' group commit. Requests that arrive while one transaction is keeping others are
    kept together in the next, so thirty-two acks at once wait for a couple of transactions
    rather than thirty-two turns at SQLite's one write lock (where a turn lost to another
    process costs the busy handler's sleeps)."""

    def __init__(self, lab: Lab, clock: Callable[[], datetime]) -> None:
        self._lab = lab
        self._clock = clock
        self._asked: queue.SimpleQueue[tuple[Body, bool, Future] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._keeping, name="inbox-keeper", daemon=True)
        self._thread.start()

    def keep(self, body: Body, *, claimed: bool) -> int | None:
        """As `keep_all` for one request; waits for the transaction that keeps it, which waits
        at most KEEP_WAIT for the write lock (after the one before it)."""
        kept: Future = Future()
        self._asked.put((body, claimed, kept))
        return kept.result()

    def _keeping(self) -> None:
        while (first := self._asked.get()) is not None:
            batch = [first]
            while len(batch) < BATCH and not self._asked.empty():
                if (more := self._asked.get()) is None:
                    self._asked.put(None)  # stop after this batch
                    break
                batch.append(more)
            try:
                ids = keep_all(
                    self._lab, [(b, c) for b, c, _ in batch], self._clock(), wait=KEEP_WAIT
                )
            except Exception as error:
                for _, _, kept in batch:
                    kept.set_exception(error)
            else:
                for (_, _, kept), item_id in zip(batch, ids, strict=True):
                    kept.set_result(item_id)

    def stop(self) -> None:
        self._asked.put(None)
        self._thread.join(timeout=5)


def due(lab: Lab, now: datetime) -> bool:
    """Whether any kept request waits for a worker (a read: cheap to ask often)."""
    with lab.db.read() as session:
        return session.exec(select(InboxItem.id).where(*_free(now)).limit(1)).first() is not None


def claim_due(lab: Lab, now: datetime, limit: int, done: Sequence[int] = ()) -> list[Kept]:
    """Up to `limit` kept requests nobody is doing (new, or their worker died), oldest first,
    now claimed by this process; in the same transaction, the requests in `done` (finished by
    this process without a write of their own) are marked done."""
    with lab.db.write() as session:
        if done:
            session.exec(
                update(InboxItem)
                .where(col(InboxItem.id).in_(done), col(InboxItem.done_at).is_(None))
                .values(done_at=now, claimed_by=None, claimed_until=None)
            )
        ids = claim(
            session,
            InboxItem,
            col(InboxItem.done_at).is_(None),
            owner=lab.replica,
            now=now,
            hold=lab.policy.claim_for,
            order_by=[col(InboxItem.id)],
            limit=limit,
            attempts=InboxItem.attempts + 1,
        )
    if not ids:
        return []
    with lab.db.read() as session:  # ours now: read after the commit, the write lock given back
        rows = session.exec(select(InboxItem).where(col(InboxItem.id).in_(ids))).all()
    return [Kept(r.id, json.loads(r.body), r.attempts) for r in sorted(rows, key=lambda r: r.id)]


def _free(now: datetime) -> tuple:
    return (
        col(InboxItem.done_at).is_(None),
        (col(InboxItem.claimed_until).is_(None)) | (col(InboxItem.claimed_until) <= now),
    )


def mark_done(session: Session, item_id: int, now: datetime) -> bool:
    """Set the row done in this transaction; False when it was done already."""
    return (
        session.exec(
            update(InboxItem)
            .where(col(InboxItem.id) == item_id, col(InboxItem.done_at).is_(None))
            .values(done_at=now, claimed_by=None, claimed_until=None)
        ).rowcount
        == 1
    )


def finished(lab: Lab, item_id: int, now: datetime) -> None:
    """The work is over (a read-only request, or one whose first write marked it already)."""
    with lab.db.write() as session:
        mark_done(session, item_id, now)


def not_done(lab: Lab, item: Kept, sentence: str, now: datetime) -> None:
    """Close a kept request that could not be done, and queue the DM that tells its person
    so, in one transaction: they saw it acknowledged, and a crash in between must leave both or
    neither. Only the run whose update closed the row tells."""
    user = user_of(item.body)
    clicked_at = str(button_of(item.body).get("action_ts") or item.body.get("trigger_id") or "")
    with lab.db.write() as session:
        if mark_done(session, item.id, now) and user:  # clicked_at: another failure is told too
            enqueue(session, Kind.CLICK_FAILED, owner(user), sentence, now, clicked_at=clicked_at)


class Once:
    """The database as one run of a kept request's work sees it: its first write transaction
    also marks the request done, or is refused with `AlreadyDone` if another run did. Every
    other use of the database passes through unchanged."""

    def __init__(self, db: Database, item_id: int, now: datetime) -> None:
        self._db = db
        self._item_id = item_id
        self._now = now
        self.marked = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    @contextmanager
    def write(self, wait: float | None = None) -> Iterator[Session]:
        with self._db.write(wait) as session:
            if not self.marked and not mark_done(session, self._item_id, self._now):
                raise AlreadyDone(f"kept request {self._item_id}")
            yield session
        self.marked = True


def renew(lab: Lab, now: datetime) -> None:
    """This process is alive: its claimed requests stay its own for another `claim_for`."""
    with lab.db.write() as session:
        session.execute(
            update(InboxItem)
            .where(col(InboxItem.claimed_by) == lab.replica, col(InboxItem.done_at).is_(None))
            .values(claimed_until=now + lab.policy.claim_for)
        )


def prune(lab: Lab, now: datetime) -> int:
    """Forget requests done more than `RETENTION` ago (the sweep's share of the inbox)."""
    with lab.db.write() as session:
        return session.exec(
            delete(InboxItem).where(col(InboxItem.done_at) < now - RETENTION)
        ).rowcount


class Renewal:
    """A working process's claims renewed every third of `claim_for` until it stops, so that
    only a dead process's claims lapse (a long queue of work after a burst is no death)."""

    def __init__(self, lab: Lab, clock: Callable[[], datetime]) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(lab, clock), name="inbox-renewal", daemon=True
        )
        self._thread.start()

    def _run(self, lab: Lab, clock: Callable[[], datetime]) -> None:
        every = lab.policy.claim_for.total_seconds() / 3
        while not self._stopping.wait(every):
            try:
                renew(lab, clock())
            except Exception:
                log.exception("renewing the kept requests failed; the next round tries again")

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
