"""Taking servers back: release by the owner, expiry by the sweep, and the deletes behind both.

A delete counts only once the provider confirms the device is gone. A delete that fails is
retried with exponential backoff; after `delete_attempts` failures the lease is quarantined and
the admins are told, and the sweep keeps trying (more slowly) until it succeeds or an admin
resolves it by hand.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, func, select

from commands.batches import batches
from commands.coowners import audiences, co_owner_ids
from commands.facts import shape
from commands.holds import billing_stops, release_holds, settle_spend
from commands.lab import Lab, Outcome, audit, move, not_found, owner_or_admin, refuse, wrong_state
from commands.notices import ADMIN, Kind, enqueue, owner
from commands.states import State
from metal.provider import lease_tag
from storage.locks import locked
from storage.models import Lease, Server

log = logging.getLogger(__name__)

CONFIRM = timedelta(seconds=30)
QUARANTINE_RETRY = timedelta(hours=1)
UP = ("pending", "creating", "provisioning", "active")


def release(lab: Lab, actor: str, lease_id: int, now: datetime) -> Outcome:
    with lab.db.write() as session:
        lease = locked(session, Lease, lease_id)
        problem = _cannot_release(lab, lease, actor, lease_id, co_owner_ids(session, lease_id))
        if problem is None:
            problem = (
                None
                if _begin(session, lease, State.RELEASING, actor, now)
                else (f"Lease #{lease_id} is already being reclaimed.")
            )
    if problem:
        return refuse(lab, now, actor, "release", problem, lease_id)
    advance_reclaim(lab, lease_id, now)
    lab.flush_notices(now, lease_id)
    return Outcome(True, f"Lease #{lease_id} released; its servers are being deleted.", lease_id)


def _cannot_release(
    lab: Lab, lease: Lease | None, actor: str, lease_id: int, co_owners: list[str]
) -> str | None:
    if lease is None:
        return not_found(lease_id)
    if lease.state != State.ACTIVE:
        return wrong_state(lease, "released", "an active lease (cancel a pending request)")
    return owner_or_admin(lab, lease, actor, "release", co_owners)


def expire(lab: Lab, lease: Lease, now: datetime) -> bool:
    with lab.db.write() as session:
        fresh = locked(session, Lease, lease.id)
        # Released (or expired by another sweep) since the caller looked: nothing to do.
        if fresh is None or fresh.state != State.ACTIVE:
            return False
        return _begin(session, fresh, State.EXPIRING, "system", now)


def _begin(session: Session, lease: Lease, new: State, actor: str, now: datetime) -> bool:
    """active -> releasing | expiring, and every server queued for deletion, in one commit.
    The conditional state change decides the race between an owner's release and the sweep's
    expiry: exactly one of them wins and queues the deletes (the caller holds the lease)."""
    if lease.state != State.ACTIVE:
        return False
    move(session, lease, new, ended_at=now, due_at=now)
    release_holds(session, lease)
    session.exec(
        update(Server)
        .where(Server.lease_id == lease.id, col(Server.state).in_(UP))
        .values(state="deleting", retry_at=now)
    )
    verb = "released" if new == State.RELEASING else "ended"
    audit(session, now, actor, "release" if new == State.RELEASING else "expire", lease.id)
    for audience in audiences(session, lease):
        enqueue(
            session,
            Kind.RELEASED,
            audience,
            f"Lease #{lease.id} ({shape(lease)}) has {verb}; its servers are being deleted.",
            now,
            lease.id,
        )
    return True


def advance_reclaim(lab: Lab, lease_id: int, now: datetime) -> None:
    """One step of deletion for every server of the lease that is due, then settle the lease."""
    delete_due(lab, lease_id, now)
    _settle(lab, lease_id, now)


def delete_due(lab: Lab, lease_id: int, now: datetime) -> None:
    """One delete attempt for every server of the lease queued for deletion and due. Also used
    while a lease provisions or runs, for devices that failed or were given up."""
    with lab.db.read() as session:
        due = session.exec(
            select(Server).where(
                Server.lease_id == lease_id,
                Server.state == "deleting",
                col(Server.retry_at) <= now,
            )
        ).all()
    # Claim the deletes first, in one statement, so a release and a sweep (or two sweeps)
    # racing on one lease send one delete per server; a claim lapses after CONFIRM if its
    # holder dies.
    due = _claim_deletes(lab, due, now)
    if not due:
        return
    workers = max(1, min(lab.policy.provider_concurrency, len(due)))
    with ThreadPoolExecutor(workers, thread_name_prefix=f"delete-{lease_id}") as pool:
        sent = pool.map(
            lambda batch: _send_deletes(lab, batch, now),
            batches(due, workers, lab.provider.max_batch),
        )
        accepted = [server for batch in sent for server in batch]
    _confirm_gone(lab, lease_id, accepted, now)


def _claim_deletes(lab: Lab, servers: list[Server], now: datetime) -> list[Server]:
    """The servers whose delete this caller now holds: only those its conditional UPDATE
    changed."""
    if not servers:
        return []
    with lab.db.write() as session:
        taken = set(
            session.exec(
                update(Server)
                .where(
                    col(Server.id).in_([s.id for s in servers]),
                    Server.state == "deleting",
                    col(Server.retry_at) <= now,
                )
                .values(retry_at=now + CONFIRM)
                .returning(Server.id)
            ).scalars()
        )
    return [s for s in servers if s.id in taken]


def next_delete_at(session: Session, lease_id: int) -> datetime | None:
    """When the next queued delete of the lease is due, if any."""
    return session.exec(
        select(func.min(Server.retry_at)).where(
            Server.lease_id == lease_id, Server.state == "deleting"
        )
    ).one()


def _send_deletes(lab: Lab, servers: list[Server], now: datetime) -> list[Server]:
    """One provider call for a batch of servers; returns those whose delete the provider
    accepted. A server whose device never existed is gone at once."""
    _mark_gone(lab, [s for s in servers if s.provider_id is None], now)
    sending = [s for s in servers if s.provider_id is not None]
    if not sending:
        return []
    try:
        errors = lab.provider.delete_many([s.provider_id for s in sending])
    except Exception as error:
        errors = [error] * len(sending)
    for server, error in zip(sending, errors, strict=True):
        if error is not None:
            _record_delete_failure(lab, server, now, error)
    return [s for s, error in zip(sending, errors, strict=True) if error is None]


def _confirm_gone(lab: Lab, lease_id: int, servers: list[Server], now: datetime) -> None:
    """A delete counts once the device is gone. One list call for the lease confirms them all
    (a 500-server lease costs a few paged requests, not 500 gets), and one transaction records
    them; what is still there, or cannot be checked now, is looked at again shortly."""
    if not servers:
        return
    try:
        present = {d.id for d in lab.provider.list(lease_tag(lease_id))}
    except Exception as error:
        log.warning("lease %s: cannot confirm deletes yet: %s", lease_id, error)
        present = {s.provider_id for s in servers}
    _retry_later(lab, [s for s in servers if s.provider_id in present], now + CONFIRM)
    _mark_gone(lab, [s for s in servers if s.provider_id not in present], now)


def _mark_gone(lab: Lab, servers: list[Server], now: datetime) -> None:
    if not servers:
        return
    with lab.db.write() as session:
        lease = session.get(Lease, servers[0].lease_id)
        stops = billing_stops(lease, now)
        settled = []
        for server in servers:
            gone_at = now if server.active_at and stops < server.active_at else stops
            gone = session.exec(
                update(Server)
                .where(col(Server.id) == server.id, Server.state == "deleting")
                .values(state="deleted", deleted_at=gone_at, retry_at=None, last_error="")
            )
            if gone.rowcount == 1:
                settled.append(session.get(Server, server.id))
        settle_spend(session, settled, lease)


def _retry_later(lab: Lab, servers: list[Server], at: datetime) -> None:
    if not servers:
        return
    with lab.db.write() as session:
        session.exec(
            update(Server)
            .where(col(Server.id).in_([s.id for s in servers]), Server.state == "deleting")
            .values(retry_at=at)
        )


def _record_delete_failure(lab: Lab, server: Server, now: datetime, error: Exception) -> None:
    with lab.db.write() as session:
        lease = locked(session, Lease, server.lease_id)  # the lease first: it may be quarantined
        row = locked(session, Server, server.id)
        if row is None or row.state != "deleting":
            return
        row.delete_attempts += 1
        row.last_error = str(error)[:500]
        delay = timedelta(seconds=30 * 2 ** min(row.delete_attempts - 1, 10))
        row.retry_at = now + min(delay, QUARANTINE_RETRY)
        session.add(row)
        audit(
            session,
            now,
            "system",
            "delete",
            row.lease_id,
            "failed",
            hostname=row.hostname,
            device=row.provider_id,
            attempt=row.delete_attempts,
            error=row.last_error,
        )
        give_up = row.delete_attempts >= lab.policy.delete_attempts
        if give_up and lease.state in (State.RELEASING, State.EXPIRING, State.QUARANTINED):
            # Quarantined: the admins know; keep trying hourly, as their alert says.
            row.retry_at = now + QUARANTINE_RETRY
        if give_up and lease.state in (State.RELEASING, State.EXPIRING):
            _quarantine(session, lease, row, now)


def _quarantine(session: Session, lease: Lease, server: Server, now: datetime) -> None:
    move(session, lease, State.QUARANTINED, due_at=server.retry_at)
    audit(session, now, "system", "quarantine", lease.id, hostname=server.hostname)
    enqueue(
        session,
        Kind.ADMIN_ALERT,
        ADMIN,
        f"Lease #{lease.id} is quarantined: deleting {server.hostname} (device "
        f"{server.provider_id}) failed {server.delete_attempts} times ({server.last_error}). "
        "It may still be billing. labbot keeps retrying hourly; after cleaning up by hand, run "
        f"`labbot resolve {lease.id}`.",
        now,
        lease.id,
        alert="quarantined",
    )


def _settle(lab: Lab, lease_id: int, now: datetime) -> None:
    with lab.db.write() as session:
        lease = locked(session, Lease, lease_id)
        if lease is None:
            return
        left = session.exec(
            select(Server.retry_at).where(
                Server.lease_id == lease_id, col(Server.state).in_([*UP, "deleting"])
            )
        ).all()
        if left:
            retries = [at for at in left if at is not None]
            lease.due_at = min(retries) if retries else now + CONFIRM
            session.add(lease)
            return
        if lease.state == State.FAILED:
            lease.due_at = None
            session.add(lease)
            return
        if lease.state in (State.RELEASING, State.EXPIRING, State.QUARANTINED):
            finish(session, lab, lease, now, "system")


def finish(session: Session, lab: Lab, lease: Lease, now: datetime, actor: str) -> None:
    remind_at = now + lab.policy.writeup_after  # the write-up's one reminder, if none came
    move(session, lease, State.RECLAIMED, due_at=None, writeup_remind_at=remind_at)
    audit(session, now, actor, "reclaimed", lease.id)
    enqueue(
        session,
        Kind.RECLAIMED,
        owner(lease.owner),
        f"Lease #{lease.id} is over and every server is deleted. Thank you for using the lab!",
        now,
        lease.id,
    )
    enqueue(
        session,
        Kind.WRITEUP_REQUEST,
        owner(lease.owner),
        f"How did lease #{lease.id} go for {lease.project}? The lab asks every project for a "
        "short write-up, good or bad: send us a link to a blog post or an issue.",
        now,
        lease.id,
    )


def resolve(lab: Lab, actor: str, lease_id: int, now: datetime) -> Outcome:
    """An admin cleaned a quarantined lease up by hand: mark its servers gone and close it."""
    if not lab.roles.is_admin(actor):
        return refuse(
            lab, now, actor, "resolve", "Only admins can resolve a quarantined lease.", lease_id
        )
    with lab.db.write() as session:
        lease = locked(session, Lease, lease_id)
        if lease is None:
            problem = not_found(lease_id)
        elif lease.state != State.QUARANTINED:
            problem = wrong_state(lease, "resolved", "a quarantined lease")
        else:
            problem = None
            left = session.exec(
                select(Server).where(Server.lease_id == lease_id, Server.state == "deleting")
            ).all()
            for server in left:
                server.state, server.deleted_at, server.retry_at = "deleted", now, None
                session.add(server)
            settle_spend(session, list(left), lease)
            finish(session, lab, lease, now, actor)
    if problem:
        return refuse(lab, now, actor, "resolve", problem, lease_id)
    lab.flush_notices(now, lease_id)
    return Outcome(True, f"Lease #{lease_id} resolved by hand and closed.", lease_id)
