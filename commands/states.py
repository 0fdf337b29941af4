"""Vocabulary: the lease state machine: one table of allowed transitions, as OpenStack Blazar keeps
it."""

from __future__ import annotations

from enum import StrEnum


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
    State.APPROVED: frozenset({State.PROVISIONING}),
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
