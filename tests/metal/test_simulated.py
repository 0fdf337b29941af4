"""The simulated provider: devices in the database that move queued -> provisioning -> active on
the injected clock, fail on request, survive a restart; and the catalog it serves."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from metal.catalog import CatalogError, load, seed
from metal.provider import DeviceSpec, DeviceState, Provider, ProviderError
from metal.simulated import SimulatedProvider
from storage.db import Database
from storage.schema import upgrade
from tests.conftest import Clock


def spec(hostname="h1", plan="c1.small.x86", metro="ams1", tags=("labbot", "lease-1"), **kw):
    return DeviceSpec(hostname=hostname, plan=plan, metro=metro, os="ubuntu_16_04", tags=tags, **kw)


@pytest.fixture
def clock() -> Clock:
    """The lease-engine tests' clock (advance(minutes=...)), not tests/metal's SteppedClock."""
    return Clock()


@pytest.fixture
def sim(db, clock) -> SimulatedProvider:
    return SimulatedProvider(db, clock=clock, provision_seconds=120)


def test_it_is_a_provider(sim):
    assert isinstance(sim, Provider)
    assert sim.verify() is None


def test_a_device_moves_from_queued_to_active_on_the_clock(sim, clock):
    device = sim.create(spec())
    assert device.state == DeviceState.QUEUED and device.ips == ()
    clock.advance(seconds=60)
    assert sim.get(device.id).state == DeviceState.PROVISIONING
    clock.advance(seconds=60)
    ready = sim.get(device.id)
    assert ready.state == DeviceState.ACTIVE
    assert ready.ips and ready.tags == ("labbot", "lease-1")


def test_list_filters_by_tag_and_delete_is_idempotent(sim):
    a = sim.create(spec("a"))
    b = sim.create(spec("b", tags=("labbot", "lease-2")))
    sim.create(spec("c", tags=("other",)))
    assert {d.hostname for d in sim.list("labbot")} == {"a", "b"}
    assert [d.id for d in sim.list("lease-2")] == [b.id]
    sim.delete(a.id)
    sim.delete(a.id)
    sim.delete("no-such-device")
    assert sim.get(a.id) is None
    assert {d.hostname for d in sim.list_all()} == {"b", "c"}


def test_injected_failures(sim, clock):
    sim.fail_next_creates(1)
    with pytest.raises(ProviderError, match="injected"):
        sim.create(spec())
    sim.fail_next_provisioning(1)
    failing = sim.create(spec("f"))
    clock.advance(minutes=5)
    assert sim.get(failing.id).state == DeviceState.FAILED
    stuck = sim.create(spec("s"))
    sim.fail_deletes(stuck.id, 2)
    for _ in range(2):
        with pytest.raises(ProviderError, match="delete failed"):
            sim.delete(stuck.id)
    sim.delete(stuck.id)
    assert sim.get(stuck.id) is None
    gone = sim.create(spec("v"))
    sim.vanish(gone.id)
    assert sim.get(gone.id) is None
    with pytest.raises(ProviderError):
        sim.vanish("no-such-device")


def test_a_plan_not_offered_is_refused_for_good(sim):
    with pytest.raises(ProviderError) as error:
        sim.create(spec(plan="nope"))
    assert error.value.retryable is False
    assert sim.capacity("nope", "ams1", 1) is False
    assert sim.capacity("c1.small.x86", "ams1", 3) is True


def test_the_termination_time_is_a_backstop(sim, clock):
    device = sim.create(spec(termination_time=clock.now + timedelta(hours=1)))
    clock.advance(minutes=59)
    assert sim.get(device.id) is not None
    sim.set_backstop("lease-1", "ams1", clock.now + timedelta(hours=2), [device.id])
    clock.advance(hours=1)
    assert sim.get(device.id) is not None
    clock.advance(hours=1)
    assert sim.get(device.id) is None
    assert sim.list("labbot") == []


def test_devices_survive_a_restart_and_new_ids_do_not_collide(database_url, clock):
    first_db = Database(database_url)
    upgrade(first_db)
    first = SimulatedProvider(first_db, clock=clock, provision_seconds=120)
    kept = first.create(spec("same"))
    first_db.dispose()
    second_db = Database(database_url)
    second = SimulatedProvider(second_db, clock=clock, provision_seconds=120)
    assert [d.id for d in second.list("labbot")] == [kept.id]
    # The same hostname again at the same instant, in a new process: a new device.
    again = second.create(spec("same"))
    assert again.id != kept.id
    assert len(second.list_all()) == 2
    second_db.dispose()


# The catalog -----------------------------------------------------------------------------


def test_the_seed_catalog_is_the_2017_cncf_lab():
    catalog = seed()
    prices = {slug: plan.hourly_cents for slug, plan in catalog.plans.items()}
    assert prices == {
        "t1.small.x86": 7,
        "c1.small.x86": 40,
        "m1.xlarge.x86": 125,
        "c1.large.arm": 50,
        "c1.xlarge.x86": 175,
    }
    assert catalog.plans["c1.large.arm"].arch == "aarch64"
    assert {"ewr1", "sjc1", "ams1", "nrt1"} <= set(catalog.metros)


def test_a_toml_file_overrides_the_catalog(tmp_path: Path):
    path = tmp_path / "catalog.toml"
    path.write_text(
        'os = ["debian_9"]\n'
        '[plans."c1.small.x86"]\nname = "Type 1"\nhourly = 0.45\nmetros = ["ams1"]\n'
        '[plans."x2.new.x86"]\nhourly = 2.005\n'
        '[metros]\nzzz1 = "Nowhere"\n'
    )
    catalog = load(path)
    assert catalog.plans["c1.small.x86"].hourly_cents == 45
    assert catalog.plans["x2.new.x86"].hourly_cents == 201
    assert catalog.plans["t1.small.x86"].hourly_cents == 7
    assert catalog.metros["zzz1"].name == "Nowhere"
    assert catalog.oses == ("debian_9",)
    assert catalog.plan_available("c1.small.x86", "ams1")
    assert not catalog.plan_available("c1.small.x86", "ewr1")
    assert catalog.plan_available("x2.new.x86", "zzz1")


def test_a_bad_catalog_file_names_the_problem(tmp_path: Path):
    path = tmp_path / "catalog.toml"
    path.write_text('[plans."x"]\nname = "no price"\n')
    with pytest.raises(
        CatalogError, match=r"plan x in .* needs an hourly price, like hourly = 0\.40"
    ):
        load(path)
    path.write_text("not = [toml")
    with pytest.raises(CatalogError, match="cannot be read"):
        load(path)
    with pytest.raises(CatalogError, match="cannot be read"):
        load(tmp_path / "missing.toml")
