"""Lease life: the write-up: after a lease, its owner sends a link to a short write-up of the run;
one reminder goes out `Policy.writeup_after` after the lease ended, if no link came. The deadline is
an indexed column, so the sweep finds the few that are due; the reminder is claimed with a
conditional update, so two sweeps never send it twice."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select

from commands.lab import Code, Lab, Outcome, Refusal, audit, not_found, refuse
from commands.notices import Kind, enqueue, owner
from commands.policy import is_link, too_long
from storage.models import Lease

BATCH = 200


def submit_writeup(lab: Lab, actor: str, lease_id: int, url: str, now: datetime) -> Outcome:
    """After a lease, its owner sends a link to a short write-up; it stays on the project's
    history."""
    if long := too_long("url", url.strip()):
        return refuse(
            lab,
            now,
            actor,
            "writeup",
            Refusal(Code.TOO_LONG, f"That link is too long: {long}."),
            lease_id,
        )
    if not is_link(url.strip()):
        return refuse(
            lab,
            now,
            actor,
            "writeup",
            Refusal(Code.BAD_INPUT, "Send a link, like https://blog.example.org/our-lab-run."),
            lease_id,
        )
    with lab.db.write() as session:
        lease = session.get(Lease, lease_id)
        if lease is None or lease.owner != actor:
            problem = (
                not_found(lease_id)
                if lease is None
                else Refusal(Code.NOT_ALLOWED, "Only the lease's owner can add its write-up.")
            )
        else:
            problem = None
            lease.writeup_url = url.strip()
            lease.writeup_remind_at = None
            session.add(lease)
            audit(session, now, actor, "writeup", lease_id, url=lease.writeup_url)
    if problem:
        return refuse(lab, now, actor, "writeup", problem, lease_id)
    return Outcome(True, f"Thank you! The write-up is on lease #{lease_id}'s record.", lease_id)


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
