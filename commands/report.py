"""Reads: the public report: per month, what the lab was given, what each project used and why, the
share kept for other open-source projects, who wrote up their run, and what each donor's money
paid for; and one donor's months alone (`donor_month`), the thank-you report a lab sends it.

It is read-only (months the books have opened, read in a read transaction) and public: it
carries no Slack ids, no addresses and no SSH keys. Purposes are people's own words, so mentions,
e-mail and IP addresses and keys are taken out of them before they are shown.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import NamedTuple

from sqlalchemy import func, literal, or_, union_all
from sqlmodel import Session, col, select

from commands.billing import cost_by_month, month_bounds
from commands.capacity import Calendar, calendars
from commands.credit import GRANT, books, ensure_grant, ledger_totals
from commands.donors import Donor
from commands.durations import format_duration
from commands.holds import billing_stops
from commands.idle import idle_hours
from commands.lab import Lab
from commands.process import LABELS, Reserve
from commands.queue import applicant_label
from commands.reserve import beyond_counted, irregular_leases, month_reserves
from storage.models import CreditHold, Lease, LedgerEntry, Server, ServerSpend

REMOVED = "[removed]"
_PRIVATE = re.compile(
    r"<[@#!][^>]*>"  # Slack mentions, channels, broadcasts
    r"|(?-i:\b[UW](?=[A-Z]*\d)[A-Z0-9]{6,}\b)"  # bare Slack user ids
    r"|[\w.+-]+@[\w-]+\.[\w.-]+"  # e-mail addresses
    r"|\b\d{1,3}(?:\.\d{1,3}){3}(?:/\d+)?\b"  # IPv4
    r"|\b[0-9a-f]{1,4}(?::[0-9a-f]{0,4}){2,7}\b"  # IPv6
    r"|(?:ssh-|ecdsa-|sk-)\S+\s+[A-Za-z0-9+/=]{16,}",  # SSH public keys
    re.IGNORECASE,
)


def public_text(text: str) -> str:
    """People's words with anything private taken out."""
    return _PRIVATE.sub(REMOVED, text)


class _Billed(NamedTuple):
    """The columns of a lease that the report shows or sums: a month's leases are read as these
    plain rows, lighter than whole leases (which convert a dozen timestamps each)."""

    id: int
    project: str
    repo_url: str
    purpose: str
    plan: str
    count: int
    duration_s: int
    extended_s: int
    writeup_url: str | None
    state: str
    donor: str
    applicant_class: str
    claimed_class: str
    member_org: str


_BILLED_COLUMNS = tuple(getattr(Lease, name) for name in _Billed._fields)


class _Applicant(NamedTuple):
    """What a lease's applicant label is made of: leases that share it share their label."""

    applicant_class: str
    project: str
    member_org: str
    claimed_class: str

    @classmethod
    def of(cls, lease: _Billed) -> _Applicant:
        return cls(lease.applicant_class, lease.project, lease.member_org, lease.claimed_class)


@dataclass(frozen=True)
class ReportLease:
    id: int
    project: str
    applicant: str
    repository: str
    purpose: str
    shape: str  # 3 x c1.small.x86 x 48h
    cents: int  # spent plus still committed in the month
    writeup: str | None
    state: str
    donor: str


@dataclass(frozen=True)
class DonorSpend:
    """What one donor gave in a month, and what its money paid for, by project."""

    name: str
    granted: int
    cents: int  # spent plus still committed by the leases billed to it
    by_project: list[tuple[str, int]]


@dataclass(frozen=True)
class DonorMonth:
    """One donor's month, as its thank-you page shows it: only the leases billed to it."""

    donor: str
    month: str
    granted: int
    cents: int  # spent plus still committed by its leases
    servers: int  # servers that ran on its credit in the month
    server_hours: int
    leases: list[ReportLease]
    by_project: list[tuple[str, int]]
    burn: list[tuple[int, int]]

    @property
    def spent(self) -> int:
        """Spent by the end of the last day shown."""
        return self.burn[-1][1] if self.burn else 0

    @property
    def writeups(self) -> int:
        return sum(1 for row in self.leases if row.writeup)


@dataclass(frozen=True)
class PublicMonth:
    """One month of the public report, as its page shows it."""

    month: str
    granted: int
    spent: int
    committed: int
    available: int
    reserve: Reserve
    reserved_share: int
    leases: list[ReportLease]
    burn: list[tuple[int, int]]  # (day of month, spent by the end of it)
    by_project: list[tuple[str, int]] = field(default_factory=list)
    by_class: list[tuple[str, int]] = field(default_factory=list)
    # Every donor the lab names (in the configuration's order), then any other a lease was
    # billed to; one row for a lab with one donor.
    by_donor: list[DonorSpend] = field(default_factory=list)
    # Per project, most server-hours first: its server-hours in the month and the share of
    # them its servers were idle (docs/idle.md), what the donors' money bought and nobody used.
    idle: list[IdleShare] = field(default_factory=list)

    # The coming two weeks of each plan and metro with a capacity limit, as of the report.
    calendars: list[Calendar] = field(default_factory=list)


@dataclass(frozen=True)
class IdleShare:
    project: str
    server_hours: float
    idle_hours: float

    @property
    def share(self) -> float:
        return self.idle_hours / self.server_hours if self.server_hours else 0.0


def report_months(lab: Lab) -> list[str]:
    """The months the books have opened (a grant row exists), newest first."""
    with lab.db.read() as session:
        return list(
            session.exec(
                select(LedgerEntry.month)
                .where(LedgerEntry.kind == GRANT)
                .distinct()
                .order_by(col(LedgerEntry.month).desc())
            ).all()
        )


def public_month(lab: Lab, month: str, now: datetime) -> PublicMonth:
    """One month of the report. Only for months in `report_months`: reading them writes
    nothing."""
    with lab.db.read() as session:
        book = books(session, [month], lab.policy, now)[month]
        kept = month_reserves(session, [month], lab.policy, now)[month]
        leases, amounts = _month_leases(session, month, now)
        rows = _rows(leases, amounts, lab)
        servers = _servers(session, month)
        burn = _burn(servers, month, now)
        given = _given(session, lab, month, now, _donor_names(lab, leases))
        idle = _idle(session, servers, month, now)
    by_class: dict[str, int] = defaultdict(int)
    for lease in leases:
        by_class[LABELS.get(lease.applicant_class, lease.applicant_class)] += amounts[lease.id]
    return PublicMonth(
        month=month,
        granted=book.granted,
        spent=book.spent,
        committed=book.committed,
        available=book.available,
        reserve=kept,
        reserved_share=lab.policy.reserved_share,
        leases=rows,
        burn=burn,
        by_project=_by_project(rows),
        by_class=_ranked(by_class),
        by_donor=_by_donor(given, rows),
        idle=idle,
        calendars=calendars(lab, now),
    )


def _idle(
    session: Session, servers: list[tuple[Server, Lease]], month: str, now: datetime
) -> list[IdleShare]:
    """Each project's server-hours in the month, and how many of them were idle."""
    start, end = month_bounds(month)
    ran: dict[str, float] = defaultdict(float)
    for first, last, lease in _ran(servers, month, now):
        ran[lease.project] += (last - first).total_seconds() / 3600
    idle = idle_hours(session, start, min(end, now))
    return sorted(
        (
            IdleShare(project, hours, min(idle.get(project, 0.0), hours))
            for project, hours in ran.items()
        ),
        key=lambda row: (-row.server_hours, row.project),
    )


def _ran(
    servers: list[tuple[Server, Lease]], month: str, now: datetime
) -> list[tuple[datetime, datetime, Lease]]:
    """When each server ran within the month (those that did), with its lease."""
    start, end = month_bounds(month)
    spans = [
        (max(server.active_at, start), min(_stop(server, lease, now), end), lease)
        for server, lease in servers
    ]
    return [(first, last, lease) for first, last, lease in spans if last > first]


def donor_month(lab: Lab, donor: Donor, month: str, now: datetime) -> DonorMonth:
    """One donor's month: its grant, and the servers, hours, projects and write-ups its money
    paid for. Read-only, like `public_month`."""
    with lab.db.read() as session:
        leases, amounts = _month_leases(session, month, now, donor.name)
        servers = _servers(session, month, donor.name)
        given = _given(session, lab, month, now, [donor.name])
    ran = _ran(servers, month, now)
    rows = _rows(leases, amounts, lab)
    return DonorMonth(
        donor=donor.name,
        month=month,
        granted=given[donor.name],
        cents=sum(amounts.values()),
        servers=len(ran),
        server_hours=round(sum((last - first).total_seconds() for first, last, _ in ran) / 3600),
        leases=rows,
        by_project=_by_project(rows),
        burn=_burn(servers, month, now),
    )


def _month_leases(
    session: Session, month: str, now: datetime, donor: str | None = None
) -> tuple[list[_Billed], dict[int, int]]:
    """The leases that spent or hold credit in the month (only `donor`'s, if named), and what
    each did: its holds plus its settled spend, summed in SQL alongside its columns, and for the
    few irregular leases what they used beyond those, reckoned exactly; together the books'
    spent plus committed."""
    beyond = {
        lease_id: beyond_counted(session, lease_id, now).get(month, 0)
        for lease_id in irregular_leases(session, now)
    }
    booked = union_all(
        *(
            select(table.lease_id, table.cents).where(table.month == month)
            for table in (CreditHold, ServerSpend)
        ),
        select(Lease.id, literal(0)).where(col(Lease.id).in_(list(beyond))),
    ).subquery()
    query = (
        select(*_BILLED_COLUMNS, func.sum(booked.c.cents))
        .join(booked, col(Lease.id) == booked.c.lease_id)
        .group_by(col(Lease.id))
    )
    if donor is not None:
        query = query.where(Lease.donor == donor)
    leases: list[_Billed] = []
    amounts: dict[int, int] = {}
    for *columns, cents in session.exec(query).all():
        lease = _Billed(*columns)
        amount = int(cents) + beyond.get(lease.id, 0)
        if amount > 0:
            leases.append(lease)
            amounts[lease.id] = amount
    return leases, amounts


def _rows(leases: list[_Billed], amounts: dict[int, int], lab: Lab) -> list[ReportLease]:
    """The month's rows, most spent first. A month's leases repeat their projects, repositories,
    applicants and shapes, so each distinct one is scrubbed, labelled or written once."""
    scrub = cache(public_text)
    label = cache(lambda applicant: applicant_label(applicant, lab.policy))
    shape = cache(_shape)
    rows = [
        ReportLease(
            id=lease.id,
            project=scrub(lease.project),
            applicant=label(_Applicant.of(lease)),
            repository=scrub(lease.repo_url),
            purpose=scrub(lease.purpose),
            shape=shape(lease.plan, lease.count, lease.duration_s + lease.extended_s),
            cents=amounts[lease.id],
            writeup=scrub(lease.writeup_url) if lease.writeup_url else None,
            state=lease.state,
            donor=lease.donor,
        )
        for lease in leases
    ]
    return sorted(rows, key=lambda r: (-r.cents, r.id))


def _shape(plan: str, count: int, seconds: int) -> str:
    return f"{plan} x {count} servers x {format_duration(seconds)}"


def _by_project(rows: list[ReportLease]) -> list[tuple[str, int]]:
    spent: dict[str, int] = defaultdict(int)
    for row in rows:
        spent[row.project] += row.cents
    return _ranked(spent)


def _given(
    session: Session, lab: Lab, month: str, now: datetime, names: list[str]
) -> dict[str, int]:
    """What each named donor gave in the month: its books' grant (the ledger's rows alone; its
    books' spent and committed, which read every running server, are not needed here)."""
    given = {}
    for name in names:
        ensure_grant(session, month, lab.policy, now, name)
        given[name] = ledger_totals(session, month, donor=name)[0]
    return given


def _donor_names(lab: Lab, leases: list[_Billed]) -> list[str]:
    """Every donor the lab names, in the configuration's order, then any other a lease was
    billed to (one the configuration no longer names)."""
    named = [donor.name for donor in lab.policy.donors()]
    return named + sorted({lease.donor for lease in leases} - set(named))


def _by_donor(given: dict[str, int], rows: list[ReportLease]) -> list[DonorSpend]:
    billed: dict[str, list[ReportLease]] = {name: [] for name in given}
    for row in rows:
        billed[row.donor].append(row)
    return [
        DonorSpend(
            name=name,
            granted=given[name],
            cents=sum(row.cents for row in paid),
            by_project=_by_project(paid),
        )
        for name, paid in billed.items()
    ]


def _ranked(cents: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(cents.items(), key=lambda kv: (-kv[1], kv[0]))


def _servers(session: Session, month: str, donor: str | None = None) -> list[tuple[Server, Lease]]:
    """The servers that ran in the month (only on `donor`'s credit, if named), with their
    leases."""
    start, end = month_bounds(month)
    query = (
        select(Server, Lease)
        .join(Lease, col(Lease.id) == Server.lease_id)
        .where(
            col(Server.active_at).is_not(None),
            col(Server.active_at) < end,
            or_(col(Server.deleted_at).is_(None), col(Server.deleted_at) > start),
        )
    )
    if donor is not None:
        query = query.where(Lease.donor == donor)
    return list(session.exec(query).all())


def _stop(server: Server, lease: Lease, now: datetime) -> datetime:
    """When the server stopped billing, or `now` while it runs."""
    return max(server.active_at, billing_stops(lease, server.deleted_at or now))


def _burn(servers: list[tuple[Server, Lease]], month: str, now: datetime) -> list[tuple[int, int]]:
    """What the servers had spent in the month by the end of each day, up to today."""
    start, end = month_bounds(month)
    days = []
    day = start
    while day < end and day < now:
        cut = min(day + timedelta(days=1), now)
        spent = sum(
            cost_by_month(
                server.active_at,
                max(server.active_at, min(_stop(server, lease, now), cut)),
                1,
                server.hourly_cents,
            ).get(month, 0)
            for server, lease in servers
        )
        days.append((day.day, spent))
        day += timedelta(days=1)
    return days


def is_month(text: str) -> bool:
    parts = text.split("-")
    return (
        len(parts) == 2
        and all(p.isascii() and p.isdigit() for p in parts)
        and len(parts[0]) == 4
        and 1 <= int(parts[1]) <= 12
    )
