"""Reads: what people ask to see: my leases, one lease, the audit log, the catalog (the credit
report is commands/credit_report.py)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

from sqlalchemy import or_
from sqlmodel import col, select

from commands.billing import format_cents
from commands.coowners import co_owner_ids
from commands.facts import describe, one_line
from commands.lab import Code, Lab, Outcome, Refusal, not_found, refuse
from commands.pages import cut, footer, no_such_page, page
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
        past = no_such_page(number, len(cut(lines)), what, command)
        return refuse(lab, now, actor, "list", Refusal(Code.BAD_INPUT, past))
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
