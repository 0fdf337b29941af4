"""Lease life: the provider-side backstop: every device carries a termination time so the provider
deletes it even if labbot is down. It must never fall before the lease's end plus grace, so whenever
the end moves later (an extension, or servers that came up late) the backstop moves first."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import select

from commands.facts import when
from commands.holds import backstop_moved
from commands.lab import Lab, audit
from commands.states import ServerState
from metal.provider import lease_tag
from storage.locks import locked
from storage.models import Lease, Server


def move_backstop(lab: Lab, lease_id: int, ends_at: datetime, now: datetime) -> str | None:
    """Push the lease's backstop past `ends_at` (plus grace and margin) when it is not already
    there: one provider call for each of the lease's metros. Returns the provider's refusal as
    a sentence, or None when the backstop is safe. A backstop moved for an end that then does
    not happen only deletes later."""
    with lab.db.read() as session:
        lease = session.get(Lease, lease_id)
        servers = session.exec(
            select(Server).where(Server.lease_id == lease_id, Server.state == ServerState.ACTIVE)
        ).all()
    if lease is None or lease.backstop_at is None:
        return None
    needed = lab.policy.backstop(ends_at)
    if needed <= lease.backstop_at:
        return None
    metros = dict.fromkeys([*lease.per_metro(), *(s.metro for s in servers)])
    try:
        for metro in metros:  # one call a metro: EC2 keeps the lease's schedule in each region
            lab.provider_of(lease.donor).set_backstop(
                lease_tag(lease_id),
                metro,
                needed,
                [s.provider_id for s in servers if s.metro == metro],
            )
    except Exception as error:
        return (
            f"the provider would not move the deletion backstop of lease #{lease_id}'s servers "
            f"past {when(lease.backstop_at)} ({error})"
        )
    with lab.db.write() as session:
        row = locked(session, Lease, lease_id)
        row.backstop_at = max(row.backstop_at, needed)
        session.add(row)
        backstop_moved(session, row)
        audit(session, now, "system", "backstop_moved", lease_id, to=needed)
    return None
