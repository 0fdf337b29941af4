"""People: co-owners, the people a lease's owner shares it with.

A co-owner gets the lease's ready DM and reminders, may extend or release it, and has their saved
keys put on every server created for it after they were added. Removing one is audited, and the
sentence says what labbot cannot do: take their key off a server that is already running.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from commands.facts import shape
from commands.keys import HOW_TO_ADD, has_saved_key
from commands.lab import Code, Lab, Outcome, Refusal, audit, not_found, owner_or_admin, refuse
from commands.notices import Kind, enqueue, owner
from commands.policy import MAX_CO_OWNERS
from commands.states import ServerState, State
from storage.models import CoOwner, Lease, Server

SHAREABLE = (State.PENDING, State.APPROVED, State.PROVISIONING, State.ACTIVE)
STAYS_ON_SERVERS = (
    "their keys stay on the servers already running (labbot cannot reach into a running "
    "server), so remove them from ~/.ssh/authorized_keys there, or release the lease, if they "
    "must lose access now"
)


def co_owner_ids(session: Session, lease_id: int) -> list[str]:
    return co_owners_of(session, [lease_id])[lease_id]


def co_owners_of(session: Session, lease_ids: list[int]) -> defaultdict[int, list[str]]:
    """Each lease's co-owners, in the order they were added, read in one query."""
    rows = session.exec(
        select(CoOwner.lease_id, CoOwner.user)
        .where(col(CoOwner.lease_id).in_(lease_ids))
        .order_by(col(CoOwner.added_at))
    ).all()
    people: defaultdict[int, list[str]] = defaultdict(list)
    for lease_id, user in rows:
        people[lease_id].append(user)
    return people


def audiences(session: Session, lease: Lease, co_owners: list[str] | None = None) -> list[str]:
    """Who is told about the lease: its owner, then its co-owners (read here unless given)."""
    people = co_owner_ids(session, lease.id) if co_owners is None else co_owners
    return [owner(lease.owner), *(owner(u) for u in people)]


def add_co_owners(
    session: Session, lease: Lease, users: list[str], actor: str, now: datetime
) -> list[str]:
    """Insert the users not yet co-owners (nor the owner), audit it and tell each of them;
    returns those added. The primary key (lease, user) keeps two shares racing each other from
    adding one person twice."""
    known = {lease.owner, *co_owner_ids(session, lease.id)}
    added = [u for u in dict.fromkeys(users) if u not in known]
    for user in added:
        try:
            with session.begin_nested():
                session.add(CoOwner(lease_id=lease.id, user=user, added_by=actor, added_at=now))
        except IntegrityError:
            added.remove(user)
    if added:
        audit(session, now, actor, "share", lease.id, users=added)
    for user in added:
        _tell_added(session, lease, user, actor, now)
    return added


def share(lab: Lab, actor: str, lease_id: int, users: list[str], now: datetime) -> Outcome:
    with lab.db.write() as session:
        lease = session.get(Lease, lease_id)
        problem = _cannot_change(lab, lease, actor, lease_id, "share")
        current = co_owner_ids(session, lease_id) if lease else []
        if problem is None and len({*current, *users}) > MAX_CO_OWNERS:
            problem = Refusal(
                Code.TOO_MANY,
                f"A lease has at most {MAX_CO_OWNERS} co-owners; lease #{lease_id} has "
                f"{len(current)}; remove one with `/lab unshare {lease_id} @user` first.",
            )
        if problem is None:
            added = add_co_owners(session, lease, users, actor, now)
    if problem:
        return refuse(lab, now, actor, "share", problem, lease_id)
    lab.flush_notices(now, lease_id)
    if not added:
        return Outcome(True, f"Lease #{lease_id} was already shared with them.", lease_id)
    names = ", ".join(f"<@{u}>" for u in added)
    return Outcome(
        True,
        f"Lease #{lease_id} is now shared with {names}: they get its DMs and reminders, may "
        "extend or release it, and their saved keys go on servers created for it from now on.",
        lease_id,
    )


def unshare(lab: Lab, actor: str, lease_id: int, user: str, now: datetime) -> Outcome:
    """The owner or an admin removes a co-owner; a co-owner may also remove themselves."""
    with lab.db.write() as session:
        lease = session.get(Lease, lease_id)
        problem = (
            None
            if lease is not None and actor == user
            else _cannot_change(lab, lease, actor, lease_id, "unshare")
        )
        if problem is None:
            gone = session.exec(
                delete(CoOwner).where(CoOwner.lease_id == lease_id, CoOwner.user == user)
            ).rowcount
            if gone != 1:
                problem = Refusal(
                    Code.NOT_FOUND, f"<@{user}> is not a co-owner of lease #{lease_id}."
                )
        if problem is None:
            running = _has_running_servers(session, lease_id)
            audit(session, now, actor, "unshare", lease_id, user=user, servers_running=running)
            enqueue(
                session,
                Kind.SHARED,
                owner(user),
                f"<@{actor}> removed you from lease #{lease_id} ({lease.project}); you no longer "
                "get its DMs or may extend or release it.",
                now,
                lease_id,
            )
    if problem:
        return refuse(lab, now, actor, "unshare", problem, lease_id)
    lab.flush_notices(now, lease_id)
    keys = f"; {STAYS_ON_SERVERS}" if running else ""
    return Outcome(True, f"<@{user}> is no longer a co-owner of lease #{lease_id}{keys}.", lease_id)


def _cannot_change(
    lab: Lab, lease: Lease | None, actor: str, lease_id: int, verb: str
) -> Refusal | None:
    if lease is None:
        return not_found(lease_id)
    if lease.state not in SHAREABLE:
        return Refusal(
            Code.WRONG_STATE,
            f"Lease #{lease_id} is {lease.state}; only a live lease can be shared.",
        )
    return owner_or_admin(lab, lease, actor, verb)


def _has_running_servers(session: Session, lease_id: int) -> bool:
    return (
        session.exec(
            select(Server.id).where(
                Server.lease_id == lease_id,
                col(Server.state).in_([ServerState.PROVISIONING, ServerState.ACTIVE]),
            )
        ).first()
        is not None
    )


def _tell_added(session: Session, lease: Lease, user: str, actor: str, now: datetime) -> None:
    running = _has_running_servers(session, lease.id)
    if not has_saved_key(session, user):
        keys = f"You have no saved SSH keys, so none of yours will be on its servers: {HOW_TO_ADD}."
    elif running:
        keys = (
            "Your saved keys go on servers created for it from now on; the servers already "
            "running do not carry them (labbot cannot reach into a running server)."
        )
    else:
        keys = "Your saved keys go on its servers."
    enqueue(
        session,
        Kind.SHARED,
        owner(user),
        f"<@{actor}> made you a co-owner of lease #{lease.id} ({shape(lease)} for "
        f"{lease.project}): you get its DMs and reminders and may extend or release it. {keys}",
        now,
        lease.id,
    )
