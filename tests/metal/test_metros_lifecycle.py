"""One lease across three metros on the real clients: packet-python over HTTPS against the fake
Packet API, and boto3 against moto (a metro of the EC2 catalog is a region). Each metro's
servers are created in that metro, the lease is reconciled without orphans, the backstop is
set where the servers are, and reclaiming deletes every server in every metro."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest

from commands.extend import extend
from commands.lab import Lab
from commands.notices import Kind
from commands.reclaim import release
from commands.states import ServerState, State
from commands.sweep import sweep
from fakes.ec2 import FaultProxy, MotoServer, instances, schedules
from fakes.notifier import RecordingNotifier
from fakes.packet import FakePacket
from metal.ec2 import Ec2Provider
from metal.ec2_catalog import parse_offer
from metal.packet import PacketProvider
from storage.db import Database
from storage.models import Orphan
from tests.conftest import OWNER, ROLES
from tests.ec2_server import OFFER
from tests.metal.conftest import SteppedClock
from tests.metal.lifecycle import POLICY, approved_lease, lease_of, run_until_active, servers_of

THREE = (("ams1", 2), ("ewr1", 2), ("sjc1", 2))
REGIONS = ("us-east-1", "us-west-2", "eu-west-1")


def three_metros(metros: tuple[tuple[str, int], ...], **shape: object) -> dict[str, object]:
    return {
        "metro": metros[0][0],
        "count": sum(n for _, n in metros),
        "metro_counts": metros,
        **shape,
    }


def orphans(db: Database) -> list[Orphan]:
    with db.read() as session:
        return list(session.exec(Orphan.__table__.select()).all())  # type: ignore[attr-defined]


@pytest.fixture
def packet_lab(db: Database, make_provider: Callable[..., PacketProvider]) -> Lab:
    return Lab(db, make_provider(), RecordingNotifier(), POLICY, ROLES)


def test_three_metros_through_packet(
    packet_lab: Lab, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    lease_id = approved_lease(packet_lab, clock, **three_metros(THREE))
    run_until_active(packet_lab, clock, lease_id)

    devices = fake_packet.devices()
    assert Counter(d["facility"]["code"] for d in devices) == dict(THREE)
    assert all(d["termination_time"] is not None for d in devices)
    rows = {s.provider_id: s for s in servers_of(packet_lab.db, lease_id)}
    assert all(rows[d["id"]].metro == d["facility"]["code"] for d in devices)
    [ready] = packet_lab.notifier.texts(Kind.READY)
    assert "in ams1 (2), ewr1 (2), sjc1 (2)" in ready
    assert all(s.ips in ready for s in rows.values())

    # The reconcile pass finds every device of every metro in the books: no orphan, none lost.
    clock.advance(POLICY.reconcile_every.total_seconds() + 1)
    sweep(packet_lab, clock.now)
    assert orphans(packet_lab.db) == []
    assert {s.state for s in servers_of(packet_lab.db, lease_id)} == {ServerState.ACTIVE}

    # An extension moves the backstop of every device, whatever its metro.
    before = {d["id"]: d["termination_time"] for d in fake_packet.devices()}
    assert extend(packet_lab, OWNER, lease_id, timedelta(days=1), clock.now).ok
    after = {d["id"]: d["termination_time"] for d in fake_packet.devices()}
    assert all(after[i] > before[i] for i in before)

    assert release(packet_lab, OWNER, lease_id, clock.now).ok
    for _ in range(5):
        clock.advance(60)
        sweep(packet_lab, clock.now)
    assert lease_of(packet_lab.db, lease_id).state == State.RECLAIMED
    assert fake_packet.devices() == []


def test_a_metro_without_room_waits_and_a_partial_lease_goes_on_without_it(
    packet_lab: Lab, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    fake_packet.set_capacity("c1.small.x86", "ewr1", 0)
    lease_id = approved_lease(packet_lab, clock, allow_partial=True, **three_metros(THREE))
    assert Counter(d["facility"]["code"] for d in fake_packet.devices()) == {"ams1": 2, "sjc1": 2}
    for _ in range(20):  # ewr1 waits for room until the provisioning deadline
        if lease_of(packet_lab.db, lease_id).state == State.ACTIVE:
            break
        clock.advance(10 * 60)
        sweep(packet_lab, clock.now)
    lease = lease_of(packet_lab.db, lease_id)
    assert (lease.state, lease.count, lease.per_metro()) == (
        State.ACTIVE,
        4,
        {"ams1": 2, "sjc1": 2},
    )
    assert Counter(d["facility"]["code"] for d in fake_packet.devices()) == {"ams1": 2, "sjc1": 2}
    [ready] = packet_lab.notifier.texts(Kind.READY)
    assert "(4 of the 6 asked for) in ams1 (2), sjc1 (2)" in ready


# --- EC2: a metro is a region ------------------------------------------------------------------


@pytest.fixture
def three_regions_lab(
    db: Database,
    make_ec2: Callable[..., Ec2Provider],
    ec2_proxy: FaultProxy,
    clock: SteppedClock,
) -> Lab:
    ec2_proxy.clock = clock
    ec2_proxy.pending_seconds = 20
    offer = {
        **OFFER,
        "regions": {region: {"name": region} for region in REGIONS},
        "images": [
            {"os": "ubuntu_24_04", "region": region, "arch": arch, "ami": ami}
            for region in REGIONS
            for arch, ami in (
                ("x86_64", "ami-0a1b2c3d4e5f60718"),
                ("aarch64", "ami-0f1e2d3c4b5a69788"),
            )
        ],
    }
    provider = make_ec2(offer=parse_offer(offer, "three regions"))
    return Lab(db, provider, RecordingNotifier(), POLICY, ROLES, provider.catalog())


def test_three_regions_on_ec2(
    three_regions_lab: Lab, moto_server: MotoServer, clock: SteppedClock
) -> None:
    lab = three_regions_lab
    metros = tuple((region, 2) for region in REGIONS)
    lease_id = approved_lease(
        lab, clock, **three_metros(metros, plan="c7g.metal", os="ubuntu_24_04")
    )
    run_until_active(lab, clock, lease_id)

    for region in REGIONS:
        launched = instances(moto_server.url, region)
        assert len(launched) == 2 and {i["InstanceType"] for i in launched} == {"c7g.metal"}
        # The backstop terminates by tag in its own region: one schedule in each.
        assert list(schedules(moto_server.url, region)) == [f"labbot-lease-{lease_id}"]
    rows = servers_of(lab.db, lease_id)
    assert Counter(s.metro for s in rows) == dict(metros)
    assert all(s.provider_id.startswith(f"{s.metro}/") for s in rows)
    [ready] = lab.notifier.texts(Kind.READY)
    assert all(s.ips in ready for s in rows)

    clock.advance(POLICY.reconcile_every.total_seconds() + 1)
    sweep(lab, clock.now)
    assert orphans(lab.db) == []

    assert release(lab, OWNER, lease_id, clock.now).ok
    for _ in range(5):
        clock.advance(60)
        sweep(lab, clock.now)
    assert lease_of(lab.db, lease_id).state == State.RECLAIMED
    assert all(instances(moto_server.url, region) == [] for region in REGIONS)
