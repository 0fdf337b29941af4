"""A process that dies between a committed state change and the provider call, and a restart in
the middle of a lifecycle: the next sweep on a fresh Lab finishes the work, nothing is lost and
nothing is done twice.

A crash is a BaseException raised out of the provider: it escapes every `except Exception`, as a
killed process would, and leaves the database as the last commit left it."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from commands.lab import Lab
from commands.notices import Kind
from commands.reclaim import release
from commands.review import approve
from commands.states import ServerState, State
from commands.sweep import sweep
from fakes.notifier import RecordingNotifier
from metal.simulated import SimulatedProvider
from storage.db import Database
from storage.schema import upgrade
from tests.commands.helpers import active, audits, file, lease, servers
from tests.conftest import OWNER, REVIEWER, ROLES, with_policy


class Crash(BaseException):
    """The process died here."""


class CrashingProvider(SimulatedProvider):
    """Dies on the chosen call: before it reaches the provider, or after the provider did it."""

    def __init__(self, *args, crash_on: str, after: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.crash_on, self.after = crash_on, after

    def create(self, spec):
        if self.crash_on == "create" and not self.after:
            raise Crash
        device = super().create(spec)
        if self.crash_on == "create":
            raise Crash
        return device

    def delete(self, device_id):
        if self.crash_on == "delete" and not self.after:
            raise Crash
        super().delete(device_id)
        if self.crash_on == "delete":
            raise Crash


def boot(url, clock, provider_class=SimulatedProvider, **kwargs) -> Lab:
    """A fresh process: a new engine on the same file, a new provider, a new notifier."""
    db = Database(url)
    upgrade(db)
    provider = provider_class(db, clock=clock, provision_seconds=120, **kwargs)
    return Lab(db, provider, RecordingNotifier(), roles=ROLES)


def shutdown(lab: Lab) -> None:
    lab.db.dispose()


def devices_by_hostname(lab: Lab) -> Counter:
    return Counter(d.hostname for d in lab.provider.list_all())


@pytest.mark.parametrize("after", [False, True], ids=["before-create", "after-create"])
def test_a_crash_around_create_is_finished_by_the_next_sweep(database_url, clock, after):
    first = boot(database_url, clock, CrashingProvider, crash_on="create", after=after)
    lease_id = file(first, clock)
    with pytest.raises(Crash):
        approve(first, REVIEWER, lease_id, clock.now)
    assert lease(first.db, lease_id).state == State.PROVISIONING  # committed before the call
    shutdown(first)

    second = boot(database_url, clock)
    for minutes in (1, 5, 3, 3):
        sweep(second, clock.advance(minutes=minutes))
    row = lease(second.db, lease_id)
    assert row.state == State.ACTIVE
    hostnames = [f"coredns-{lease_id}-{n}" for n in (1, 2, 3)]
    assert devices_by_hostname(second) == Counter(hostnames)
    up = [s.hostname for s in servers(second.db, lease_id) if s.state == ServerState.ACTIVE]
    assert sorted(up) == hostnames
    assert len(second.notifier.texts(Kind.READY)) == 1
    shutdown(second)


def test_a_create_cut_short_by_a_crash_is_not_one_of_the_servers_attempts(database_url, clock):
    """The soak's failed lease (issue 21): a replica died with a create in flight that never
    reached the provider. Once its claim lapses, the server still has every attempt, so a
    provider that then refuses once does not fail the lease."""
    first = with_policy(
        boot(database_url, clock, CrashingProvider, crash_on="create"), create_attempts=2
    )
    lease_id = file(first, clock, count=1)
    with pytest.raises(Crash):
        approve(first, REVIEWER, lease_id, clock.now)
    shutdown(first)

    second = with_policy(boot(database_url, clock), create_attempts=2)
    second.provider.fail_next_creates(1)
    sweep(second, clock.advance(minutes=6))  # the claim has lapsed: no device, created again
    assert [a.action for a in audits(second.db, lease_id) if a.outcome == "failed"] == ["create"]
    for minutes in (1, 3):  # the retry is created and comes up
        sweep(second, clock.advance(minutes=minutes))
    assert lease(second.db, lease_id).state == State.ACTIVE
    assert devices_by_hostname(second) == Counter([f"coredns-{lease_id}-1"])
    shutdown(second)


@pytest.mark.parametrize("after", [False, True], ids=["before-delete", "after-delete"])
def test_a_crash_around_delete_is_finished_by_the_next_sweep(database_url, clock, after):
    first = boot(database_url, clock, CrashingProvider, crash_on="none")
    lease_id = active(first, clock)
    first.provider.crash_on, first.provider.after = "delete", after
    with pytest.raises(Crash):
        release(first, OWNER, lease_id, clock.now)
    assert lease(first.db, lease_id).state == State.RELEASING
    shutdown(first)

    second = boot(database_url, clock)
    sweep(second, clock.advance(minutes=1))
    assert lease(second.db, lease_id).state == State.RECLAIMED
    assert second.provider.list_all() == []
    # Deletes already sent before the crash are sent again: deleting is idempotent.
    assert second.provider.calls.count("delete") == 3
    assert [a.action for a in audits(second.db, lease_id) if a.action == "reclaimed"] == [
        "reclaimed"
    ]
    shutdown(second)


def test_a_crash_in_the_expiry_sweep_is_finished_by_the_next(database_url, clock):
    first = boot(database_url, clock, CrashingProvider, crash_on="none")
    lease_id = active(first, clock)
    end = lease(first.db, lease_id).ends_at + first.policy.grace
    clock.now = end
    first.provider.crash_on = "delete"
    with pytest.raises(Crash):
        sweep(first, end)
    assert lease(first.db, lease_id).state == State.EXPIRING
    shutdown(first)

    second = boot(database_url, clock)
    sweep(second, end)  # the claim made before the crash has not lapsed yet
    assert second.provider.calls.count("delete") == 0
    sweep(second, clock.advance(minutes=1))
    assert lease(second.db, lease_id).state == State.RECLAIMED
    assert second.provider.calls.count("delete") == 3
    assert second.provider.list_all() == []
    shutdown(second)


def test_restarts_through_a_whole_lifecycle_lose_nothing_and_repeat_nothing(database_url, clock):
    told: list = []
    creates = deletes = 0

    def restart(lab: Lab | None) -> Lab:
        nonlocal creates, deletes
        if lab is not None:
            told.extend(lab.notifier.messages)
            creates += lab.provider.calls.count("create")
            deletes += lab.provider.calls.count("delete")
            shutdown(lab)
        return boot(database_url, clock)

    lab = restart(None)
    lease_id = file(lab, clock)
    lab = restart(lab)
    approve(lab, REVIEWER, lease_id, clock.now)
    lab = restart(lab)
    sweep(lab, clock.advance(minutes=3))
    assert lease(lab.db, lease_id).state == State.ACTIVE
    ends = lease(lab.db, lease_id).ends_at
    lab = restart(lab)
    sweep(lab, ends - timedelta(hours=24))
    lab = restart(lab)
    sweep(lab, ends - timedelta(hours=24))  # the same moment again, after a restart
    sweep(lab, ends - timedelta(hours=1))
    lab = restart(lab)
    sweep(lab, ends + lab.policy.grace)
    lab = restart(lab)
    sweep(lab, ends + lab.policy.grace + timedelta(minutes=5))
    assert lease(lab.db, lease_id).state == State.RECLAIMED
    assert lab.provider.list_all() == []
    lab = restart(lab)
    shutdown(lab)

    assert (creates, deletes) == (3, 3)
    kinds = Counter(m.kind for m in told)
    assert kinds == Counter(
        {
            Kind.REQUEST_RECEIVED: 1,
            Kind.REVIEW_CARD: 1,
            Kind.DECISION: 1,
            Kind.CARD_DECIDED: 1,
            Kind.PROVISIONING: 1,
            Kind.READY: 1,
            Kind.SERVER_FILES: 1,
            Kind.REMINDER: 2,
            Kind.RELEASED: 1,
            Kind.RECLAIMED: 1,
            Kind.WRITEUP_REQUEST: 1,
        }
    )
    assert len({m.id for m in told}) == len(told)
