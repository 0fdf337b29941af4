"""Two donors at once, each its own provider account: one on Packet (the fake Packet API over
HTTPS), one on EC2 (moto behind the fault proxy). Each donor's servers are created, reconciled
and reclaimed through its own provider, and one provider failing or hanging holds up no other
donor's leases; the admins are told which donor is failing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import pytest

from commands.donors import Donor
from commands.lab import Lab
from commands.notices import Kind
from commands.states import State
from commands.sweep import sweep
from fakes.ec2 import FaultProxy, MotoServer, instances
from fakes.notifier import RecordingNotifier
from fakes.packet import FakePacket
from metal.ec2 import Ec2Provider
from metal.packet import PacketProvider
from metal.provider import TAG, DeviceSpec
from storage.db import Database
from storage.models import Orphan
from tests.conftest import ROLES
from tests.metal.conftest import SteppedClock
from tests.metal.lifecycle import POLICY, approved_lease, lease_of, run_until_active

EC2_SHAPE = {"plan": "c7g.metal", "metro": "us-east-1", "os": "ubuntu_24_04"}
DONORS = (Donor("metal", provider="packet"), Donor("cloud", provider="ec2"))


@pytest.fixture
def make_lab(
    db: Database,
    make_provider: Callable[..., PacketProvider],
    make_ec2: Callable[..., Ec2Provider],
    ec2_proxy: FaultProxy,
) -> Callable[..., Lab]:
    def make(**packet_options: object) -> Lab:
        packet = make_provider(**packet_options)
        providers = {"metal": packet, "cloud": make_ec2()}
        policy = replace(POLICY, donor_list=DONORS)
        return Lab(db, packet, RecordingNotifier(), policy, ROLES, providers=providers)

    return make


def two_active_leases(lab: Lab, clock: SteppedClock) -> tuple[int, int]:
    """One lease on each donor, routed there by the catalogs (Packet's plan, EC2's type)."""
    on_metal = approved_lease(lab, clock)
    on_cloud = approved_lease(lab, clock, **EC2_SHAPE)
    assert (lease_of(lab.db, on_metal).donor, lease_of(lab.db, on_cloud).donor) == (
        "metal",
        "cloud",
    )
    run_until_active(lab, clock, on_metal)
    run_until_active(lab, clock, on_cloud)
    return on_metal, on_cloud


def last_end(lab: Lab, *lease_ids: int) -> datetime:
    """When the last of the leases expires."""
    return max(lease_of(lab.db, i).ends_at for i in lease_ids) + POLICY.grace


def test_each_donors_servers_come_and_go_through_its_own_provider(
    make_lab: Callable[..., Lab],
    fake_packet: FakePacket,
    moto_server: MotoServer,
    clock: SteppedClock,
) -> None:
    lab = make_lab()
    on_metal, on_cloud = two_active_leases(lab, clock)
    hosts = [f"coredns-{on_metal}-{n}" for n in (1, 2, 3)]
    assert sorted(d["hostname"] for d in fake_packet.devices()) == hosts
    assert len(instances(moto_server.url)) == 3

    clock.now = last_end(lab, on_metal, on_cloud)
    sweep(lab, clock.now)
    assert lease_of(lab.db, on_metal).state == State.RECLAIMED
    assert lease_of(lab.db, on_cloud).state == State.RECLAIMED
    assert fake_packet.devices() == [] and instances(moto_server.url) == []


def test_a_failing_provider_holds_up_no_other_donor_and_the_admins_hear_which(
    make_lab: Callable[..., Lab],
    fake_packet: FakePacket,
    moto_server: MotoServer,
    clock: SteppedClock,
) -> None:
    lab = make_lab(retries=0)
    on_metal, on_cloud = two_active_leases(lab, clock)
    stray = lab.provider_of("cloud").create(
        DeviceSpec("forgotten-1", "c5.metal", "us-east-1", "ubuntu_24_04", tags=(TAG,))
    )
    fake_packet.fail_next("DELETE", "devices", 500, times=1000)
    fake_packet.fail_next("GET", "projects", 503, times=1000)  # its lists too

    clock.now = last_end(lab, on_metal, on_cloud)
    report = sweep(lab, clock.now)
    assert lease_of(lab.db, on_cloud).state == State.RECLAIMED
    assert [f"us-east-1/{i['InstanceId']}" for i in instances(moto_server.url)] == [stray.id]
    assert lease_of(lab.db, on_metal).state == State.EXPIRING  # its deletes wait for Packet
    assert len(fake_packet.devices()) == 3
    assert any("donor metal: listing the provider's devices failed" in e for e in report.errors)
    alerts = lab.notifier.texts(Kind.ADMIN_ALERT)
    assert sum("Donor metal's provider is failing" in t for t in alerts) == 1
    with lab.db.read() as session:
        assert session.get(Orphan, stray.id).donor == "cloud"  # the other account was compared

    clock.advance(15 * 60)
    sweep(lab, clock.now)  # still failing: the admins are not told again
    alerts = lab.notifier.texts(Kind.ADMIN_ALERT)
    assert sum("Donor metal's provider is failing" in t for t in alerts) == 1

    fake_packet.clear_faults()
    clock.advance(60 * 60)
    sweep(lab, clock.now)
    assert lease_of(lab.db, on_metal).state == State.RECLAIMED
    assert fake_packet.devices() == []
    assert any(
        "Donor metal's provider answers again" in t for t in lab.notifier.texts(Kind.ADMIN_ALERT)
    )


def test_a_hanging_provider_does_not_delay_another_donors_reclaim(
    make_lab: Callable[..., Lab],
    fake_packet: FakePacket,
    moto_server: MotoServer,
    clock: SteppedClock,
) -> None:
    lab = make_lab(retries=0, timeout=20.0)
    on_metal, on_cloud = two_active_leases(lab, clock)
    fake_packet.hang_next("DELETE", "devices", times=3)

    clock.now = last_end(lab, on_metal, on_cloud)
    sweeping = threading.Thread(target=sweep, args=(lab, clock.now))
    started = time.monotonic()
    sweeping.start()
    while lease_of(lab.db, on_cloud).state != State.RECLAIMED:
        assert time.monotonic() - started < 15, "the EC2 donor's reclaim waited for Packet"
        time.sleep(0.05)
    assert sweeping.is_alive()  # Packet's deletes are still hanging
    assert instances(moto_server.url) == []
    sweeping.join(60)
    assert not sweeping.is_alive()
    assert lease_of(lab.db, on_metal).state == State.EXPIRING
