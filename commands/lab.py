"""Kernel: what every use case needs, and the one way a lease changes state.

`Lab` bundles the database, the donors and each one's provider, the notifier and the rules;
each use case takes it plus the actor and `now`, and returns an `Outcome` rather than raising,
so every front end (Slack, CLI, demo, tests) can show the sentence to a person. A refusal also
carries a `Code`, the same for every wording of one kind of "no", written to the audit log
beside the sentence, so a program (a test, an admin filtering the log, a front end) reads the
kind without the words.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import Update, insert, update
from sqlmodel import Session, col

from commands.notices import Notifier, deliver
from commands.policy import Policy, Roles
from commands.states import (
    ExtensionState,
    ServerState,
    State,
    can_transition,
    extension_can_move,
    server_can_move,
)
from metal.forge import Forge
from metal.provider import Catalog, Provider, union
from storage.claims import replica_name
from storage.db import Database
from storage.models import AuditEvent, Lease, PendingExtension, Server

log = logging.getLogger(__name__)


@dataclass
class Lab:
    db: Database
    provider: Provider
    notifier: Notifier | None  # None: notices wait in the outbox for the process that sends
    policy: Policy = field(default_factory=Policy)
    roles: Roles = field(default_factory=Roles)
    catalog: Catalog | None = None
    forge: Forge | None = None  # None: repositories are not checked (the check stays pending)
    replica: str = field(default_factory=replica_name)  # who this process's claims name
    # Each donor's provider account (the donors themselves are rules: `policy.donors()`).
    # Without them, the one donor's is `provider`, which is always the first donor's.
    providers: dict[str, Provider] = field(default_factory=dict)
    # Each donor's own catalog (its plans at its prices), asked of its provider once and kept;
    # `catalog` is all of them together (`union`), what the form and the menus offer.
    catalogs: dict[str, Catalog] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.providers = self.providers or {self.policy.donors()[0].name: self.provider}
        if self.catalog is not None and not self.catalogs and len(self.providers) == 1:
            self.catalogs = {next(iter(self.providers)): self.catalog}

    def provider_of(self, donor: str) -> Provider:
        """The provider account of `donor` (a lease's `donor`)."""
        return self.providers[donor]

    def for_donor(self, donor: str) -> Lab:
        """This lab with `donor`'s provider as its `provider`: the lease-life jobs take their
        provider from `lab.provider`, so a donor's leases are stepped through the Lab for that
        donor (the sweep steps each donor's leases apart, so one failing provider holds up no
        other donor's leases)."""
        provider = self.provider_of(donor)
        return self if provider is self.provider else replace(self, provider=provider)

    def catalog_of(self, donor: str) -> Catalog:
        """`donor`'s own catalog, asked of its provider once and then kept (raises what the
        provider raises while it cannot say)."""
        if donor not in self.catalogs:
            self.catalogs[donor] = self.provider_of(donor).catalog()
        return self.catalogs[donor]

    def plans(self) -> Catalog:
        """The donors' catalogs together, asked once and then kept (the reconcile reads them
        again). A donor whose provider cannot say now is left out until then (the others' plans
        stay on offer); when none can, the first one's error is raised."""
        if self.catalog is not None:
            return self.catalog
        found, failed = [], []
        for donor in self.providers:
            try:
                found.append(self.catalog_of(donor))
            except Exception as error:
                log.warning("donor %s: its provider's catalog cannot be read: %s", donor, error)
                failed.append(error)
        if not found:
            raise failed[0]
        self.catalog = union(found)
        return self.catalog

    def flush_notices(self, now: datetime, lease_id: int | None) -> None:
        """Deliver what the last commit queued for a lease (None: every due notice, as the
        sweep does). Never raises: undelivered notices stay in the outbox for the sweep."""
        if self.notifier is None:
            return
        try:
            deliver(self.db, self.notifier, now, owner=self.replica, lease_id=lease_id)
        except Exception:
            log.exception("delivering notices failed; the sweep will retry")


class Code(StrEnum):
    """Every kind of refusal a use case gives, in one place."""

    NOT_FOUND = "not_found"  # no such lease, extension request, saved key or forge account
    NOT_ALLOWED = "not_allowed"  # the actor's role may not do this to this lease
    WRONG_STATE = "wrong_state"  # the lease is not in a state the action applies to
    ALREADY_DECIDED = "already_decided"  # a reviewer decided the request or extension first
    CHANGED_MEANWHILE = "changed_meanwhile"  # another caller changed it first (a lost race)
    SELF_APPROVAL = "self_approval"  # a reviewer approving their own request, not allowed here
    OVER_BUDGET = "over_budget"  # would over-commit the lab's credit in a month
    OVER_PROJECT_CAP = "over_project_cap"  # would take the project past its monthly cap
    RESERVE = "reserve"  # would eat into the share kept for other open-source projects
    EARMARK = "earmark"  # would take what a donor keeps for named projects or classes
    TOO_LONG = "too_long"  # a text past its length limit
    BAD_INPUT = "bad_input"  # unreadable, or outside policy: the sentence says what would do
    PRIVATE_KEY = "private_key"  # a private SSH key given where a public one belongs
    TOO_MANY = "too_many"  # a limit on how many reached (waiting requests, keys, co-owners)
    FORGE_UNAVAILABLE = "forge_unavailable"  # no forge configured, or it cannot answer now
    PROVIDER_REFUSED = "provider_refused"  # the provider would not do what the action needs
    NOT_OFFERED = "not_offered"  # the plan is not offered in (every) metro asked for
    NO_DONOR = "no_donor"  # no donor's catalog, terms or dates allow it (or the one named)
    DONOR_ENDS = "donor_ends"  # the lease would run past the end of its donor's credit
    BAD_START = "bad_start"  # a booking's start or end: unreadable, past, too far, a DST gap
    NO_CAPACITY = "no_capacity"  # the window would pass a plan's capacity in a metro (calendar)


class Refusal(NamedTuple):
    """A "no" before it is said: its kind and its sentence."""

    code: Code
    message: str


@dataclass(frozen=True)
class Outcome:
    """What a use case answers. `code` names the kind of a refusal (`Code`); a success has
    None, since a program tells successes apart by `ok` and what changed, not by a kind."""

    ok: bool
    message: str
    lease_id: int | None = None
    errors: dict[str, str] = field(default_factory=dict)
    code: Code | None = None


def audit(
    session: Session,
    now: datetime,
    actor: str,
    action: str,
    lease_id: int | None = None,
    outcome: str = "ok",
    **details: Any,
) -> None:
    session.add(AuditEvent(**_event(now, actor, action, lease_id, outcome, details)))


def audit_all(
    session: Session, now: datetime, actor: str, action: str, details: dict[int, dict[str, Any]]
) -> None:
    """`audit` of one action on many leases ({lease id: details}) in one statement, for the
    sweep's passes, where building an ORM object per event cost more than the insert."""
    audit_rows(
        session, [_event(now, actor, action, lease_id, "ok", d) for lease_id, d in details.items()]
    )


def audit_event(
    now: datetime,
    actor: str,
    action: str,
    lease_id: int | None = None,
    outcome: str = "ok",
    **details: Any,
) -> dict[str, Any]:
    """An event as `audit` records it, for `audit_rows` to record with others."""
    return _event(now, actor, action, lease_id, outcome, details)


def audit_rows(session: Session, events: list[dict[str, Any]]) -> None:
    """Events made by `audit_event`, in one statement (SQLite inserts ORM objects one
    statement each, to read back their ids)."""
    if events:
        session.execute(insert(AuditEvent), events)


def _event(
    now: datetime,
    actor: str,
    action: str,
    lease_id: int | None,
    outcome: str,
    details: dict[str, Any],
) -> dict[str, Any]:
    return {
        "at": now,
        "actor": actor,
        "action": action,
        "lease_id": lease_id,
        "outcome": outcome,
        "details": json.dumps(details, default=str, sort_keys=True) if details else "",
    }


def refuse(
    lab: Lab,
    now: datetime,
    actor: str,
    action: str,
    why: Refusal,
    lease_id: int | None = None,
    errors: dict[str, str] | None = None,
) -> Outcome:
    """Say no: one sentence for the person, and the same sentence with its code in the audit
    log (`details` holds `code` beside `reason`, for an admin to filter by)."""
    with lab.db.write() as session:
        audit(session, now, actor, action, lease_id, "refused", code=why.code, reason=why.message)
    return Outcome(False, why.message, lease_id, errors or {}, why.code)


class LostRace(Exception):
    """Another caller changed the lease first. `move()` raises it inside the write transaction,
    so everything the loser wrote there rolls back; the use case catches it only to tell its
    person what happened instead."""

    def __init__(self, lease_id: int, wanted: State) -> None:
        super().__init__(f"Lease #{lease_id} changed meanwhile; it was not moved to {wanted}.")
        self.lease_id = lease_id


def move(session: Session, lease: Lease, new: State, **values: Any) -> None:
    """Change a lease's state with one conditional UPDATE, or raise `LostRace`.

    The WHERE on the old state is what makes two reviewers clicking at once yield one approval,
    and a release racing the expiry sweep yield one reclaim, on any database: on PostgreSQL the
    second UPDATE waits for the first to commit, then finds the state changed and matches no row.
    A loss is an exception rather than a value, so a caller cannot carry on as if it had won."""
    old = State(lease.state)
    if not can_transition(old, new):
        raise ValueError(f"lease {lease.id}: {old} -> {new} is not a legal transition")
    result = session.exec(
        update(Lease)
        .where(col(Lease.id) == lease.id, col(Lease.state) == old)
        .values(state=new, version=Lease.version + 1, **values)
    )
    if result.rowcount != 1:
        raise LostRace(lease.id, new)
    session.expire(lease)


def move_all(session: Session, leases: list[Lease], new: State, **values: Any) -> list[Lease]:
    """Change many leases' state with one conditional UPDATE; returns the leases it moved, the
    only ones the caller may act on (the others changed meanwhile: a release, another replica).
    `values` are set on every moved lease."""
    by_state: dict[State, list[int]] = {}
    for lease in leases:
        by_state.setdefault(State(lease.state), []).append(lease.id)
    for old in by_state:
        if not can_transition(old, new):
            raise ValueError(f"{old} -> {new} is not a legal transition")
    won: set[int] = set()
    for old, ids in by_state.items():
        won.update(
            session.scalars(
                update(Lease)
                .where(col(Lease.id).in_(ids), col(Lease.state) == old)
                .values(state=new, version=Lease.version + 1, **values)
                .returning(Lease.id)
            ).all()
        )
    # The session's copies of the moved leases now carry the new values (the ORM UPDATE
    # synchronizes them), so the caller reads them without another SELECT.
    return [lease for lease in leases if lease.id in won]


def servers_moving(
    old: ServerState | Collection[ServerState], new: ServerState, **values: Any
) -> Update:
    """The conditional UPDATE that moves servers from `old` (one state or several) to `new`,
    once the server table allows each move (a ValueError otherwise, as `move()` raises). The
    caller narrows it to its servers and acts only on the rows it changed."""
    olds = [old] if isinstance(old, str) else list(old)
    for state in olds:
        if not server_can_move(state, new):
            raise ValueError(f"server: {state} -> {new} is not a legal transition")
    where = col(Server.state) == olds[0] if len(olds) == 1 else col(Server.state).in_(olds)
    return update(Server).where(where).values(state=new, **values)


def set_state(row: Server | PendingExtension, new: ServerState | ExtensionState) -> None:
    """Change the state of a server or extension row this transaction holds locked
    (storage.locks), itself or through its lease, once its table allows the move (a ValueError
    otherwise)."""
    allowed = server_can_move if isinstance(row, Server) else extension_can_move
    if not allowed(row.state, new):
        raise ValueError(f"{type(row).__name__} {row.id}: {row.state} -> {new} is not legal")
    row.state = new


def not_found(lease_id: int) -> Refusal:
    return Refusal(Code.NOT_FOUND, f"There is no lease #{lease_id}; `list` shows yours.")


def owner_or_admin(
    lab: Lab,
    lease: Lease,
    actor: str,
    verb: str,
    co_owners: Collection[str] | None = None,
    reviewers: bool = False,
) -> Refusal | None:
    """None when `actor` may `verb` the lease: its owner or an admin; its co-owners for the
    verbs that pass them (extend, release); reviewers for the verbs that admit them (extend,
    on a silent team's behalf). Otherwise the sentence, naming exactly who may."""
    allowed = (
        lease.owner == actor
        or actor in (co_owners or ())
        or (reviewers and lab.roles.is_reviewer(actor))
        or lab.roles.is_admin(actor)
    )
    if allowed:
        return None
    who = ", ".join(
        ["its owner"]
        + (["a co-owner"] if co_owners is not None else [])
        + (["a reviewer"] if reviewers else [])
    )
    return Refusal(
        Code.NOT_ALLOWED,
        f"Lease #{lease.id} is <@{lease.owner}>'s; only {who} or an admin can {verb} it.",
    )


def wrong_state(lease: Lease, verb: str, allowed: str) -> Refusal:
    return Refusal(
        Code.WRONG_STATE, f"Lease #{lease.id} is {lease.state}; only {allowed} can be {verb}."
    )
