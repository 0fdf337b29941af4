"""The state table: every legal transition happens through its use case; every illegal one is
refused, by `move` and by the use cases, with a sentence naming the state and what is allowed."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

import pytest
from sqlalchemy import update

from commands.extend import extend
from commands.lab import Code, LostRace, move, servers_moving, set_state
from commands.provision import provision
from commands.reclaim import release, resolve
from commands.request import cancel
from commands.review import approve, deny
from commands.states import (
    EXTENSION_TRANSITIONS,
    SERVER_TRANSITIONS,
    TERMINAL,
    TRANSITIONS,
    ExtensionState,
    ServerState,
    State,
    can_transition,
)
from commands.sweep import sweep
from storage.models import Lease, PendingExtension, Server
from tests.commands.helpers import (
    active,
    approved,
    audits,
    file,
    lease,
    live_devices,
    servers,
    snapshot,
)
from tests.conftest import ADMIN, OTHER, OWNER, REVIEWER, make_lab, with_policy

LEGAL = sorted((old, new) for old, targets in TRANSITIONS.items() for new in targets)
ILLEGAL = [
    (old, new)
    for old, new in itertools.product(State, State)
    if new not in TRANSITIONS.get(old, frozenset())
]


def test_the_table_is_the_one_in_the_design():
    assert (
        sorted(
            [
                (State.PENDING, State.APPROVED),
                (State.PENDING, State.DENIED),
                (State.PENDING, State.CANCELLED),
                (State.PENDING, State.EXPIRED_REQUEST),
                (State.APPROVED, State.PROVISIONING),
                (State.APPROVED, State.CANCELLED),
                (State.PROVISIONING, State.ACTIVE),
                (State.PROVISIONING, State.FAILED),
                (State.ACTIVE, State.RELEASING),
                (State.ACTIVE, State.EXPIRING),
                (State.RELEASING, State.RECLAIMED),
                (State.RELEASING, State.QUARANTINED),
                (State.EXPIRING, State.RECLAIMED),
                (State.EXPIRING, State.QUARANTINED),
                (State.QUARANTINED, State.RECLAIMED),
            ]
        )
        == LEGAL
    )
    for state in TERMINAL:
        assert not TRANSITIONS.get(state), f"{state} is terminal but has a way out"


def test_move_refuses_every_illegal_transition_and_changes_nothing(lab, clock):
    lease_id = file(lab, clock)
    for old, new in ILLEGAL:
        with lab.db.write() as session:
            session.exec(update(Lease).where(Lease.id == lease_id).values(state=old))
        before = snapshot(lab.db)
        with lab.db.write() as session:
            row = session.get(Lease, lease_id)
            with pytest.raises(ValueError, match=f"{old} -> {new} is not a legal transition"):
                move(session, row, new)
        assert snapshot(lab.db) == before
        assert not can_transition(old, new)


def test_move_wins_only_from_the_state_it_read(lab, clock):
    lease_id = file(lab, clock)
    with lab.db.write() as session:
        stale = session.get(Lease, lease_id)
        session.expunge(stale)
    approve(lab, REVIEWER, lease_id, clock.now)
    with lab.db.write() as session:
        assert stale.state == State.PENDING
        with pytest.raises(LostRace):
            move(session, stale, State.DENIED)
    assert lease(lab.db, lease_id).state != State.DENIED


def test_a_server_moves_only_as_its_table_allows():
    for old, new in itertools.product(ServerState, ServerState):
        if new in SERVER_TRANSITIONS.get(old, frozenset()):
            servers_moving(old, new)  # a statement, not yet run
            continue
        with pytest.raises(ValueError, match=f"{old} -> {new} is not a legal transition"):
            servers_moving(old, new)
        row = Server(id=1, lease_id=1, hostname="h", plan="p", metro="m", hourly_cents=1)
        row.state = old
        with pytest.raises(ValueError):
            set_state(row, new)
        assert row.state == old
    for gone in (ServerState.DELETED, ServerState.FAILED, ServerState.VANISHED):
        assert not SERVER_TRANSITIONS.get(gone), f"{gone} is terminal but has a way out"


def test_an_extension_request_is_decided_once(clock):
    decided = {ExtensionState.APPROVED, ExtensionState.DENIED}
    assert dict(EXTENSION_TRANSITIONS) == {ExtensionState.PENDING: decided}
    ext = PendingExtension(lease_id=1, seconds=3600, requested_by=OWNER, requested_at=clock.now)
    set_state(ext, ExtensionState.APPROVED)
    with pytest.raises(ValueError, match="approved -> denied is not legal"):
        set_state(ext, ExtensionState.DENIED)
    assert ext.state == ExtensionState.APPROVED


# Every legal transition, through the use case that makes it ------------------------------


def test_pending_to_approved_to_provisioning_to_active(lab, clock):
    lease_id = file(lab, clock)
    assert approve(lab, REVIEWER, lease_id, clock.now).ok
    row = lease(lab.db, lease_id)
    assert row.state == State.PROVISIONING
    assert row.decided_by == REVIEWER
    assert [a.action for a in audits(lab.db, lease_id)][:3] == ["request", "approve", "provision"]
    clock.advance(minutes=3)
    sweep(lab, clock.now)
    row = lease(lab.db, lease_id)
    assert row.state == State.ACTIVE
    # The lease clock starts when the servers are active, not when the request was filed.
    assert row.starts_at == clock.now
    assert row.ends_at == clock.now + timedelta(hours=48)
    assert len(live_devices(lab, lease_id)) == 3


def test_pending_to_denied(lab, clock):
    lease_id = file(lab, clock)
    outcome = deny(lab, REVIEWER, lease_id, "not for the lab", clock.now)
    assert outcome.ok and outcome.message == f"Lease #{lease_id} denied."
    row = lease(lab.db, lease_id)
    assert (row.state, row.reason, row.due_at) == (State.DENIED, "not for the lab", None)


def test_pending_to_cancelled(lab, clock):
    lease_id = file(lab, clock)
    assert cancel(lab, OWNER, lease_id, clock.now).ok
    assert lease(lab.db, lease_id).state == State.CANCELLED


def test_pending_to_expired_request(lab, clock):
    lease_id = file(lab, clock)
    sweep(lab, clock.now + lab.policy.decide_within - timedelta(seconds=1))
    assert lease(lab.db, lease_id).state == State.PENDING
    sweep(lab, clock.now + lab.policy.decide_within)
    row = lease(lab.db, lease_id)
    assert (row.state, row.due_at) == (State.EXPIRED_REQUEST, None)


def test_approved_to_provisioning_by_an_admin(lab, clock):
    lease_id = file(lab, clock)
    with lab.db.write() as session:
        move(session, session.get(Lease, lease_id), State.APPROVED, decided_by=REVIEWER)
    refused = provision(lab, REVIEWER, lease_id, clock.now)
    assert refused.code == Code.NOT_ALLOWED
    assert provision(lab, ADMIN, lease_id, clock.now).ok
    assert lease(lab.db, lease_id).state == State.PROVISIONING
    assert len(servers(lab.db, lease_id)) == 3


def test_provisioning_to_failed(lab, clock):
    lab = with_policy(lab, create_attempts=1)
    lab.provider.fail_next_creates(3)
    lease_id = approved(lab, clock)
    row = lease(lab.db, lease_id)
    assert row.state == State.FAILED
    assert "could not create the servers" in row.reason


def test_active_to_releasing_to_reclaimed(lab, clock):
    lease_id = active(lab, clock)
    outcome = release(lab, OWNER, lease_id, clock.now)
    assert outcome.ok
    assert lease(lab.db, lease_id).state == State.RECLAIMED
    assert live_devices(lab, lease_id) == []
    assert [a.action for a in audits(lab.db, lease_id)][-2:] == ["release", "reclaimed"]


def test_active_to_expiring_to_reclaimed(lab, clock):
    lease_id = active(lab, clock)
    row = lease(lab.db, lease_id)
    sweep(lab, row.ends_at + lab.policy.grace)
    assert lease(lab.db, lease_id).state == State.RECLAIMED
    assert "expire" in [a.action for a in audits(lab.db, lease_id)]


def test_releasing_to_quarantined_to_reclaimed_by_resolve(lab, clock):
    lab = with_policy(lab, delete_attempts=1)
    lease_id = active(lab, clock)
    lab.provider.fail_deletes(servers(lab.db, lease_id)[0].provider_id, 10)
    release(lab, OWNER, lease_id, clock.now)
    assert lease(lab.db, lease_id).state == State.QUARANTINED
    assert resolve(lab, ADMIN, lease_id, clock.now).ok
    assert lease(lab.db, lease_id).state == State.RECLAIMED


def test_expiring_to_quarantined_to_reclaimed_when_a_later_delete_succeeds(lab, clock):
    lab = with_policy(lab, delete_attempts=2)
    lease_id = active(lab, clock)
    stuck = servers(lab.db, lease_id)[1].provider_id
    lab.provider.fail_deletes(stuck, 2)
    end = lease(lab.db, lease_id).ends_at + lab.policy.grace
    sweep(lab, end)
    assert lease(lab.db, lease_id).state == State.EXPIRING
    sweep(lab, end + timedelta(minutes=1))
    assert lease(lab.db, lease_id).state == State.QUARANTINED
    sweep(lab, end + timedelta(hours=2))
    assert lease(lab.db, lease_id).state == State.RECLAIMED
    assert live_devices(lab) == []


# Every illegal action, through the use cases ----------------------------------------------


def _refused(lab, outcome, lease_id, before, code, *phrases):
    """Refused with `code`, nothing changed, and the refusal audited with its code and
    sentence; `phrases` are words the person must read in it (who may act instead)."""
    assert (outcome.ok, outcome.code) == (False, code), outcome.message
    for phrase in phrases:
        assert phrase in outcome.message, outcome.message
    assert snapshot(lab.db) == before
    last = audits(lab.db)[-1]
    assert (last.outcome, last.lease_id) == ("refused", lease_id)
    assert json.loads(last.details) == {"code": code, "reason": outcome.message}


def test_acting_on_a_lease_in_the_wrong_state(db, clock):
    lab = make_lab(db, clock)
    pending = file(lab, clock)
    running = active(lab, clock, project="envoy", repo_url="https://github.com/envoyproxy/envoy")
    cases = [
        (lambda: approve(lab, REVIEWER, running, clock.now), running, Code.ALREADY_DECIDED),
        (lambda: deny(lab, REVIEWER, running, "no", clock.now), running, Code.ALREADY_DECIDED),
        (lambda: cancel(lab, OWNER, running, clock.now), running, Code.WRONG_STATE),
        (lambda: release(lab, OWNER, pending, clock.now), pending, Code.WRONG_STATE),
        (
            lambda: extend(lab, OWNER, pending, timedelta(hours=1), clock.now),
            pending,
            Code.WRONG_STATE,
        ),
        (lambda: provision(lab, ADMIN, running, clock.now), running, Code.WRONG_STATE),
        (lambda: resolve(lab, ADMIN, running, clock.now), running, Code.WRONG_STATE),
    ]
    for act, lease_id, code in cases:
        before = snapshot(lab.db)
        _refused(lab, act(), lease_id, before, code)


def test_acting_on_a_finished_lease(lab, clock):
    lease_id = active(lab, clock)
    release(lab, OWNER, lease_id, clock.now)
    for act, code in [
        (lambda: release(lab, OWNER, lease_id, clock.now), Code.WRONG_STATE),
        (lambda: extend(lab, OWNER, lease_id, timedelta(hours=1), clock.now), Code.WRONG_STATE),
        (lambda: cancel(lab, OWNER, lease_id, clock.now), Code.WRONG_STATE),
        (lambda: approve(lab, REVIEWER, lease_id, clock.now), Code.ALREADY_DECIDED),
    ]:
        before = snapshot(lab.db)
        _refused(lab, act(), lease_id, before, code)


def test_acting_on_someone_elses_lease(lab, clock):
    pending = file(lab, clock)
    before = snapshot(lab.db)
    _refused(
        lab,
        cancel(lab, OTHER, pending, clock.now),
        pending,
        before,
        Code.NOT_ALLOWED,
        f"<@{OWNER}>'s",
        "only its owner or an admin can cancel it",
    )
    running = active(lab, clock, project="envoy", repo_url="https://github.com/envoyproxy/envoy")
    for act, who in [
        (lambda: release(lab, OTHER, running, clock.now), "a co-owner or an admin can release"),
        (
            lambda: extend(lab, OTHER, running, timedelta(hours=1), clock.now),
            "a co-owner, a reviewer or an admin can extend",
        ),
    ]:
        before = snapshot(lab.db)
        _refused(lab, act(), running, before, Code.NOT_ALLOWED, f"only its owner, {who} it")
    # An admin may act on anyone's lease.
    assert release(lab, ADMIN, running, clock.now).ok


def test_only_reviewers_decide_and_only_admins_resolve(lab, clock):
    lease_id = file(lab, clock)
    for act, code in [
        (lambda: approve(lab, OWNER, lease_id, clock.now), Code.NOT_ALLOWED),
        (lambda: deny(lab, OTHER, lease_id, "x", clock.now), Code.NOT_ALLOWED),
        (
            lambda: approve(lab, REVIEWER, lease_id, clock.now, override="why"),
            Code.NOT_ALLOWED,
        ),
        (lambda: resolve(lab, REVIEWER, lease_id, clock.now), Code.NOT_ALLOWED),
        (lambda: deny(lab, REVIEWER, lease_id, "  ", clock.now), Code.BAD_INPUT),
    ]:
        before = snapshot(lab.db)
        _refused(lab, act(), lease_id, before, code)
    assert lease(lab.db, lease_id).state == State.PENDING


def test_acting_on_a_lease_that_does_not_exist(lab, clock):
    for act in [
        lambda: approve(lab, REVIEWER, 99, clock.now),
        lambda: deny(lab, REVIEWER, 99, "x", clock.now),
        lambda: cancel(lab, OWNER, 99, clock.now),
        lambda: release(lab, OWNER, 99, clock.now),
        lambda: extend(lab, OWNER, 99, timedelta(hours=1), clock.now),
        lambda: provision(lab, ADMIN, 99, clock.now),
        lambda: resolve(lab, ADMIN, 99, clock.now),
    ]:
        before = snapshot(lab.db)
        _refused(lab, act(), 99, before, Code.NOT_FOUND)
