"""Clicks that outlive the replica that acknowledged them.

bolt answers Slack when a listener acks, and the work runs afterwards: a replica killed in
between would leave a reviewer's Approve acknowledged but never done, the card still asking.
So a click whose work is safe to do again (deciding a request or an extension, releasing,
cancelling: each a conditional change that a second run refuses as already done) is kept in the
database before the ack, claimed by the replica that acks it, and deleted when its work is done.
While that replica lives it renews its claims (`Renewal`), however long its queue of work; a
kept click whose claim lapsed belongs to a replica that died: any replica's sweeper claims it,
as storage.claims claims due leases, and does the work. Work that is not safe to repeat (filing a
request, an extension by a button) is not kept: a replica dying there loses it, as before.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import col, select

from bot.listeners.reply import button_of, user_of
from commands.lab import Lab
from commands.notices import Kind, enqueue, owner
from storage.claims import claim
from storage.models import InboxItem

log = logging.getLogger(__name__)

BATCH = 50
MAX_ATTEMPTS = 3  # a click whose work killed its replica this often is given up, and logged
UNSAFE_FIELDS = ("token",)  # Slack's verification token: a secret, never stored

Body = dict[str, Any]


@dataclass(frozen=True)
class Kept:
    id: int
    body: Body
    attempts: int


def keep(lab: Lab, body: Body, now: datetime) -> int:
    """Before the ack: the click, claimed by this replica for `claim_for`."""
    stored = {k: v for k, v in body.items() if k not in UNSAFE_FIELDS}
    with lab.db.write() as session:
        item = InboxItem(
            received_at=now,
            body=json.dumps(stored),
            attempts=1,
            claimed_by=lab.replica,
            claimed_until=now + lab.policy.claim_for,
        )
        session.add(item)
        session.flush()
        return item.id


def finished(lab: Lab, item_id: int) -> None:
    with lab.db.write() as session:
        session.exec(delete(InboxItem).where(col(InboxItem.id) == item_id))


def not_done(lab: Lab, item: Kept, sentence: str, now: datetime) -> None:
    """Delete a kept click that could not be done, and queue the DM that tells its person so,
    in one transaction: they saw the click acknowledged, and a crash in between must leave
    both or neither. Only the replica whose delete took the row tells."""
    user = user_of(item.body)
    clicked_at = str(button_of(item.body).get("action_ts", ""))
    with lab.db.write() as session:
        gone = session.exec(delete(InboxItem).where(col(InboxItem.id) == item.id)).rowcount
        if gone == 1 and user:  # clicked_at: the same failure of another click is told too
            enqueue(session, Kind.CLICK_FAILED, owner(user), sentence, now, clicked_at=clicked_at)


def renew(lab: Lab, now: datetime) -> None:
    """This process is alive: its kept clicks stay its own for another `claim_for`."""
    with lab.db.write() as session:
        session.execute(
            update(InboxItem)
            .where(col(InboxItem.claimed_by) == lab.replica)
            .values(claimed_until=now + lab.policy.claim_for)
        )


class Renewal:
    """A serving process's kept clicks renewed every third of `claim_for` until it stops, so
    that only a dead process's clicks lapse (a long queue of work after a burst is no death)."""

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
                log.exception("renewing the kept clicks failed; the next round tries again")

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)


def claim_lapsed(lab: Lab, now: datetime) -> list[Kept]:
    """Kept clicks whose replica died (their claim lapsed), now claimed by this one."""
    with lab.db.write() as session:
        ids = claim(
            session,
            InboxItem,
            owner=lab.replica,
            now=now,
            hold=lab.policy.claim_for,
            order_by=[col(InboxItem.id)],
            limit=BATCH,
            attempts=InboxItem.attempts + 1,
        )
        rows = session.exec(select(InboxItem).where(col(InboxItem.id).in_(ids))).all()
    return [Kept(r.id, json.loads(r.body), r.attempts) for r in sorted(rows, key=lambda r: r.id)]


def then_finish(lab: Lab, item_id: int, job: Any, *args: Any) -> None:
    """Run a kept click's work, then delete it; a failure (a bug) deletes it too, so that only
    a replica's death leaves a click for the sweepers."""
    try:
        job(*args)
    finally:
        finished(lab, item_id)
