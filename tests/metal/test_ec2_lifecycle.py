"""The lease engine driving the EC2 backend (real boto3 over HTTP) against moto's server, through
the fault proxy: what the lab's people would see in the database, the notices and EC2 itself.

moto starts instances `running` at once; here the proxy keeps each one `pending` for 20 s of
the stepped clock, so provisioning takes sweeps as it would on EC2."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import boto3
import pytest

from commands.billing import month_key
from commands.credit_report import credit_report
from commands.extend import extend
from commands.lab import Lab
from commands.notices import Kind
from commands.reclaim import release
from commands.review import approve
from commands.states import ServerState, State
from commands.sweep import sweep
from fakes.ec2 import FaultProxy, MotoServer, fire_due_schedules, instances, schedules
from fakes.notifier import RecordingNotifier
from metal.ec2 import Ec2Provider, launched_hostname
from metal.provider import TAG, DeviceSpec
from storage.db import Database
from storage.models import Orphan
from tests.conftest import OWNER, REVIEWER, ROLES
from tests.metal.conftest import SteppedClock
from tests.metal.lifecycle import (
    POLICY,
    approved_lease,
    filed_lease,
    lease_of,
    run_until_active,
    servers_of,
)

SHAPE = {"plan": "c7g.metal", "metro": "us-east-1", "os": "ubuntu_24_04"}


@pytest.fixture
def pending_proxy(ec2_proxy: FaultProxy, clock: SteppedClock) -> FaultProxy:
    ec2_proxy.clock = clock
    ec2_proxy.pending_seconds = 20
    return ec2_proxy


@pytest.fixture
def make_lab(
    db: Database, make_ec2: Callable[..., Ec2Provider], pending_proxy: FaultProxy
) -> Callable[..., Lab]:
    def make(policy=POLICY, **options: object) -> Lab:
        provider = make_ec2(**options)
        return Lab(db, provider, RecordingNotifier(), policy, ROLES, provider.catalog())

    return make


@pytest.fixture
def ec2_lab(make_lab: Callable[..., Lab]) -> Lab:
    return make_lab()


def hostnames(moto: MotoServer) -> list[str]:
    """Each live instance's server, as its launch's tags say (a one-server launch's Name too)."""
    return sorted(
        launched_hostname({t["Key"]: t["Value"] for t in i["Tags"]}, i["AmiLaunchIndex"])
        for i in instances(moto.url)
    )


def backstops(moto: MotoServer) -> set[str]:
    return {s["ScheduleExpression"] for s in schedules(moto.url).values()}


def at(lease) -> str:
    return f"at({lease.backstop_at:%Y-%m-%dT%H:%M:%S})"


def test_a_whole_lifecycle_on_ec2(
    ec2_lab: Lab, moto_server: MotoServer, clock: SteppedClock
) -> None:
    lease_id = approved_lease(ec2_lab, clock, **SHAPE)
    sweep(ec2_lab, clock.now)
    assert lease_of(ec2_lab.db, lease_id).state == State.PROVISIONING  # still pending at EC2
    run_until_active(ec2_lab, clock, lease_id)

    assert hostnames(moto_server) == [f"coredns-{lease_id}-{n}" for n in (1, 2, 3)]
    for instance in instances(moto_server.url):
        keys = {t["Key"] for t in instance["Tags"]}
        assert keys == {TAG, f"lease-{lease_id}", "Name", "labbot-launch", "labbot-hosts-0"}
        assert instance["InstanceType"] == "c7g.metal"
    lease = lease_of(ec2_lab.db, lease_id)
    assert list(schedules(moto_server.url)) == [f"labbot-lease-{lease_id}"]  # one per lease
    assert backstops(moto_server) == {at(lease)}
    ready = ec2_lab.notifier.texts(Kind.READY)
    assert len(ready) == 1 and all(s.ips in ready[0] for s in servers_of(ec2_lab.db, lease_id))

    clock.now = lease.ends_at + POLICY.grace
    sweep(ec2_lab, clock.now)
    assert lease_of(ec2_lab.db, lease_id).state == State.RECLAIMED
    assert instances(moto_server.url) == []
    assert ec2_lab.notifier.texts(Kind.RECLAIMED)
    # The schedule stays until its time, then finds nothing left to terminate and goes.
    assert fire_due_schedules(moto_server.url, lease.backstop_at) == []
    assert schedules(moto_server.url) == {}


def test_creating_costs_one_call_per_server_and_one_schedule_call_per_lease(
    ec2_lab: Lab, ec2_proxy: FaultProxy, clock: SteppedClock
) -> None:
    lease_id = approved_lease(ec2_lab, clock, count=6, **SHAPE)
    assert ec2_proxy.calls("RunInstances") == 6
    assert ec2_proxy.calls(f"POST /schedules/labbot-lease-{lease_id}") == 1
    run_until_active(ec2_lab, clock, lease_id)
    release(ec2_lab, OWNER, lease_id, clock.now)
    assert ec2_proxy.calls("TerminateInstances") == 6
    assert not [a for a in ec2_proxy.actions() if a.startswith(("DELETE", "PUT"))]


def test_a_large_lease_is_launched_and_terminated_a_batch_a_call_exactly_once(
    make_lab: Callable[..., Lab],
    ec2_proxy: FaultProxy,
    moto_server: MotoServer,
    clock: SteppedClock,
) -> None:
    """Two calls in flight, so 12 servers go in two launches of 6; one launch's answer is
    lost and the other first meets a 503: still one instance per server."""
    lab = make_lab(replace(POLICY, provider_concurrency=2))
    ec2_proxy.drop_answer("RunInstances")
    ec2_proxy.fail("RunInstances", 503)
    lease_id = approved_lease(lab, clock, count=12, **SHAPE)
    run_until_active(lab, clock, lease_id)

    assert hostnames(moto_server) == sorted(f"coredns-{lease_id}-{n}" for n in range(1, 13))
    assert ec2_proxy.calls("RunInstances") == 3  # two launches, one of them retried
    assert lease_of(lab.db, lease_id).count == 12
    release(lab, OWNER, lease_id, clock.now)
    assert ec2_proxy.calls("TerminateInstances") == 2
    assert instances(moto_server.url) == []
    assert lease_of(lab.db, lease_id).state == State.RECLAIMED


def test_nothing_is_created_until_the_lease_has_its_backstop(
    make_lab: Callable[..., Lab],
    ec2_proxy: FaultProxy,
    moto_server: MotoServer,
    clock: SteppedClock,
) -> None:
    """Scheduler refuses: no instance is launched without a backstop, the admins are told
    once, and the servers are created once Scheduler takes the schedule."""
    lab = make_lab(max_attempts=1)
    ec2_proxy.fail("POST /schedules", 503)
    lease_id = approved_lease(lab, clock, count=2, **SHAPE)
    assert instances(moto_server.url) == [] and schedules(moto_server.url) == {}
    clock.advance(60)
    sweep(lab, clock.now)  # still waiting: nothing asked again before the wait is over
    assert instances(moto_server.url) == []
    [alert] = lab.notifier.texts(Kind.ADMIN_ALERT)
    assert "would not set the deletion backstop" in alert

    clock.advance(6 * 60)
    run_until_active(lab, clock, lease_id)
    assert hostnames(moto_server) == [f"coredns-{lease_id}-1", f"coredns-{lease_id}-2"]
    assert backstops(moto_server) == {at(lease_of(lab.db, lease_id))}
    assert len(lab.notifier.texts(Kind.ADMIN_ALERT)) == 1


def test_an_extension_moves_every_backstop_before_it_takes_effect(
    ec2_lab: Lab, moto_server: MotoServer, clock: SteppedClock
) -> None:
    lease_id = approved_lease(ec2_lab, clock, count=2, **SHAPE)
    run_until_active(ec2_lab, clock, lease_id)
    before = lease_of(ec2_lab.db, lease_id)

    outcome = extend(ec2_lab, OWNER, lease_id, timedelta(days=3), clock.now)
    assert outcome.ok, outcome.message
    after = lease_of(ec2_lab.db, lease_id)
    assert after.backstop_at > before.backstop_at
    assert after.backstop_at >= after.ends_at + POLICY.grace
    assert backstops(moto_server) == {at(after)}
    assert len(schedules(moto_server.url)) == 1


def test_an_extension_the_scheduler_refuses_does_not_take_effect(
    ec2_lab: Lab, ec2_proxy: FaultProxy, moto_server: MotoServer, clock: SteppedClock
) -> None:
    lease_id = approved_lease(ec2_lab, clock, count=1, **SHAPE)
    run_until_active(ec2_lab, clock, lease_id)
    before = lease_of(ec2_lab.db, lease_id)
    ec2_proxy.fail("PUT /schedules", 503, times=10)

    outcome = extend(ec2_lab, OWNER, lease_id, timedelta(days=3), clock.now)
    assert not outcome.ok
    assert lease_of(ec2_lab.db, lease_id).ends_at == before.ends_at
    assert backstops(moto_server) == {at(before)}


def test_a_partial_lease_starts_with_what_ec2_had_capacity_for(
    make_lab: Callable[..., Lab],
    ec2_proxy: FaultProxy,
    moto_server: MotoServer,
    clock: SteppedClock,
) -> None:
    lab = make_lab(max_attempts=1)
    lease_id = filed_lease(lab, clock, allow_partial=True, **SHAPE)
    ec2_proxy.fail("RunInstances", 500, times=1000, matching=f"coredns-{lease_id}-2")
    assert approve(lab, REVIEWER, lease_id, clock.now).ok
    for _ in range(3):
        clock.advance(10)
        sweep(lab, clock.now)
    assert lease_of(lab.db, lease_id).state == State.PROVISIONING  # waiting for capacity

    clock.advance(POLICY.provision_timeout.total_seconds())
    sweep(lab, clock.now)
    lease = lease_of(lab.db, lease_id)
    assert lease.state == State.ACTIVE and lease.count == 2
    assert hostnames(moto_server) == [f"coredns-{lease_id}-1", f"coredns-{lease_id}-3"]
    assert "2 of the 3 asked for" in lab.notifier.texts(Kind.READY)[0]


def test_no_capacity_is_waited_out_not_counted_as_a_failed_create(
    make_lab: Callable[..., Lab],
    ec2_proxy: FaultProxy,
    moto_server: MotoServer,
    clock: SteppedClock,
) -> None:
    lab = make_lab(max_attempts=1)
    lease_id = filed_lease(lab, clock, count=1, **SHAPE)
    attempts = POLICY.create_attempts + 1
    ec2_proxy.fail("RunInstances", 500, times=attempts)
    assert approve(lab, REVIEWER, lease_id, clock.now).ok
    for _ in range(attempts):
        clock.advance(6 * 60)  # past the capacity wait
        sweep(lab, clock.now)
    run_until_active(lab, clock, lease_id)
    assert hostnames(moto_server) == [f"coredns-{lease_id}-1"]
    assert ec2_proxy.calls("RunInstances") == attempts + 1


def test_lost_run_instances_answers_leave_exactly_one_instance_per_server(
    ec2_lab: Lab, ec2_proxy: FaultProxy, moto_server: MotoServer, clock: SteppedClock
) -> None:
    ec2_proxy.drop_answer("RunInstances", times=2)
    ec2_proxy.fail("RunInstances", 503, times=2)
    ec2_proxy.fail("RunInstances", 400, times=2)
    lease_id = approved_lease(ec2_lab, clock, count=4, **SHAPE)
    run_until_active(ec2_lab, clock, lease_id, rounds=20)
    assert hostnames(moto_server) == [f"coredns-{lease_id}-{n}" for n in (1, 2, 3, 4)]
    assert len(schedules(moto_server.url)) == 1


def test_a_launch_whose_answer_and_look_up_both_failed_is_adopted_already_guarded(
    make_lab: Callable[..., Lab],
    ec2_proxy: FaultProxy,
    moto_server: MotoServer,
    clock: SteppedClock,
) -> None:
    """One launch of four (one call in flight); botocore gives up (one attempt; the answer
    lost and the look-up refused), the servers go back to pending; the next pass finds the
    instances by the lease's tag, each's hostname read from the launch's own tags, and adopts
    them. The lease's schedule was made before the launch: they were never unguarded."""
    lab = make_lab(replace(POLICY, provider_concurrency=1), max_attempts=1)
    ec2_proxy.drop_answer("RunInstances")
    ec2_proxy.fail("DescribeInstances", 503)
    lease_id = approved_lease(lab, clock, count=4, **SHAPE)
    assert {s.state for s in servers_of(lab.db, lease_id)} == {ServerState.PENDING}
    assert len(instances(moto_server.url)) == 4
    assert backstops(moto_server) == {at(lease_of(lab.db, lease_id))}

    run_until_active(lab, clock, lease_id)
    assert hostnames(moto_server) == [f"coredns-{lease_id}-{n}" for n in (1, 2, 3, 4)]
    assert ec2_proxy.calls("RunInstances") == 1
    assert backstops(moto_server) == {at(lease_of(lab.db, lease_id))}


def test_a_tagged_instance_no_lease_owns_is_terminated_after_grace(
    ec2_lab: Lab, moto_server: MotoServer, clock: SteppedClock
) -> None:
    stray = ec2_lab.provider.create(
        DeviceSpec("forgotten-1", "c5.metal", "us-east-1", "ubuntu_24_04", tags=(TAG,))
    )
    sweep(ec2_lab, clock.now)
    with ec2_lab.db.read() as session:
        assert session.get(Orphan, stray.id) is not None
    assert hostnames(moto_server) == ["forgotten-1"]

    clock.advance(31 * 60)
    sweep(ec2_lab, clock.now)
    assert instances(moto_server.url) == []
    assert any("forgotten-1" in t for t in ec2_lab.notifier.texts(Kind.ADMIN_ALERT))


def test_an_instance_terminated_behind_labbots_back_is_reported_vanished(
    ec2_lab: Lab, ec2_proxy: FaultProxy, clock: SteppedClock
) -> None:
    lease_id = approved_lease(ec2_lab, clock, count=2, **SHAPE)
    run_until_active(ec2_lab, clock, lease_id)
    gone = servers_of(ec2_lab.db, lease_id)[0]
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=ec2_proxy.url)
    ec2.terminate_instances(InstanceIds=[gone.provider_id.split("/")[1]])

    clock.advance(2 * 60)
    sweep(ec2_lab, clock.now)
    states = {s.hostname: s.state for s in servers_of(ec2_lab.db, lease_id)}
    assert states[gone.hostname] == ServerState.VANISHED
    assert list(states.values()).count(ServerState.ACTIVE) == 1
    assert any(gone.hostname in t for t in ec2_lab.notifier.texts(Kind.ADMIN_ALERT))


def test_labbot_down_past_the_end_the_schedules_terminate_and_the_books_are_exact(
    make_lab: Callable[..., Lab], moto_server: MotoServer, clock: SteppedClock
) -> None:
    lab = make_lab()
    lease_id = approved_lease(lab, clock, count=2, duration=timedelta(hours=5), **SHAPE)
    run_until_active(lab, clock, lease_id)
    lease = lease_of(lab.db, lease_id)
    active_at = servers_of(lab.db, lease_id)[0].active_at

    # labbot stops; days pass; EventBridge Scheduler terminates the instances by itself.
    clock.now = lease.ends_at + timedelta(days=3)
    assert len(fire_due_schedules(moto_server.url, clock.now)) == 2
    assert instances(moto_server.url) == [] and schedules(moto_server.url) == {}

    restarted = make_lab()
    sweep(restarted, clock.now)
    assert lease_of(lab.db, lease_id).state == State.RECLAIMED
    billed_hours = -(-(lease.backstop_at - active_at) // timedelta(hours=1))
    report = credit_report(restarted, clock.now, month_key(active_at))
    assert report.lab.spent == 2 * lease.hourly_cents * billed_hours
    assert report.lab.committed == 0
    assert report.lab.granted == report.lab.spent + report.lab.committed + report.lab.available
