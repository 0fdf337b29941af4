"""The promise docs/providers.md makes about the provider-side backstop and the grace hour: the
provider never deletes a server while its lease still runs (end + grace), and labbot does not
reclaim one before then either. Pinned against the fake Packet API, which deletes a device by
itself at its termination_time exactly as Packet did."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from commands.extend import extend
from commands.lab import Code, Lab
from commands.policy import Policy
from commands.states import State
from commands.sweep import sweep
from fakes.notifier import RecordingNotifier
from fakes.packet import FakePacket
from metal.packet import PacketProvider
from storage.db import Database
from tests.conftest import OWNER, ROLES
from tests.metal.conftest import SteppedClock
from tests.metal.test_packet_lifecycle import approved_lease, lease_of, run_until_active

POLICY = Policy()
SECOND = timedelta(seconds=1)


@pytest.fixture
def lab(db: Database, make_provider: Callable[..., PacketProvider]) -> Lab:
    return Lab(db, make_provider(), RecordingNotifier(), POLICY, ROLES)


def termination_times(fake: FakePacket) -> list[datetime]:
    return [datetime.fromisoformat(d["termination_time"]) for d in fake.devices()]


def assert_alive_until_end_and_grace(
    lab: Lab, fake: FakePacket, clock: SteppedClock, lease_id: int
):
    """Every device's backstop is at least end + grace + margin, and at one second before end
    + grace the devices are all there and the lease is still active."""
    lease = lease_of(lab.db, lease_id)
    times = termination_times(fake)
    assert len(times) == lease.count
    assert all(t >= POLICY.backstop(lease.ends_at) for t in times), (times, lease.ends_at)
    clock.now = lease.ends_at + POLICY.grace - SECOND
    sweep(lab, clock.now)
    assert lease_of(lab.db, lease_id).state == State.ACTIVE
    assert len(fake.devices()) == lease.count and not fake.backstop_deleted


def test_after_approval_the_backstop_covers_the_latest_the_lease_can_end(
    lab: Lab, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    approved_at = clock.now
    lease_id = approved_lease(lab, clock)
    run_until_active(lab, clock, lease_id)
    latest_end = approved_at + POLICY.provision_timeout + timedelta(hours=48)
    expected = latest_end + POLICY.grace + POLICY.backstop_margin
    assert termination_times(fake_packet) == [expected] * 3
    assert lease_of(lab.db, lease_id).backstop_at == expected
    assert_alive_until_end_and_grace(lab, fake_packet, clock, lease_id)


def test_a_long_extension_moves_every_backstop_past_the_new_end(
    lab: Lab, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    lease_id = approved_lease(lab, clock)
    run_until_active(lab, clock, lease_id)
    ends = lease_of(lab.db, lease_id).ends_at
    assert extend(lab, OWNER, lease_id, timedelta(days=10), clock.now).ok
    assert lease_of(lab.db, lease_id).ends_at == ends + timedelta(days=10)
    assert_alive_until_end_and_grace(lab, fake_packet, clock, lease_id)


def test_servers_that_come_up_late_get_a_backstop_from_when_they_came_up(
    lab: Lab, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    lease_id = approved_lease(lab, clock)
    clock.advance(timedelta(days=2).total_seconds())  # the sweep was down for two days
    run_until_active(lab, clock, lease_id)
    assert lease_of(lab.db, lease_id).starts_at >= clock.now - timedelta(minutes=5)
    assert_alive_until_end_and_grace(lab, fake_packet, clock, lease_id)


def test_an_extension_the_provider_will_not_back_is_refused_and_the_end_stays(
    lab: Lab, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    lease_id = approved_lease(lab, clock)
    run_until_active(lab, clock, lease_id)
    ends = lease_of(lab.db, lease_id).ends_at
    fake_packet.fail_next("PATCH", "devices/", 422, times=10)
    refused = extend(lab, OWNER, lease_id, timedelta(days=10), clock.now)
    assert refused.code == Code.PROVIDER_REFUSED
    assert lease_of(lab.db, lease_id).ends_at == ends


def test_a_lease_first_swept_inside_its_grace_hour_is_still_active_with_its_servers(
    lab: Lab, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    lease_id = approved_lease(lab, clock)
    run_until_active(lab, clock, lease_id)
    ends = lease_of(lab.db, lease_id).ends_at
    clock.now = ends + POLICY.grace / 2
    sweep(lab, clock.now)
    assert lease_of(lab.db, lease_id).state == State.ACTIVE
    assert len(fake_packet.devices()) == 3
    clock.now = ends + POLICY.grace
    sweep(lab, clock.now)
    assert lease_of(lab.db, lease_id).state != State.ACTIVE
