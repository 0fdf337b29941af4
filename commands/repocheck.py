"""Intake: open source, checked: what the forge says about a request's repository.

A request is filed with its check pending (`repo_check_at` set) and never waits for the forge.
The check runs after the commit (right after the requester has been answered, and again from the
sweep for every check still due), records what the forge said on the lease with one conditional
update, and, once the forge has answered, refreshes the review card in place while the request
is still pending. A forge that
is slow, rate limited or down leaves the check pending until the time it named, or
`RETRY_AFTER`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select

from commands.lab import Lab, audit
from commands.notices import Kind
from commands.request import post_card
from commands.states import TERMINAL, State
from metal.forge import RepoCheck, RepoFacts, Unchecked
from storage.models import Lease

RETRY_AFTER = timedelta(minutes=15)
BATCH = 100
_NO_FORGE = "no forge client is configured"


def check_repository(lab: Lab, lease_id: int, now: datetime) -> str:
    """Ask the forge once about a pending check and record the answer; says what happened."""
    with lab.db.read() as session:
        lease = session.get(Lease, lease_id)
        if lease is None or lease.repo_check_at is None:
            return "already checked"
        url, state = lease.repo_url, State(lease.state)
    answer = lab.forge.repository(url) if lab.forge is not None else Unchecked(_NO_FORGE)
    with lab.db.write() as session:
        values = _recorded(answer, now, finished=state in TERMINAL or lab.forge is None)
        won = session.exec(
            update(Lease)
            .where(col(Lease.id) == lease_id, col(Lease.repo_check_at).is_not(None))
            .values(**values)
        ).rowcount
        if won != 1:
            return "already checked"
        audit(session, now, "system", "repo_check", lease_id, url=url, said=values["repo_check"])
        lease = session.get(Lease, lease_id)
        session.refresh(lease)
        if lease.state == State.PENDING and lease.repo_ok is not None:
            post_card(session, lab, lease, now, Kind.CARD_UPDATE)
    lab.flush_notices(now, lease_id)
    return f"repository: {values['repo_check']}"


def due_checks(lab: Lab, now: datetime, limit: int = BATCH) -> list[int]:
    """Leases whose repository check is due, by the indexed deadline."""
    with lab.db.read() as session:
        return list(
            session.exec(
                select(Lease.id)
                .where(col(Lease.repo_check_at) <= now)
                .order_by(col(Lease.repo_check_at))
                .limit(limit)
            ).all()
        )


def _recorded(answer: RepoCheck, now: datetime, finished: bool) -> dict:
    if isinstance(answer, Unchecked):
        # Still pending: keep asking while the lease matters; a lease that is over keeps the
        # reason and is asked no more.
        retry = answer.retry_at if answer.retry_at and answer.retry_at > now else now + RETRY_AFTER
        return {
            "repo_check": answer.reason,
            "repo_ok": None,
            "repo_check_at": None if finished else retry,
        }
    ok = isinstance(answer, RepoFacts) and not answer.problems
    return {"repo_check": answer.describe(), "repo_ok": ok, "repo_check_at": None}
