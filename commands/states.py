"""Vocabulary: the state machines, each one table of allowed transitions, as OpenStack Blazar
keeps them: a lease's, a server's and an extension request's. Everything else is refused (`move()`
and the server and extension moves in commands/lab.py check these tables).

The lease's states are defined here; the server's and the extension's are defined in
storage/statuses.py (storage's table models give those columns their defaults and may not import
commands/) and re-exported here, so a use case imports every state from this module."""

from __future__ import annotations

from enum import StrEnum

from storage.statuses import ExtensionState, ServerState


class State(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    CANCELLED = "cancelled"
    EXPIRED_REQUEST = "expired_request"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    FAILED = "failed"
    RELEASING = "releasing"
    EXPIRING = "expiring"
    RECLAIMED = "reclaimed"
    QUARANTINED = "quarantined"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING: frozenset(
        {State.APPROVED, State.DENIED, State.CANCELLED, State.EXPIRED_REQUEST}
    ),
    # A booking approved ahead may be cancelled before its servers are prepared.
    State.APPROVED: frozenset({State.PROVISIONING, State.CANCELLED}),
    State.PROVISIONING: frozenset({State.ACTIVE, State.FAILED}),
    State.ACTIVE: frozenset({State.RELEASING, State.EXPIRING}),
    State.RELEASING: frozenset({State.RECLAIMED, State.QUARANTINED}),
    State.EXPIRING: frozenset({State.RECLAIMED, State.QUARANTINED}),
    State.QUARANTINED: frozenset({State.RECLAIMED}),
}

# Leases whose servers exist or are about to, and so hold credit.
LIVE = frozenset({State.APPROVED, State.PROVISIONING, State.ACTIVE})
# Leases whose servers must be deleted before the story ends. A failed lease keeps deleting
# whatever its provisioning managed to create.
RECLAIMING = frozenset({State.RELEASING, State.EXPIRING, State.QUARANTINED, State.FAILED})
TERMINAL = frozenset(
    {State.DENIED, State.CANCELLED, State.EXPIRED_REQUEST, State.RECLAIMED, State.FAILED}
)

DESCRIPTIONS: dict[State, str] = {
    State.PENDING: "waiting for a reviewer",
    State.APPROVED: "approved, about to be provisioned",
    State.DENIED: "denied by a reviewer",
    State.CANCELLED: "cancelled by its owner",
    State.EXPIRED_REQUEST: "expired: nobody decided in time",
    State.PROVISIONING: "servers being provisioned",
    State.ACTIVE: "servers running",
    State.FAILED: "provisioning failed; credit released",
    State.RELEASING: "released; servers being deleted",
    State.EXPIRING: "ended; servers being deleted",
    State.RECLAIMED: "over; every server deleted",
    State.QUARANTINED: "deletes keep failing; an admin is looking",
}


def can_transition(old: State | str, new: State | str) -> bool:
    return State(new) in TRANSITIONS.get(State(old), frozenset())


# A server row. `pending` -> `provisioning` and `creating` -> `pending` are the lost-create
# recovery (a device found by tag and hostname is adopted; none found: create again); a server
# still on its way when its lease fails, ends or gives it up is deleted; `provisioning` ->
# `deleted` is a device that vanished while coming up.
SERVER_TRANSITIONS: dict[ServerState, frozenset[ServerState]] = {
    ServerState.PENDING: frozenset(
        {ServerState.CREATING, ServerState.PROVISIONING, ServerState.DELETING}
    ),
    ServerState.CREATING: frozenset(
        {
            ServerState.PENDING,
            ServerState.PROVISIONING,
            ServerState.FAILED,
            ServerState.DELETING,
        }
    ),
    ServerState.PROVISIONING: frozenset(
        {ServerState.ACTIVE, ServerState.DELETING, ServerState.DELETED}
    ),
    ServerState.ACTIVE: frozenset({ServerState.DELETING, ServerState.VANISHED}),
    ServerState.DELETING: frozenset({ServerState.DELETED}),
}

# An extension beyond policy, waiting for a reviewer: decided once.
EXTENSION_TRANSITIONS: dict[ExtensionState, frozenset[ExtensionState]] = {
    ExtensionState.PENDING: frozenset({ExtensionState.APPROVED, ExtensionState.DENIED}),
}


def server_can_move(old: ServerState | str, new: ServerState | str) -> bool:
    return ServerState(new) in SERVER_TRANSITIONS.get(ServerState(old), frozenset())


def extension_can_move(old: ExtensionState | str, new: ExtensionState | str) -> bool:
    return ExtensionState(new) in EXTENSION_TRANSITIONS.get(ExtensionState(old), frozenset())
