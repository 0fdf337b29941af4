"""The write-up, followed up: one reminder `Policy.writeup_after` after a lease ended, if no
link came. The deadline is an indexed column, so the sweep finds the few that are due; the
reminder is claimed with a conditional update, so two sweeps never send it twice."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select

from commands.lab import Lab, audit
from commands.notices import Kind, enqueue, owner
from storage.models import Lease

BATCH = 200


def remind_writeups(lab: Lab, now: datetime, limit: int = BATCH) -> list[int]:
    """Send the due reminders; returns the leases reminded."""
    with lab.db.read() as session:
        due = session.exec(
            select(Lease.id).where(col(Lease.writeup_remind_at) <= now).limit(limit)
        ).all()
    return [lease_id for lease_id in due if _remind(lab, lease_id, now)]


def _remind(lab: Lab, lease_id: int, now: datetime) -> bool:
    with lab.db.write() as session:
        won = session.exec(
            update(Lease)
            .where(col(Lease.id) == lease_id, col(Lease.writeup_remind_at).is_not(None))
            .values(writeup_remind_at=None)
        ).rowcount
        lease = session.get(Lease, lease_id)
        if won != 1 or lease.writeup_url:
            return False
        session.refresh(lease)
        audit(session, now, "system", "writeup_reminder", lease_id)
        enqueue(
            session,
            Kind.WRITEUP_REQUEST,
            owner(lease.owner),
            f"A reminder: the lab would still like a short write-up of lease #{lease.id} for "
            f"{lease.project}, good or frustrating. Send a link to a blog post or an issue; "
            "it is shown with the project's next request and in the lab's public report.",
            now,
            lease.id,
            reminder=True,
        )
    return True
