"""Lease life: taking servers back: release by the owner, expiry by the sweep, and the deletes
behind both.

A delete counts only once the provider confirms the device is gone. A delete that fails is
retried with exponential backoff; after `delete_attempts` failures the lease is quarantined and
the admins are told, and the sweep keeps trying (more slowly) until it succeeds or an admin
resolves it by hand.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from commands.batches import batches
from commands.capacity import forget
from commands.coowners import audiences, co_owner_ids, co_owners_of
from commands.facts import shape
from commands.holds import billing_stops, release_all_holds, settle_all_spend, settle_spend
from commands.lab import (
    Code,
    Lab,
    Outcome,
    Refusal,
    audit,
    audit_all,
    move,
    move_all,
    not_found,
    owner_or_admin,
    refuse,
    servers_moving,
    set_state,
    wrong_state,
)
from commands.notices import ADMIN, Draft, Kind, enqueue, enqueue_all, owner
from commands.states import ServerState, State
from metal.provider import lease_tag
from storage.locks import locked, locked_all
from storage.models import Lease, Server

log = logging.getLogger(__name__)

CONFIRM = timedelta(seconds=30)
QUARANTINE_RETRY = timedelta(hours=1)
UP = (  # a server row that is, or may become, a device
    ServerState.PENDING,
    ServerState.CREATING,
    ServerState.PROVISIONING,
    ServerState.ACTIVE,
)


def release(lab: Lab, actor: str, lease_id: int, now: datetime) -> Outcome:
    with lab.db.write() as session:
        lease = locked(session, Lease, lease_id)
        problem = _cannot_release(lab, lease, actor, lease_id, co_owner_ids(session, lease_id))
        if problem is None:
            donor = lease.donor
            problem = (
                None
                if _begin(session, lease, State.RELEASING, actor, now)
                else Refusal(
                    Code.CHANGED_MEANWHILE, f"Lease #{lease_id} is already being reclaimed."
                )
            )
    if problem:
        return refuse(lab, now, actor, "release", problem, lease_id)
    advance_reclaim(lab.for_donor(donor), lease_id, now)
    lab.flush_notices(now, lease_id)
    return Outcome(True, f"Lease #{lease_id} released; its servers are being deleted.", lease_id)


def _cannot_release(
    lab: Lab, lease: Lease | None, actor: str, lease_id: int, co_owners: list[str]
) -> Refusal | None:
    if lease is None:
        return not_found(lease_id)
    if lease.state != State.ACTIVE:
        return wrong_state(lease, "released", "an active lease (cancel a pending request)")
    return owner_or_admin(lab, lease, actor, "release", co_owners)


def expire(lab: Lab, leases: list[Lease], now: datetime) -> list[int]:
    """active -> expiring for those of `leases` still active and past their end plus grace
    (one transaction for all of them); returns the ids this call moved."""
    with lab.db.write() as session:
        fresh = locked_all(session, Lease, [lease.id for lease in leases])
        due = [
            lease
            for lease in fresh
            if lease.state == State.ACTIVE and now >= lease.ends_at + lab.policy.grace
        ]
        return [lease.id for lease in _begin_all(session, due, State.EXPIRING, "system", now)]


def _begin(session: Session, lease: Lease, new: State, actor: str, now: datetime) -> bool:
    return bool(_begin_all(session, [lease], new, actor, now))


def _begin_all(
    session: Session, leases: list[Lease], new: State, actor: str, now: datetime
) -> list[Lease]:
    """active -> releasing | expiring, and every server queued for deletion, in one commit.
    The conditional state change decides the race between an owner's release and the sweep's
    expiry: exactly one of them wins and queues the deletes. Returns the leases moved here."""
    moved = move_all(
        session,
        [lease for lease in leases if lease.state == State.ACTIVE],
        new,
        ended_at=now,
        due_at=now,
    )
    if not moved:
        return []
    ids = [lease.id for lease in moved]
    release_all_holds(session, moved)
    forget(session, ids)
    session.exec(
        servers_moving(UP, ServerState.DELETING, retry_at=now).where(col(Server.lease_id).in_(ids))
    )
    verb = "released" if new == State.RELEASING else "ended"
    co_owners = co_owners_of(session, ids)
    drafts = []
    action = "release" if new == State.RELEASING else "expire"
    audit_all(session, now, actor, action, {lease.id: {} for lease in moved})
    for lease in moved:
        drafts += [
            Draft(
                Kind.RELEASED,
                audience,
                f"Lease #{lease.id} ({shape(lease)}) has {verb}; its servers are being deleted.",
                lease.id,
            )
            for audience in audiences(session, lease, co_owners[lease.id])
        ]
    enqueue_all(session, drafts, now)
    return moved


def advance_reclaim(lab: Lab, lease_id: int, now: datetime) -> None:
    """One step of deletion for every server of the lease that is due, then settle the lease."""
    advance_reclaim_all(lab, [lease_id], now)


def advance_reclaim_all(lab: Lab, lease_ids: list[int], now: datetime) -> None:
    """`advance_reclaim` for many leases at once: one claim, one pool of deletes, one list
    call to confirm them, one transaction to record them and one to settle the leases."""
    delete_due_all(lab, lease_ids, now)
    _settle_all(lab, lease_ids, now)


def delete_due_all(lab: Lab, lease_ids: list[int], now: datetime) -> None:
    """One delete attempt for every server of the leases queued for deletion and due, sent
    from one pool. Also used while a lease provisions or runs, for devices that failed or were
    given up."""
    if not lease_ids:
        return
    with lab.db.read() as session:
        due = session.exec(
            select(Server).where(
                col(Server.lease_id).in_(lease_ids),
                Server.state == ServerState.DELETING,
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
    with ThreadPoolExecutor(workers, thread_name_prefix="delete") as pool:
        sent = pool.map(
            lambda batch: _send_deletes(lab, batch, now),
            batches(due, workers, lab.provider.max_batch),
        )
        by_lease: dict[int, list[Server]] = defaultdict(list)
        for server in (server for batch in sent for server in batch):
            by_lease[server.lease_id].append(server)
        present = set().union(*pool.map(lambda item: _still_there(lab, *item), by_lease.items()))
    accepted = [server for servers in by_lease.values() for server in servers]
    _retry_later(lab, [s for s in accepted if s.provider_id in present], now + CONFIRM)
    _mark_gone(lab, [s for s in accepted if s.provider_id not in present], now)


def _still_there(lab: Lab, lease_id: int, servers: list[Server]) -> set[str]:
    """A delete counts once the device is gone. One list call per lease (run from the pool)
    confirms all its servers: a 500-server lease costs a few paged requests, not 500 gets.
    Devices still there, or all of them when the provider cannot say now, are looked at again
    shortly."""
    try:
        return {d.id for d in lab.provider.list(lease_tag(lease_id))}
    except Exception as error:
        log.warning("lease %s: cannot confirm deletes yet: %s", lease_id, error)
        return {s.provider_id for s in servers}


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
                    Server.state == ServerState.DELETING,
                    col(Server.retry_at) <= now,
                )
                .values(retry_at=now + CONFIRM)
                .returning(Server.id)
            ).scalars()
        )
    return [s for s in servers if s.id in taken]


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


def _mark_gone(lab: Lab, servers: list[Server], now: datetime) -> None:
    """Record the servers deleted (each by a conditional UPDATE: a racing caller records none
    twice) and settle what they billed. The leases are locked first, then their servers, as
    everywhere: settling may rewrite a live lease's holds."""
    if not servers:
        return
    with lab.db.write() as session:
        leases = {
            lease.id: lease
            for lease in locked_all(session, Lease, {server.lease_id for server in servers})
        }
        by_time: dict[datetime, list[int]] = defaultdict(list)
        for server in servers:
            stops = billing_stops(leases[server.lease_id], now)
            by_time[now if server.active_at and stops < server.active_at else stops].append(
                server.id
            )
        gone: list[int] = []
        for gone_at, ids in by_time.items():
            gone += session.scalars(
                servers_moving(
                    ServerState.DELETING,
                    ServerState.DELETED,
                    deleted_at=gone_at,
                    retry_at=None,
                    last_error="",
                )
                .where(col(Server.id).in_(ids))
                .returning(Server.id)
            ).all()
        settled = session.exec(select(Server).where(col(Server.id).in_(gone))).all()
        settle_all_spend(session, list(settled), leases)


def _retry_later(lab: Lab, servers: list[Server], at: datetime) -> None:
    if not servers:
        return
    with lab.db.write() as session:
        session.exec(
            update(Server)
            .where(
                col(Server.id).in_([s.id for s in servers]),
                Server.state == ServerState.DELETING,
            )
            .values(retry_at=at)
        )


def _record_delete_failure(lab: Lab, server: Server, now: datetime, error: Exception) -> None:
    with lab.db.write() as session:
        lease = locked(session, Lease, server.lease_id)  # the lease first: it may be quarantined
        row = locked(session, Server, server.id)
        if row is None or row.state != ServerState.DELETING:
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


def _settle_all(lab: Lab, lease_ids: list[int], now: datetime) -> None:
    """Finish each lease none of whose servers is left; the others are due again when their
    next delete is."""
    with lab.db.write() as session:
        leases = locked_all(session, Lease, lease_ids)
        left: dict[int, list[datetime | None]] = defaultdict(list)
        for lease_id, retry_at in session.exec(
            select(Server.lease_id, Server.retry_at).where(
                col(Server.lease_id).in_(lease_ids),
                col(Server.state).in_([*UP, ServerState.DELETING]),
            )
        ).all():
            left[lease_id].append(retry_at)
        done = []
        for lease in leases:
            if lease.id in left:
                retries = [at for at in left[lease.id] if at is not None]
                lease.due_at = min(retries) if retries else now + CONFIRM
            elif lease.state == State.FAILED:
                lease.due_at = None
            elif lease.state in (State.RELEASING, State.EXPIRING, State.QUARANTINED):
                done.append(lease)
        finish_all(session, lab, done, now, "system")


def finish(session: Session, lab: Lab, lease: Lease, now: datetime, actor: str) -> None:
    finish_all(session, lab, [lease], now, actor)


def finish_all(session: Session, lab: Lab, leases: list[Lease], now: datetime, actor: str) -> None:
    """Every server gone: the leases are reclaimed, and each owner thanked and asked for the
    write-up."""
    remind_at = now + lab.policy.writeup_after  # the write-up's one reminder, if none came
    moved = move_all(session, leases, State.RECLAIMED, due_at=None, writeup_remind_at=remind_at)
    audit_all(session, now, actor, "reclaimed", {lease.id: {} for lease in moved})
    drafts = []
    for lease in moved:
        drafts.append(
            Draft(
                Kind.RECLAIMED,
                owner(lease.owner),
                f"Lease #{lease.id} is over and every server is deleted. Thank you for using "
                "the lab!",
                lease.id,
            )
        )
        drafts.append(
            Draft(
                Kind.WRITEUP_REQUEST,
                owner(lease.owner),
                f"How did lease #{lease.id} go for {lease.project}? The lab asks every project "
                "for a short write-up, good or bad: send us a link to a blog post or an issue.",
                lease.id,
            )
        )
    enqueue_all(session, drafts, now)


def resolve(lab: Lab, actor: str, lease_id: int, now: datetime) -> Outcome:
    """An admin cleaned a quarantined lease up by hand: mark its servers gone and close it."""
    if not lab.roles.is_admin(actor):
        return refuse(
            lab,
            now,
            actor,
            "resolve",
            Refusal(Code.NOT_ALLOWED, "Only admins can resolve a quarantined lease."),
            lease_id,
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
                select(Server).where(
                    Server.lease_id == lease_id, Server.state == ServerState.DELETING
                )
            ).all()
            for server in left:
                set_state(server, ServerState.DELETED)
                server.deleted_at, server.retry_at = now, None
                session.add(server)
            settle_spend(session, list(left), lease)
            finish(session, lab, lease, now, actor)
    if problem:
        return refuse(lab, now, actor, "resolve", problem, lease_id)
    lab.flush_notices(now, lease_id)
    return Outcome(True, f"Lease #{lease_id} resolved by hand and closed.", lease_id)
