"""PacketProvider through the real packet-python client against FakePacket over HTTPS."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import packet
import pytest

from fakes.packet import FakePacket
from metal.packet import PacketProvider, _cents
from metal.provider import TAG, DeviceSpec, DeviceState, Provider, ProviderError, lease_tag
from tests.metal.conftest import SteppedClock

MakeProvider = Callable[..., PacketProvider]


def spec(hostname: str = "coredns-1", lease: int = 1, **changes: object) -> DeviceSpec:
    fields: dict[str, object] = {
        "hostname": hostname,
        "plan": "c1.small.x86",
        "metro": "am",
        "os": "ubuntu_16_04",
        "tags": (lease_tag(lease),),
    }
    fields.update(changes)
    return DeviceSpec(**fields)  # type: ignore[arg-type]


def created_body(fake: FakePacket) -> dict:
    [body] = [r.body for r in fake.requests if r.method == "POST" and r.path.endswith("/devices")]
    return body


# --- lifecycle ---


def test_provider_satisfies_the_protocol(packet_provider: PacketProvider) -> None:
    assert isinstance(packet_provider, Provider)


def test_create_get_list_delete_follow_the_clock(
    packet_provider: PacketProvider, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    device = packet_provider.create(spec(ssh_keys=("ssh-ed25519 AAAA alice",)))

    assert device.state is DeviceState.QUEUED
    assert (device.hostname, device.plan, device.metro) == ("coredns-1", "c1.small.x86", "am")
    assert device.tags == (TAG, lease_tag(1))
    assert device.created_at == clock.now
    body = created_body(fake_packet)
    assert body["tags"] == [TAG, lease_tag(1)]
    assert body["ssh_keys"] == [{"label": "coredns-1-1", "key": "ssh-ed25519 AAAA alice"}]

    clock.advance(2)
    assert packet_provider.get(device.id).state is DeviceState.PROVISIONING
    clock.advance(3)
    active = packet_provider.get(device.id)
    assert active.state is DeviceState.ACTIVE
    assert active.ips[0].startswith("147.75.")  # public IPv4 first, private last
    assert active.ips[-1].startswith("10.")
    assert [d.id for d in packet_provider.list(lease_tag(1))] == [device.id]

    packet_provider.delete(device.id)
    assert packet_provider.get(device.id) is None
    assert packet_provider.list(lease_tag(1)) == []
    assert fake_packet.devices() == []


def test_deprovisioning_devices_are_listed_until_gone(
    packet_provider: PacketProvider, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    fake_packet.deprovision_seconds = 60
    device = packet_provider.create(spec())
    clock.advance(5)
    packet_provider.delete(device.id)

    assert packet_provider.get(device.id).state is DeviceState.DEPROVISIONING
    assert len(packet_provider.list(TAG)) == 1
    clock.advance(60)
    assert packet_provider.get(device.id) is None


def test_list_follows_every_page(packet_provider: PacketProvider, fake_packet: FakePacket) -> None:
    fake_packet.max_per_page = 3
    for n in range(8):
        packet_provider.create(spec(f"envoy-{n}", lease=7))
    packet_provider.create(spec("other", lease=8))
    before = fake_packet.count("GET", f"projects/{fake_packet.project_id}/devices")

    listed = packet_provider.list(lease_tag(7))

    assert sorted(d.hostname for d in listed) == [f"envoy-{n}" for n in range(8)]
    assert fake_packet.count("GET", f"projects/{fake_packet.project_id}/devices") - before == 3
    assert len(packet_provider.list(TAG)) == 9


def test_failed_provisioning_is_reported(
    packet_provider: PacketProvider, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    fake_packet.fail_provisioning("bad-")
    bad = packet_provider.create(spec("bad-1"))
    good = packet_provider.create(spec("good-1"))
    clock.advance(5)

    assert packet_provider.get(bad.id).state is DeviceState.FAILED
    assert packet_provider.get(good.id).state is DeviceState.ACTIVE


# --- the termination_time backstop ---


def test_termination_time_is_sent_and_enforced(
    packet_provider: PacketProvider, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    device = packet_provider.create(spec(termination_time=clock.now + timedelta(hours=1)))

    assert created_body(fake_packet)["termination_time"] == "2017-06-01T13:00:00Z"
    clock.advance(3600 - 1)
    assert packet_provider.get(device.id) is not None
    clock.advance(1)
    assert packet_provider.get(device.id) is None
    assert fake_packet.backstop_deleted == {device.id}


def test_the_lease_backstop_moves_each_devices_termination_time(
    packet_provider: PacketProvider, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    device = packet_provider.create(spec(termination_time=clock.now + timedelta(hours=1)))
    other = packet_provider.create(spec("other-1", termination_time=clock.now + timedelta(hours=1)))

    later = clock.now + timedelta(hours=3)
    packet_provider.set_backstop("lease-1", "am", later, [device.id, other.id])
    packet_provider.set_backstop("lease-1", "am", later, [])  # nothing there yet: no call
    clock.advance(2 * 3600)
    assert packet_provider.get(device.id) is not None
    assert packet_provider.get(other.id) is not None

    with pytest.raises(ProviderError) as refused:
        packet_provider.set_backstop("lease-1", "am", clock.now - timedelta(minutes=1), [device.id])
    assert not refused.value.retryable
    assert "future" in str(refused.value)


# --- catalog, capacity, verify ---


def test_catalog_has_the_2017_plans_in_cents(packet_provider: PacketProvider) -> None:
    catalog = packet_provider.catalog()

    cents = {slug: plan.hourly_cents for slug, plan in catalog.plans.items()}
    assert cents == {
        "t1.small.x86": 7,
        "c1.small.x86": 40,
        "m1.xlarge.x86": 125,
        "c1.large.arm": 50,
        "c1.xlarge.x86": 175,
    }
    arm = catalog.plans["c1.large.arm"]
    facilities = ("ams1", "ewr1", "nrt1", "sjc1")
    assert (arm.name, arm.arch, arm.metros) == ("Type 2A", "aarch64", facilities)
    assert "128GB RAM" in arm.specs
    assert catalog.metros["ams1"].name.startswith("Amsterdam")
    assert len(catalog.metros) == 15
    assert "ubuntu_16_04" in catalog.oses
    assert catalog.plan_available("c1.large.arm", "sjc1")
    assert not catalog.plan_available("c1.large.arm", "dfw1")


@pytest.mark.parametrize(
    ("dollars", "cents"), [("0.07", 7), ("0.075", 8), ("0.005", 1), ("1.745", 175), ("2", 200)]
)
def test_prices_round_half_up(dollars: str, cents: int) -> None:
    assert _cents(Decimal(dollars)) == cents


def test_capacity(packet_provider: PacketProvider, fake_packet: FakePacket) -> None:
    fake_packet.set_capacity("m1.xlarge.x86", "am", 2)

    assert packet_provider.capacity("m1.xlarge.x86", "am", 2) is True
    assert packet_provider.capacity("m1.xlarge.x86", "am", 3) is False
    assert packet_provider.capacity("c1.large.arm", "da", 1) is False  # not offered there
    assert packet_provider.capacity("t1.small.x86", "ams1", 1) is True  # a facility code
    assert fake_packet.count("POST", "capacity/metros") == 3
    assert fake_packet.count("POST", "capacity") == 4


def test_capacity_is_none_when_the_api_cannot_say(
    packet_provider: PacketProvider, fake_packet: FakePacket
) -> None:
    fake_packet.fail_next("POST", "capacity", 503, times=10)

    assert packet_provider.capacity("t1.small.x86", "am", 1) is None


def test_verify_accepts_the_right_token(packet_provider: PacketProvider) -> None:
    packet_provider.verify()


def test_verify_with_a_bad_token_is_clear_and_final(
    make_provider: MakeProvider, fake_packet: FakePacket, waits: list[float]
) -> None:
    secret = "s3cret-token-7f0c"
    with pytest.raises(ProviderError) as refused:
        make_provider(token=secret).verify()

    message = str(refused.value)
    assert not refused.value.retryable
    assert message.startswith("PACKET_AUTH_TOKEN was refused by the Packet API at ")
    assert fake_packet.end_point in message
    assert "Invalid authentication token" in message
    assert secret not in message
    assert waits == []


def test_an_explicit_ca_bundle_wins_over_the_environment(
    make_provider: MakeProvider, fake_packet: FakePacket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")

    make_provider(ca_bundle=fake_packet.ca_bundle_path).verify()


# --- retries ---


def test_rate_limit_waits_until_reset(
    packet_provider: PacketProvider,
    fake_packet: FakePacket,
    clock: SteppedClock,
    waits: list[float],
) -> None:
    device = packet_provider.create(spec())
    reset = str(int(clock.now.timestamp()) + 7)
    fake_packet.fail_next("GET", "devices/", 429, headers={"X-RateLimit-Reset": reset})

    assert packet_provider.get(device.id).id == device.id
    assert waits == [7.0]


def test_a_small_rate_limit_reset_reads_as_seconds_from_now(
    packet_provider: PacketProvider, fake_packet: FakePacket, waits: list[float]
) -> None:
    fake_packet.fail_next("GET", "plans", 429, headers={"X-RateLimit-Reset": "12"})

    packet_provider.catalog()

    assert waits == [12.0]


def test_rate_limit_wait_is_capped(
    make_provider: MakeProvider,
    fake_packet: FakePacket,
    clock: SteppedClock,
    waits: list[float],
) -> None:
    reset = str(int(clock.now.timestamp()) + 3600)
    fake_packet.fail_next("GET", "plans", 429, headers={"X-RateLimit-Reset": reset})

    make_provider(max_backoff=30).catalog()

    assert waits == [30.0]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried_with_growing_backoff(
    packet_provider: PacketProvider, fake_packet: FakePacket, waits: list[float], status: int
) -> None:
    device = packet_provider.create(spec())
    fake_packet.fail_next("GET", "devices/", status, times=2)

    assert packet_provider.get(device.id).id == device.id
    assert len(waits) == 2
    assert 0.25 <= waits[0] <= 0.5  # half the ceiling plus jitter, ceiling = backoff * 2**n
    assert 0.5 <= waits[1] <= 1.0


def test_server_errors_give_up_as_retryable(
    packet_provider: PacketProvider, fake_packet: FakePacket, waits: list[float]
) -> None:
    fake_packet.fail_next("GET", "devices/", 503, times=10)

    with pytest.raises(ProviderError) as failed:
        packet_provider.get(str(uuid.uuid4()))
    assert failed.value.retryable
    assert "4 times" in str(failed.value)
    assert len(waits) == 3


@pytest.mark.parametrize(
    "body", [{"error": "upstream gone"}, {"message": "no errors key"}, "plain text"]
)
def test_odd_error_bodies_are_classified_by_status(
    packet_provider: PacketProvider, fake_packet: FakePacket, body: object
) -> None:
    """packet-python raises UnboundLocalError on a dict body with neither `error` nor `errors`."""
    device = packet_provider.create(spec())
    fake_packet.fail_next("GET", "devices/", 500, body=body)
    assert packet_provider.get(device.id).id == device.id

    fake_packet.fail_next("GET", "devices/", 400, body=body)
    with pytest.raises(ProviderError) as refused:
        packet_provider.get(device.id)
    assert not refused.value.retryable
    assert "(400)" in str(refused.value)


def test_an_unreadable_success_is_retried(
    packet_provider: PacketProvider, fake_packet: FakePacket
) -> None:
    """A list body makes packet-python raise TypeError while looking for `meta`."""
    device = packet_provider.create(spec())
    fake_packet.fail_next("GET", "devices/", 200, body=["odd"])

    assert packet_provider.get(device.id).id == device.id


def test_a_hung_request_times_out(make_provider: MakeProvider, fake_packet: FakePacket) -> None:
    fake_packet.hang_next("GET", "projects/")
    provider = make_provider(timeout=0.5, retries=0)

    started = time.monotonic()
    with pytest.raises(ProviderError) as failed:
        provider.verify()
    assert time.monotonic() - started < 2.0
    assert failed.value.retryable
    assert "ReadTimeout" in str(failed.value)


def test_a_hung_request_is_retried(make_provider: MakeProvider, fake_packet: FakePacket) -> None:
    fake_packet.hang_next("GET", "projects/")
    provider = make_provider(timeout=0.5, retries=1)

    started = time.monotonic()
    provider.verify()
    assert time.monotonic() - started < 2.0


def test_a_slow_answer_counts_as_no_answer(
    make_provider: MakeProvider, fake_packet: FakePacket
) -> None:
    fake_packet.latency(1.0, "plans")
    with pytest.raises(ProviderError) as failed:
        make_provider(timeout=0.5, retries=0).catalog()
    assert failed.value.retryable


# --- creates that must not double ---


def test_a_lost_create_answer_adopts_the_device(
    packet_provider: PacketProvider, fake_packet: FakePacket
) -> None:
    fake_packet.lose_create_answer()

    device = packet_provider.create(spec())

    [only] = fake_packet.devices()
    assert device.id == only["id"]
    assert fake_packet.count("POST", f"projects/{fake_packet.project_id}/devices") == 1


def test_a_create_refused_by_a_5xx_is_posted_again(
    packet_provider: PacketProvider, fake_packet: FakePacket
) -> None:
    fake_packet.fail_next("POST", "projects/", 503)

    packet_provider.create(spec())

    assert len(fake_packet.devices()) == 1
    assert fake_packet.count("POST", f"projects/{fake_packet.project_id}/devices") == 2


def test_a_create_that_timed_out_is_retried_once(
    make_provider: MakeProvider, fake_packet: FakePacket
) -> None:
    fake_packet.hang_next("POST", "projects/")

    make_provider(timeout=0.5).create(spec())

    assert len(fake_packet.devices()) == 1


def test_an_invalid_plan_is_refused_once(
    packet_provider: PacketProvider, fake_packet: FakePacket, waits: list[float]
) -> None:
    with pytest.raises(ProviderError) as refused:
        packet_provider.create(spec(plan="c9.huge.x86"))

    assert not refused.value.retryable
    assert "'c9.huge.x86' is not a valid plan" in str(refused.value)
    assert (fake_packet.count("POST"), waits) == (1, [])


def test_concurrent_creates_make_exactly_one_device_each(
    packet_provider: PacketProvider, fake_packet: FakePacket
) -> None:
    fake_packet.lose_create_answer(times=3)
    fake_packet.fail_next("POST", "projects/", 503, times=3)
    specs = [spec(f"kube-{n}", lease=42) for n in range(40)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(packet_provider.create, specs))

    assert len({d.id for d in created}) == 40
    assert len(fake_packet.devices()) == 40
    assert len(packet_provider.list(lease_tag(42))) == 40
    # 40 creates + 3 re-posted after a 503; the 3 lost answers were adopted, not re-posted.
    assert fake_packet.count("POST", f"projects/{fake_packet.project_id}/devices") == 43


# --- deletes ---


@pytest.mark.parametrize("gone_status", [404, 403])
def test_a_gone_device_is_none_and_deleting_it_succeeds(
    packet_provider: PacketProvider, fake_packet: FakePacket, gone_status: int
) -> None:
    fake_packet.gone_status = gone_status
    missing = str(uuid.uuid4())

    assert packet_provider.get(missing) is None
    packet_provider.delete(missing)


def test_delete_while_provisioning_is_retryable(
    packet_provider: PacketProvider, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    device = packet_provider.create(spec())

    with pytest.raises(ProviderError) as refused:
        packet_provider.delete(device.id)
    assert refused.value.retryable
    assert "provisioning" in str(refused.value)

    clock.advance(5)
    packet_provider.delete(device.id)
    assert fake_packet.devices() == []


def test_a_delete_failing_fewer_times_than_retries_succeeds(
    packet_provider: PacketProvider, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    device = packet_provider.create(spec())
    clock.advance(5)
    fake_packet.fail_delete(device.id, times=2)

    packet_provider.delete(device.id)

    assert fake_packet.devices() == []
    assert fake_packet.count("DELETE", f"devices/{device.id}") == 3


def test_a_delete_failing_too_often_is_retryable_and_leaves_the_device(
    packet_provider: PacketProvider, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    device = packet_provider.create(spec())
    clock.advance(5)
    fake_packet.fail_delete(times=10)

    with pytest.raises(ProviderError) as failed:
        packet_provider.delete(device.id)
    assert failed.value.retryable
    assert len(fake_packet.devices()) == 1


def test_a_vanished_device_is_gone(
    packet_provider: PacketProvider, fake_packet: FakePacket
) -> None:
    device = packet_provider.create(spec())
    fake_packet.vanish(device.id)

    assert packet_provider.get(device.id) is None
    assert packet_provider.list(lease_tag(1)) == []
    packet_provider.delete(device.id)


# --- the fake itself, as packet-python sees it ---


def test_the_fake_accepts_packet_pythons_double_slashes(
    fake_packet: FakePacket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake_packet.ca_bundle_path)
    manager = packet.Manager(auth_token=fake_packet.token)
    manager.end_point = fake_packet.end_point

    assert manager.validate_metro_capacity([("am", "t1.small.x86", 1)]) is True
    assert manager.get_capacity()["ams1"]["t1.small.x86"] == {"level": "normal"}
    assert fake_packet.count("POST", "capacity/metros") == 1


def test_the_fake_refuses_packet_pythons_default_tags(
    fake_packet: FakePacket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake_packet.ca_bundle_path)
    manager = packet.Manager(auth_token=fake_packet.token)
    manager.end_point = fake_packet.end_point

    with pytest.raises(packet.ResponseError, match="tags must be a list"):
        manager.create_device(
            fake_packet.project_id, "x", "t1.small.x86", metro="am", operating_system="centos_7"
        )
