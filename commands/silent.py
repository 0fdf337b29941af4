"""Lease life: the silent-lease check, once per lease end after its last reminder.

A team that no longer reads its DMs would lose its servers without a word; so if nobody who
shares the lease did anything with it since the last reminder, the reviewers are told, and may
extend it on the team's behalf. It runs inside the reminder pass (commands/remind.py), which
records it as a sent "reminder" (`SILENT_CHECK`) so it happens once per lease end.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from commands.facts import shape, when
from commands.lab import Lab, audit
from commands.notices import REVIEW, Kind, enqueue
from commands.reminders import SILENT_CHECK, reminder_times, silent_check_at
from storage.models import AuditEvent, Lease, SentReminder


def silent_check(
    session: Session,
    lab: Lab,
    lease: Lease,
    sent: dict[int, datetime],
    people: list[str],
    now: datetime,
) -> tuple[list[int], bool]:
    """Once per lease end, after the last reminder: if no owner or co-owner has done anything
    with the lease since it went out, tell the reviewers, who may extend on the team's behalf.
    The lease still ends on time. Returns the offsets recorded ([SILENT_CHECK] once the check
    ran) and whether the reviewers were told."""
    at = silent_check_at(lab.policy, lease.starts_at, lease.ends_at)
    if at is None or at > now or SILENT_CHECK in sent:
        return [], False
    last_offset = reminder_times(lab.policy, lease.starts_at, lease.ends_at)[-1][0]
    reminded = sent.get(last_offset)
    session.add(SentReminder(lease_id=lease.id, offset_s=SILENT_CHECK, sent_at=now))
    people = [lease.owner, *people]
    if reminded is None or _answered(session, lease.id, people, reminded):
        return [SILENT_CHECK], False
    reclaim_at = lease.ends_at + lab.policy.grace
    audit(session, now, "system", "silent_lease", lease.id, reminded_at=reminded)
    enqueue(
        session,
        Kind.SILENT_LEASE,
        REVIEW,
        f"Lease #{lease.id} ({shape(lease)} for {lease.project}) will be reclaimed at "
        f"{when(reclaim_at)}, and nobody has answered its last reminder "
        f"({when(reminded)}): "
        f"{', '.join(f'<@{p}>' for p in people)}. If the team still needs it, a reviewer can "
        f"extend it on their behalf: `/lab extend {lease.id} 24h`.",
        now,
        lease.id,
        reclaim_at=reclaim_at.isoformat(),
        people=people,
    )
    return [SILENT_CHECK], True


def _answered(session: Session, lease_id: int, people: list[str], since: datetime) -> bool:
    """Whether any of them did anything with the lease (audited, refused or not) since."""
    return (
        session.exec(
            select(AuditEvent.id).where(
                AuditEvent.lease_id == lease_id,
                col(AuditEvent.at) >= since,
                col(AuditEvent.actor).in_(people),
            )
        ).first()
        is not None
    )
