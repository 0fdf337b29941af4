"""Lease life: the reminders a running lease's people get before it ends, and their words.

When each reminder falls due is a pure rule in commands/reminders.py; this module sends them (one
transaction for every due lease of a sweep), runs the silent-lease check after the last one
(commands/silent.py) and sets each lease's next deadline.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import insert
from sqlmodel import col, func, select

from commands.coowners import audiences, co_owners_of
from commands.facts import shape, when
from commands.lab import Lab, audit_all
from commands.notices import Draft, Kind, enqueue_all
from commands.reclaim import CONFIRM
from commands.reminders import due_reminders, next_due, remaining_words
from commands.silent import silent_check
from commands.states import ServerState, State
from storage.locks import locked_all
from storage.models import Lease, SentReminder, Server


def remind(lab: Lab, leases: list[Lease], now: datetime) -> dict[int, str]:
    """Due reminders of running leases, all in one transaction, and each lease's next
    deadline."""
    if not leases:
        return {}
    ids = [lease.id for lease in leases]
    outcomes = {lease_id: "changed meanwhile" for lease_id in ids}
    with lab.db.write() as session:
        fresh = [lease for lease in locked_all(session, Lease, ids) if lease.state == State.ACTIVE]
        sent: dict[int, dict[int, datetime]] = defaultdict(dict)
        for lease_id, offset, at in session.exec(
            select(SentReminder.lease_id, SentReminder.offset_s, SentReminder.sent_at).where(
                col(SentReminder.lease_id).in_(ids)
            )
        ).all():
            sent[lease_id][offset] = at
        co_owners = co_owners_of(session, ids)
        next_deletes = dict(
            session.exec(
                select(Server.lease_id, func.min(Server.retry_at))
                .where(col(Server.lease_id).in_(ids), Server.state == ServerState.DELETING)
                .group_by(Server.lease_id)
            ).all()
        )
        drafts: list[Draft] = []
        reminded: dict[int, list[int]] = {}  # lease: the reminders sent now (offsets)
        for lease in fresh:
            due = due_reminders(lab.policy, lease.starts_at, lease.ends_at, sent[lease.id], now)
            for offset in due:
                sent[lease.id][offset] = now
            people = co_owners[lease.id]
            if due:
                left = remaining_words(lease.ends_at, now)
                drafts += [
                    Draft(
                        Kind.REMINDER,
                        audience,
                        f"Lease #{lease.id} ({shape(lease)}) ends in {left}, at "
                        f"{when(lease.ends_at)}. Extend it if you still need the servers, or "
                        "release them now.",
                        lease.id,
                        {"left": left, "ends_at": lease.ends_at.isoformat()},
                    )
                    for audience in audiences(session, lease, people)
                ]
                reminded[lease.id] = due
            checked, silent = silent_check(session, lab, lease, sent[lease.id], people, now)
            done = [*sent[lease.id], *checked]
            lease.due_at = next_due(lab.policy, lease.starts_at, lease.ends_at, done)
            stray = next_deletes.get(lease.id)
            if stray is not None and stray < lease.due_at:
                lease.due_at = max(stray, now + CONFIRM)
            if silent:
                outcomes[lease.id] = "nobody answered the last reminder; reviewers told"
            else:
                outcomes[lease.id] = f"reminded ({len(due)})" if due else "not due"
        if reminded:
            session.execute(
                insert(SentReminder),
                [
                    {"lease_id": lease_id, "offset_s": offset, "sent_at": now}
                    for lease_id, offsets in reminded.items()
                    for offset in offsets
                ],
            )
        audit_all(
            session,
            now,
            "system",
            "remind",
            {i: {"offsets": sent_now} for i, sent_now in reminded.items()},
        )
        enqueue_all(session, drafts, now)
    return outcomes
