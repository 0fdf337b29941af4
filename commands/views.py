"""What people ask to see: my leases, one lease, the credit report, the audit log, the catalog;
and the one thing they send back afterwards, the write-up link."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import or_
from sqlmodel import col, select

from commands.billing import format_cents, month_key
from commands.coowners import co_owner_ids
from commands.credit import Tally, month_report, runs_out_at
from commands.facts import describe, one_line, when
from commands.lab import Lab, Outcome, audit, not_found, refuse
from commands.pages import cut, footer, no_such_page, not_shown, page
from commands.policy import is_link, too_long
from commands.process import Reserve, format_share
from commands.reserve import month_reserves, reserve_words
from commands.states import TERMINAL, State
from metal.provider import Catalog
from storage.models import AuditEvent, CoOwner, Lease, Server


def leases(
    lab: Lab,
    *,
    owner: str | None = None,
    states: list[str] | None = None,
    limit: int | None = 50,
) -> list[Lease]:
    with lab.db.read() as session:
        query = select(Lease)
        if owner is not None:  # and the leases they co-own
            shared = select(CoOwner.lease_id).where(CoOwner.user == owner)
            query = query.where(or_(Lease.owner == owner, col(Lease.id).in_(shared)))
        if states:
            query = query.where(col(Lease.state).in_(states))
        return list(session.exec(query.order_by(col(Lease.id).desc()).limit(limit)).all())


def person_leases(lab: Lab, user: str) -> list[Lease]:
    """Every lease a person owns or co-owns: the current ones first, then those that ended,
    the newest first in each (the order of `/lab list` and of App Home)."""
    found = leases(lab, owner=user, limit=None)
    return [lease for lease in found if State(lease.state) not in TERMINAL] + [
        lease for lease in found if State(lease.state) in TERMINAL
    ]


def lease_list(lab: Lab, actor: str, whose: str, number: int, now: datetime) -> Outcome:
    """`/lab list [@user] [PAGE]`: a person's leases, a page at a time. What each lease is for
    and its shape are open to the lab (as `show` says), so anyone may list anyone's."""
    mine = whose == actor
    found = person_leases(lab, whose)
    if not found:
        if mine:
            return Outcome(True, "You have no leases yet. Ask for servers with `/lab request`.")
        return Outcome(True, f"<@{whose}> has no leases.")
    command = "/lab list" + ("" if mine else f" {whose}")  # a member ID: typed as it is shown
    lines = [one_line(lease, now) for lease in found]
    at = page(lines, number)
    if at is None:
        what = "your leases" if mine else f"<@{whose}>'s leases"
        return refuse(lab, now, actor, "list", no_such_page(number, len(cut(lines)), what, command))
    title = ("Your leases" if mine else f"<@{whose}>'s leases") + f" ({len(found)}):"
    return Outcome(True, "\n".join(filter(None, [title, *at.lines, footer(at, command)])))


def show(lab: Lab, actor: str, lease_id: int, now: datetime) -> Outcome:
    """Any lease's purpose and shape are open to the lab (the process is public); where its
    servers are and how to reach them only to the owner, reviewers and admins."""
    lease, servers = lease_with_servers(lab, lease_id)
    if lease is None:
        return refuse(lab, now, actor, "show", not_found(lease_id), lease_id)
    with lab.db.read() as session:
        sharing = co_owner_ids(session, lease_id)
    if may_see_addresses(lab, lease, actor, sharing):
        return Outcome(True, describe(lease, servers, now, sharing), lease_id)
    hidden = f"\n{len(servers)} server(s); {ADDRESSES_HIDDEN}" if servers else ""
    return Outcome(True, describe(lease, [], now, sharing) + hidden, lease_id)


ADDRESSES_HIDDEN = (
    "their names and addresses are shown to the owner, co-owners, reviewers and admins."
)


def may_see_addresses(lab: Lab, lease: Lease, actor: str, co_owners: list[str]) -> bool:
    return actor == lease.owner or actor in co_owners or lab.roles.is_reviewer(actor)


def lease_with_servers(lab: Lab, lease_id: int) -> tuple[Lease | None, list[Server]]:
    with lab.db.read() as session:
        lease = session.get(Lease, lease_id)
        servers = list(session.exec(select(Server).where(Server.lease_id == lease_id)).all())
    return lease, servers


@dataclass(frozen=True)
class CreditLine:
    """One line of the books. A project without a monthly cap has no grant of its own, so
    `granted` and `available` are None for it."""

    name: str
    granted: int | None
    spent: int
    committed: int
    available: int | None


@dataclass(frozen=True)
class CreditReport:
    month: str
    lab: CreditLine
    projects: list[CreditLine]
    burn_per_day: int
    runs_out: datetime | None
    reserve: Reserve
    reserved_share: int

    def text(self, budget: int | None = None) -> str:
        """The books in words; within `budget` characters (a Slack answer), the projects that
        do not fit are counted and the public report named, which lists every one."""
        lines = [
            f"Credit for {self.month}:",
            _line(self.lab),
            f"Burn rate: {format_cents(self.burn_per_day)}/day; "
            + (
                f"runs out {when(self.runs_out)} at this rate."
                if self.runs_out
                else "the month's credit lasts the month at this rate."
            ),
        ]
        lines.append(
            f"Kept for other open-source projects ({format_share(self.reserved_share)}): "
            f"{reserve_words(self.reserve)}."
        )
        if self.projects:
            lines.append("By project:")
            projects = [_line(p) for p in self.projects]
            room = len(projects)
            if budget is not None:
                room = len(cut(projects, len(projects), budget - len("\n".join(lines)))[0])
            lines += projects[:room] + not_shown(
                len(projects) - room, "the lab's public report lists every project's spend"
            )
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return asdict(self)


def _line(line: CreditLine) -> str:
    used = f"spent {format_cents(line.spent)}, committed {format_cents(line.committed)}"
    if line.granted is None:
        return f"  {line.name}: {used} (no project cap)"
    return (
        f"  {line.name}: granted {format_cents(line.granted)}, {used}, "
        f"available {format_cents(line.available)}"
    )


def credit_report(lab: Lab, now: datetime, month: str | None = None) -> CreditReport:
    month = month or month_key(now)
    with lab.db.write() as session:  # write: the month's grant row may be created
        report = month_report(session, month, lab.policy, now)
        kept = month_reserves(session, [month], lab.policy, now)[month]
    book = report.books
    burn = report.burn_per_day if month == month_key(now) else 0
    lab_line = CreditLine("lab", book.granted, book.spent, book.committed, book.available)
    projects = _by_project(report.projects, lab.policy.project_cap_cents)
    return CreditReport(
        month,
        lab_line,
        projects,
        burn,
        runs_out_at(book, burn, now),
        kept,
        lab.policy.reserved_share,
    )


def _by_project(tally: Tally, cap: int | None) -> list[CreditLine]:
    spent = {p: c for (p, _), c in tally.spent.items()}
    committed = {p: c for (p, _), c in tally.committed.items()}
    lines = []
    for p in sorted(spent.keys() | committed.keys()):
        used, held = spent.get(p, 0), committed.get(p, 0)
        left = None if cap is None else cap - used - held
        lines.append(CreditLine(p, cap, used, held, left))
    return lines


def audit_events(
    lab: Lab, lease_id: int | None = None, limit: int | None = None
) -> list[AuditEvent]:
    with lab.db.read() as session:
        query = select(AuditEvent)
        if lease_id is not None:
            query = query.where(AuditEvent.lease_id == lease_id)
        query = query.order_by(col(AuditEvent.id))
        if limit:
            query = query.limit(limit)
        return list(session.exec(query).all())


def audit_export(events: list[AuditEvent], fmt: str) -> str:
    rows = [
        {
            "id": e.id,
            "at": e.at.isoformat(),
            "actor": e.actor,
            "action": e.action,
            "lease_id": e.lease_id,
            "outcome": e.outcome,
            "details": e.details,
        }
        for e in events
    ]
    if fmt == "json":
        return json.dumps(rows, indent=2)
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=["id", "at", "actor", "action", "lease_id", "outcome", "details"]
    )
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def plans_text(catalog: Catalog) -> str:
    lines = ["Plans:"]
    for plan in catalog.plans.values():
        lines.append(
            f"  {plan.slug} ({plan.name}): {plan.specs}, {format_cents(plan.hourly_cents)}/h"
        )
    lines.append("Metros: " + ", ".join(f"{m.code} ({m.name})" for m in catalog.metros.values()))
    lines.append("OS: " + ", ".join(catalog.oses))
    return "\n".join(lines)


def submit_writeup(lab: Lab, actor: str, lease_id: int, url: str, now: datetime) -> Outcome:
    """After a lease, its owner sends a link to a short write-up; it stays on the project's
    history."""
    if long := too_long("url", url.strip()):
        return refuse(lab, now, actor, "writeup", f"That link is too long: {long}.", lease_id)
    if not is_link(url.strip()):
        return refuse(
            lab,
            now,
            actor,
            "writeup",
            "Send a link, like https://blog.example.org/our-lab-run.",
            lease_id,
        )
    with lab.db.write() as session:
        lease = session.get(Lease, lease_id)
        if lease is None or lease.owner != actor:
            problem = (
                not_found(lease_id)
                if lease is None
                else "Only the lease's owner can add its write-up."
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
