"""Intake: the requests waiting for a decision, in the order reviewers see them, and what else a
reviewer is shown about who is asking: their class, their repository's check, their write-ups.

The order itself is `commands.process.rank`; this module reads the pending leases and the
month's money and hands them over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlmodel import Session, col, func, select

from commands.billing import format_cents
from commands.credit import available_cents
from commands.facts import ListedLease, one_line, quoted
from commands.holds import planned_cost
from commands.lab import Code, Lab, Outcome, Refusal, refuse
from commands.pages import cut, footer, no_such_page, not_shown, page
from commands.policy import Policy
from commands.process import LABELS as CLASS_LABELS
from commands.process import MEMBER, Waiting, left_after, rank
from commands.states import State
from storage.models import Lease

MAX_WRITEUPS = 5
MAX_HISTORY = 5
PENDING_CHECK = "check pending"


@dataclass(frozen=True)
class QueueEntry:
    place: int
    lease: ListedLease
    label: str
    cost: int
    left: dict[str, int]

    def line(self, now: datetime) -> str:
        left = ", ".join(f"{m}: {format_cents(c)}" for m, c in self.left.items())
        flag = f" — flagged: {quoted(self.lease.class_note)}" if self.lease.class_note else ""
        return (
            f"{self.place}. [{self.label}] {one_line(self.lease, now)}, "
            f"costs {format_cents(self.cost)}, leaves {left}{flag}"
        )


class Applicant(Protocol):
    """What an applicant's label is made of: a lease, or a report's lighter row of one."""

    @property
    def applicant_class(self) -> str: ...
    @property
    def project(self) -> str: ...
    @property
    def member_org(self) -> str: ...
    @property
    def claimed_class(self) -> str: ...


def applicant_label(lease: Applicant, policy: Policy) -> str:
    """`foundation project (graduated)`, `member organization Acme`, `other open-source
    project (claimed foundation)`."""
    words = CLASS_LABELS.get(lease.applicant_class, lease.applicant_class)
    maturity = policy.maturities.get(lease.project, "")
    if lease.applicant_class == "foundation" and maturity:
        words += f" ({maturity})"
    if lease.applicant_class == MEMBER:
        words += f" {lease.member_org}"
    if lease.claimed_class != lease.applicant_class:
        words += f" (claimed {lease.claimed_class}, not matched)"
    return words


def ranked(session: Session, policy: Policy, now: datetime) -> list[QueueEntry]:
    """Every pending request in review order, each with what the months it touches would have
    left if it and everything above it were approved. Call in a write transaction: reading a
    month's books may write its grant row."""
    # The table's column, like the selected ones: an ORM attribute would bring the ORM's loading.
    pending_state = Lease.__table__.c.state == State.PENDING
    rows = session.exec(select(*ListedLease.columns()).where(pending_state)).all()
    pending = {lease.id: lease for lease in map(ListedLease._make, rows)}
    waiting = [
        Waiting(lease.id, lease.applicant_class, lease.created_at, planned_cost(lease, policy, now))
        for lease in pending.values()
    ]
    order = rank(waiting, policy.rank)
    months = sorted({m for item in waiting for m in item.cost})
    available = available_cents(session, months, policy, now)
    return [
        QueueEntry(
            place,
            pending[item.lease_id],
            applicant_label(pending[item.lease_id], policy),
            sum(item.cost.values()),
            left,
        )
        for place, (item, left) in enumerate(
            zip(order, left_after(order, available), strict=True), start=1
        )
    ]


def queue(lab: Lab, now: datetime) -> list[QueueEntry]:
    with lab.db.write() as session:
        return ranked(session, lab.policy, now)


def queue_text(lab: Lab, actor: str, now: datetime, number: int = 1) -> Outcome:
    """`/lab queue [PAGE]`: reviewers only, since it shows everyone's requests."""
    if not lab.roles.is_reviewer(actor):
        return refuse(
            lab,
            now,
            actor,
            "queue",
            Refusal(Code.NOT_ALLOWED, "Only reviewers see the queue; `list` shows your leases."),
        )
    entries = queue(lab, now)
    if not entries:
        return Outcome(True, "Nothing is waiting for a decision.")
    lines = [e.line(now) for e in entries]
    at = page(lines, number)
    if at is None:
        sentence = no_such_page(number, len(cut(lines)), "the requests waiting", "/lab queue")
        return refuse(lab, now, actor, "queue", Refusal(Code.BAD_INPUT, sentence))
    title = f"Waiting for review: {len(entries)}, in review order (class, then longest wait):"
    return Outcome(True, "\n".join(filter(None, [title, *at.lines, footer(at, "/lab queue")])))


def place_in_queue(session: Session, policy: Policy, lease_id: int, now: datetime) -> str:
    entries = ranked(session, policy, now)
    place = next((e.place for e in entries if e.lease.id == lease_id), None)
    return f"{place} of {len(entries)}" if place else "-"


def repo_words(lease: Lease | ListedLease) -> str:
    """What the forge said, or that the check is still pending (and why, once it failed)."""
    if lease.repo_check_at is not None:
        return f"{PENDING_CHECK} ({lease.repo_check})" if lease.repo_check else PENDING_CHECK
    return lease.repo_check or PENDING_CHECK


def requester_history(session: Session, lease: Lease) -> list[str]:
    """The requester's latest other leases, and how many more there are with the command that
    lists them all."""
    others = (Lease.owner == lease.owner, col(Lease.id) != lease.id)
    rows = session.exec(
        select(Lease.id, Lease.project, Lease.state)
        .where(*others)
        .order_by(col(Lease.id).desc())
        .limit(MAX_HISTORY)
    ).all()
    total = _count(session, *others)
    return [f"#{i} {p} ({s})" for i, p, s in rows] + not_shown(
        total - len(rows), f"`/lab list {lease.owner}` lists them all"
    )


def project_writeups(session: Session, lease: Lease) -> list[str]:
    """The project's earlier leases that ended, with their write-up link or "pending": so
    reviewers see who gave back."""
    ended = (
        Lease.project == lease.project,
        col(Lease.id) != lease.id,
        Lease.state == State.RECLAIMED,
    )
    rows = session.exec(
        select(Lease.id, Lease.writeup_url)
        .where(*ended)
        .order_by(col(Lease.id).desc())
        .limit(MAX_WRITEUPS)
    ).all()
    total = _count(session, *ended)
    return [f"#{i}: {quoted(url) if url else 'pending'}" for i, url in rows] + not_shown(
        total - len(rows), "the lab's public report lists every lease and its write-up"
    )


def _count(session: Session, *where: Any) -> int:
    return session.exec(select(func.count()).select_from(Lease).where(*where)).one()
