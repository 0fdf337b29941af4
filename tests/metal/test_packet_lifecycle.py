"""The lease engine driving the real packet-python client against the fake Packet API over
HTTPS: what the lab's people would see in the database, the notices and the provider."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from commands.billing import month_key
from commands.credit_report import credit_report
from commands.keys import add_key
from commands.lab import Lab
from commands.notices import Kind
from commands.pubkeys import read_key
from commands.states import ServerState, State
from commands.sweep import sweep
from fakes.keys import public_key
from fakes.notifier import RecordingNotifier
from fakes.packet import FakePacket
from metal.packet import PacketProvider
from metal.provider import TAG, DeviceSpec
from storage.db import Database
from storage.models import Orphan
from tests.conftest import OWNER, ROLES
from tests.metal.conftest import SteppedClock
from tests.metal.lifecycle import POLICY, approved_lease, lease_of, run_until_active, servers_of


@pytest.fixture
def packet_lab(db: Database, make_provider: Callable[..., PacketProvider]) -> Lab:
    return Lab(db, make_provider(), RecordingNotifier(), POLICY, ROLES)


def test_a_whole_lifecycle_through_packet(
    packet_lab: Lab, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    lease_id = approved_lease(packet_lab, clock)
    run_until_active(packet_lab, clock, lease_id)

    devices = fake_packet.devices()
    assert sorted(d["hostname"] for d in devices) == [f"coredns-{lease_id}-{n}" for n in (1, 2, 3)]
    lease = lease_of(packet_lab.db, lease_id)
    for device in devices:
        assert set(device["tags"]) == {TAG, f"lease-{lease_id}"}
        assert device["termination_time"] is not None
    ready = packet_lab.notifier.texts(Kind.READY)
    assert len(ready) == 1 and all(s.ips in ready[0] for s in servers_of(packet_lab.db, lease_id))

    clock.now = lease.ends_at + POLICY.grace
    sweep(packet_lab, clock.now)
    assert lease_of(packet_lab.db, lease_id).state == State.RECLAIMED
    assert fake_packet.devices() == []
    assert packet_lab.notifier.texts(Kind.RECLAIMED)


def test_a_lost_create_answer_leaves_exactly_one_device(
    packet_lab: Lab, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    fake_packet.lose_create_answer(times=2)
    lease_id = approved_lease(packet_lab, clock)
    run_until_active(packet_lab, clock, lease_id)

    hostnames = [d["hostname"] for d in fake_packet.devices()]
    assert sorted(hostnames) == sorted(set(hostnames)) and len(hostnames) == 3


def test_a_create_that_fails_after_reaching_packet_is_adopted_not_repeated(
    db: Database,
    make_provider: Callable[..., PacketProvider],
    fake_packet: FakePacket,
    clock: SteppedClock,
) -> None:
    """The provider gives up (answer lost on every retry), the server goes back to pending;
    the next pass finds the device by tag and hostname instead of creating a second one."""
    lab = Lab(db, make_provider(retries=0), RecordingNotifier(), POLICY, ROLES)
    fake_packet.lose_create_answer(times=1)
    lease_id = approved_lease(lab, clock, count=1)
    assert servers_of(db, lease_id)[0].state == ServerState.PENDING
    run_until_active(lab, clock, lease_id)
    assert len(fake_packet.devices()) == 1


def test_a_429_storm_ends_with_everything_created_once(
    packet_lab: Lab, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    reset = str(int(clock.now.timestamp()) + 1)
    fake_packet.fail_next(
        "POST",
        f"projects/{fake_packet.project_id}/devices",
        429,
        times=12,
        headers={"X-RateLimit-Reset": reset},
    )
    lease_id = approved_lease(packet_lab, clock, count=5)
    run_until_active(packet_lab, clock, lease_id, rounds=20)
    hostnames = sorted(d["hostname"] for d in fake_packet.devices())
    assert hostnames == [f"coredns-{lease_id}-{n}" for n in range(1, 6)]


def test_a_delete_that_keeps_failing_quarantines_and_alerts(
    packet_lab: Lab, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    lease_id = approved_lease(packet_lab, clock, count=1)
    run_until_active(packet_lab, clock, lease_id)
    fake_packet.fail_delete(None, times=1000, status=500)
    clock.now = lease_of(packet_lab.db, lease_id).ends_at + POLICY.grace
    for _ in range(POLICY.delete_attempts + 1):
        sweep(packet_lab, clock.now)
        clock.advance(3600)
    assert lease_of(packet_lab.db, lease_id).state == State.QUARANTINED
    alerts = packet_lab.notifier.texts(Kind.ADMIN_ALERT)
    assert any("quarantined" in text for text in alerts)

    fake_packet.clear_faults()
    clock.advance(3600)
    sweep(packet_lab, clock.now)
    assert lease_of(packet_lab.db, lease_id).state == State.RECLAIMED
    assert fake_packet.devices() == []


def test_a_tagged_device_with_no_lease_is_deleted_after_grace(
    packet_lab: Lab, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    stray = packet_lab.provider.create(
        DeviceSpec("forgotten-1", "t1.small.x86", "ams1", "ubuntu_16_04", tags=(TAG,))
    )
    sweep(packet_lab, clock.now)
    with packet_lab.db.read() as session:
        assert session.get(Orphan, stray.id) is not None
    assert [d["id"] for d in fake_packet.devices()] == [stray.id]

    clock.advance(31 * 60)
    sweep(packet_lab, clock.now)
    assert fake_packet.devices() == []
    assert any("forgotten-1" in t for t in packet_lab.notifier.texts(Kind.ADMIN_ALERT))


def test_labbot_down_past_the_end_the_backstop_deletes_and_the_books_are_exact(
    db: Database,
    make_provider: Callable[..., PacketProvider],
    fake_packet: FakePacket,
    clock: SteppedClock,
) -> None:
    lab = Lab(db, make_provider(), RecordingNotifier(), POLICY, ROLES)
    lease_id = approved_lease(lab, clock, count=2, duration=timedelta(hours=5))
    run_until_active(lab, clock, lease_id)
    lease = lease_of(db, lease_id)
    active_at = servers_of(db, lease_id)[0].active_at

    # labbot stops; days pass; the provider's own backstop deletes the servers.
    clock.now = lease.ends_at + timedelta(days=3)
    assert fake_packet.devices() == []
    assert fake_packet.backstop_deleted
    assert lease.backstop_at <= lease.ends_at + POLICY.grace + POLICY.backstop_margin + timedelta(
        hours=3
    )

    restarted = Lab(db, make_provider(), RecordingNotifier(), POLICY, ROLES)
    sweep(restarted, clock.now)
    assert lease_of(db, lease_id).state == State.RECLAIMED
    billed_hours = -(-(lease.backstop_at - active_at) // timedelta(hours=1))
    expected = 2 * lease.hourly_cents * billed_hours
    report = credit_report(restarted, clock.now, month_key(active_at))
    assert report.lab.spent == expected
    assert report.lab.committed == 0
    assert report.lab.granted == report.lab.spent + report.lab.committed + report.lab.available


def test_a_request_that_never_answers_does_not_hang_the_sweep(
    db: Database,
    make_provider: Callable[..., PacketProvider],
    fake_packet: FakePacket,
    clock: SteppedClock,
) -> None:
    lab = Lab(db, make_provider(timeout=0.5, retries=1), RecordingNotifier(), POLICY, ROLES)
    lease_id = approved_lease(lab, clock, count=1)
    fake_packet.hang_next("GET", f"projects/{fake_packet.project_id}/devices", times=10)
    finished = threading.Event()

    def run() -> None:
        clock.advance(10)
        sweep(lab, clock.now)
        finished.set()

    started = time.monotonic()
    threading.Thread(target=run, daemon=True).start()
    assert finished.wait(timeout=15), "the sweep hung on a request that never answers"
    assert time.monotonic() - started < 15
    assert lease_of(db, lease_id).state == State.PROVISIONING  # nothing lost: retried later


def test_the_owners_saved_keys_and_the_co_owners_reach_packets_create_call(
    packet_lab: Lab, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    """A request without a key: the owner's saved keys and the co-owner's go in every create
    body, as `ssh_keys` objects (so Packet adds no project keys), and the ready DM names them."""
    owner_key, carol_key = public_key("owner", "owner@laptop"), public_key("carol", "carol@box")
    add_key(packet_lab, OWNER, owner_key, clock.now)
    add_key(packet_lab, "U0CAROL", carol_key, clock.now)
    lease_id = approved_lease(packet_lab, clock, ssh_key="", co_owners=("U0CAROL",))
    run_until_active(packet_lab, clock, lease_id)

    creates = [r.body for r in fake_packet.requests if r.method == "POST" and "devices" in r.path]
    assert len(creates) == 3
    for body in creates:
        assert [k["key"] for k in body["ssh_keys"]] == [owner_key, carol_key]
    ready = packet_lab.notifier.texts(Kind.READY)
    assert len(ready) == 2  # the owner and the co-owner
    assert all(read_key(k).fingerprint in ready[0] for k in (owner_key, carol_key))


def test_a_lease_in_retry_back_off_does_not_hold_up_the_other_leases(
    db: Database,
    make_provider: Callable[..., PacketProvider],
    fake_packet: FakePacket,
    clock: SteppedClock,
) -> None:
    """The first lease's delete fails once and its provider call backs off; while it waits,
    the same pass deletes the second lease's server. The back-off here lasts until the fake
    has seen that delete (or 10 s): a sweep that stepped one lease after the other would sit
    out the whole wait first."""
    others: list[str] = []
    seen_while_waiting: list[bool] = []

    def back_off(_: float) -> None:
        deadline = time.monotonic() + 10
        while not _deleted(fake_packet, others) and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_while_waiting.append(_deleted(fake_packet, others))

    lab = Lab(db, make_provider(sleep=back_off), RecordingNotifier(), POLICY, ROLES)
    first = approved_lease(lab, clock, count=1)
    run_until_active(lab, clock, first)
    clock.advance(60)
    second = approved_lease(lab, clock, count=1)
    run_until_active(lab, clock, second)
    (slow,) = [s.provider_id for s in servers_of(db, first)]
    others += [s.provider_id for s in servers_of(db, second)]

    fake_packet.fail_delete(slow, times=1, status=500)
    clock.now = lease_of(db, second).ends_at + POLICY.grace
    sweep(lab, clock.now)

    assert seen_while_waiting == [True]
    assert fake_packet.devices() == []
    assert {lease_of(db, first).state, lease_of(db, second).state} == {State.RECLAIMED}


def _deleted(fake: FakePacket, device_ids: list[str]) -> bool:
    return all(fake.count("DELETE", f"devices/{d}") for d in device_ids)


def test_a_device_missing_from_the_list_but_still_there_is_not_taken_for_vanished(
    packet_lab: Lab, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    """Its tags were edited (a list read in pages while devices come and go can skip one the
    same way): the device is asked about before its server is given up, and it still bills."""
    lease_id = approved_lease(packet_lab, clock, count=2)
    run_until_active(packet_lab, clock, lease_id)
    kept, gone = servers_of(packet_lab.db, lease_id)
    fake_packet.retag(kept.provider_id, ["someone-else"])
    fake_packet.vanish(gone.provider_id)

    clock.advance(POLICY.reconcile_every.total_seconds())
    sweep(packet_lab, clock.now)

    states = {s.hostname: s.state for s in servers_of(packet_lab.db, lease_id)}
    assert states == {kept.hostname: ServerState.ACTIVE, gone.hostname: ServerState.VANISHED}
