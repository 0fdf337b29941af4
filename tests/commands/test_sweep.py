"""The sweep stepped through a lease's life: provisioning (failures, partial leases, time-outs),
reminders, expiry after grace, failing deletes and quarantine, orphans and vanished devices."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from commands.facts import when
from commands.notices import Kind
from commands.reclaim import release
from commands.states import ServerState, State
from commands.sweep import due_leases, sweep
from metal.provider import TAG, DeviceSpec
from storage.models import Orphan
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
from tests.conftest import OWNER, make_lab, with_policy


def test_a_sweep_with_nothing_due_does_nothing(lab, clock):
    report = sweep(lab, clock.now)
    assert report.stepped == [] and report.errors == []
    assert report.lines()[-1] == "0 notices delivered"


def test_sweeping_twice_at_the_same_moment_does_nothing_the_second_time(lab, clock):
    running = active(lab, clock)
    file(lab, clock, project="envoy", repo_url="https://github.com/envoyproxy/envoy")
    for moment in (
        clock.now,
        lease(lab.db, running).ends_at - timedelta(hours=24),
        lease(lab.db, running).ends_at + lab.policy.grace,
        clock.now + lab.policy.decide_within,
    ):
        sweep(lab, moment)
        before = snapshot(lab.db, skip=())
        told = len(lab.notifier.messages)
        calls = [c for c in lab.provider.calls if c != "get"]
        sweep(lab, moment)
        assert snapshot(lab.db, skip=()) == before
        assert len(lab.notifier.messages) == told
        assert [c for c in lab.provider.calls if c != "get"] == calls


def test_reminders_at_each_offset_then_expiry_after_grace(lab, clock):
    lease_id = active(lab, clock)
    ends = lease(lab.db, lease_id).ends_at
    assert ends == clock.now + timedelta(hours=48)
    sweep(lab, ends - timedelta(hours=24, seconds=1))
    assert lab.notifier.texts(Kind.REMINDER) == []
    sweep(lab, ends - timedelta(hours=24))
    assert lab.notifier.texts(Kind.REMINDER) == [
        f"Lease #{lease_id} (3 x c1.small.x86 in ams1 for 2d) ends in 1d, at "
        f"{when(ends)}. Extend it if you still need the servers, or release them now."
    ]
    sweep(lab, ends - timedelta(hours=2))
    assert len(lab.notifier.texts(Kind.REMINDER)) == 1
    sweep(lab, ends - timedelta(hours=1))
    assert "ends in 1h" in lab.notifier.texts(Kind.REMINDER)[1]
    sweep(lab, ends)
    sweep(lab, ends + lab.policy.grace - timedelta(seconds=1))
    assert lease(lab.db, lease_id).state == State.ACTIVE
    assert len(live_devices(lab, lease_id)) == 3
    assert len(lab.notifier.texts(Kind.REMINDER)) == 2
    sweep(lab, ends + lab.policy.grace)
    row = lease(lab.db, lease_id)
    assert (row.state, row.due_at) == (State.RECLAIMED, None)
    assert live_devices(lab) == []
    assert lab.notifier.texts(Kind.RELEASED) == [
        f"Lease #{lease_id} (3 x c1.small.x86 in ams1 for 2d) has ended; its servers are being "
        "deleted."
    ]
    assert len(lab.notifier.texts(Kind.RECLAIMED)) == 1
    assert len(lab.notifier.texts(Kind.WRITEUP_REQUEST)) == 1
    assert [a.actor for a in audits(lab.db, lease_id, "expire")] == ["system"]


def test_the_sweep_finds_work_by_deadline(lab, clock):
    lease_id = active(lab, clock)
    ends = lease(lab.db, lease_id).ends_at
    assert lease(lab.db, lease_id).due_at == ends - timedelta(hours=24)
    assert due_leases(lab, ends - timedelta(hours=25)) == []
    assert [row.id for row in due_leases(lab, ends - timedelta(hours=24))] == [lease_id]


def test_a_lease_shorter_than_an_offset_is_reminded_at_once(lab, clock):
    lease_id = active(lab, clock, duration=timedelta(hours=2))
    sweep(lab, clock.now)
    [reminder] = lab.notifier.texts(Kind.REMINDER)
    assert "ends in 2h" in reminder
    sweep(lab, clock.advance(hours=1))
    assert "ends in 1h" in lab.notifier.texts(Kind.REMINDER)[1]
    # Next: halfway to the end, whether anyone answered the last reminder; then expiry.
    ends_at = lease(lab.db, lease_id).ends_at
    assert lease(lab.db, lease_id).due_at == ends_at - timedelta(minutes=30)
    sweep(lab, ends_at - timedelta(minutes=30))
    assert lease(lab.db, lease_id).due_at == ends_at + lab.policy.grace


def test_a_late_sweep_sends_the_due_reminders_in_one_message(lab, clock):
    lease_id = active(lab, clock)
    sweep(lab, lease(lab.db, lease_id).ends_at - timedelta(minutes=30))
    [reminder] = lab.notifier.texts(Kind.REMINDER)
    assert "ends in 30m" in reminder
    assert '"offsets": [86400, 3600]' in audits(lab.db, lease_id, "remind")[0].details


def test_pending_requests_expire_after_decide_within(lab, clock):
    lab = with_policy(lab, decide_within=timedelta(hours=12))
    lease_id = file(lab, clock)
    sweep(lab, clock.advance(hours=11))
    assert lease(lab.db, lease_id).state == State.PENDING
    sweep(lab, clock.advance(hours=1))
    assert lease(lab.db, lease_id).state == State.EXPIRED_REQUEST
    assert lab.notifier.texts(Kind.REQUEST_EXPIRED) == [
        f"Your request #{lease_id} (3 x c1.small.x86 in ams1 for 2d) expired: no reviewer "
        "decided by <!date^1793653200^{date_short_pretty} {time}|Nov 2, 2026 21:00 UTC>. "
        "File it again or ask in the review channel."
    ]
    decided = [m for m in lab.notifier.messages if m.kind == Kind.CARD_DECIDED]
    assert decided[0].data["decision"] == "expired"


# Provisioning -----------------------------------------------------------------------------


def test_a_failed_create_is_retried_and_the_lease_comes_up(lab, clock):
    lab.provider.fail_next_creates(1)
    lease_id = approved(lab, clock)
    states = sorted(s.state for s in servers(lab.db, lease_id))
    assert states == [ServerState.PENDING, ServerState.PROVISIONING, ServerState.PROVISIONING]
    sweep(lab, clock.advance(seconds=30))
    sweep(lab, clock.advance(minutes=3))
    assert lease(lab.db, lease_id).state == State.ACTIVE
    assert len(live_devices(lab, lease_id)) == 3
    assert [a.outcome for a in audits(lab.db, lease_id, "create")].count("failed") == 1


def test_a_device_that_fails_provisioning_is_replaced(lab, clock):
    lab.provider.fail_next_provisioning(1)
    lease_id = approved(lab, clock)
    failed = servers(lab.db, lease_id)[0].provider_id
    sweep(lab, clock.advance(minutes=3))
    assert lease(lab.db, lease_id).state == State.PROVISIONING
    # The failed device is deleted at once, not left to bill until the lease ends.
    assert failed not in {d.id for d in live_devices(lab)}
    sweep(lab, clock.advance(seconds=30))  # the replacement is created
    sweep(lab, clock.advance(minutes=3))
    assert lease(lab.db, lease_id).state == State.ACTIVE
    devices = live_devices(lab, lease_id)
    assert len(devices) == 3
    assert sorted(d.hostname for d in devices) == [f"coredns-{lease_id}-{n}" for n in (1, 2, 3)]
    assert len(audits(lab.db, lease_id, "provision_failed")) == 1


def test_creates_that_keep_failing_fail_the_lease_and_release_its_credit(lab, clock):
    lab = with_policy(lab, create_attempts=2)
    lab.provider.fail_next_creates(4)
    lease_id = approved(lab, clock)
    # Three creates fail; of the three retries one fails for good, two devices come up.
    sweep(lab, clock.advance(minutes=1))
    assert lease(lab.db, lease_id).state == State.PROVISIONING
    assert len(live_devices(lab, lease_id)) == 2
    sweep(lab, clock.advance(minutes=3))
    assert lease(lab.db, lease_id).state == State.FAILED
    # The servers that did come up are deleted; nothing bills and nothing is committed.
    sweep(lab, clock.advance(minutes=1))
    assert live_devices(lab) == []
    assert lease(lab.db, lease_id).due_at is None
    from commands.credit_report import credit_report

    assert credit_report(lab, clock.now).lab.committed == 0
    assert lab.notifier.texts(Kind.FAILED)[0].startswith(f"Sorry: lease #{lease_id}")
    alert = [m for m in lab.notifier.messages if m.data.get("alert") == "provision_failed"]
    assert "simulated: create refused" in alert[0].text


def test_a_partial_lease_starts_with_what_came_up(lab, clock):
    lab = with_policy(lab, create_attempts=1)
    lab.provider.fail_next_creates(1)
    lease_id = approved(lab, clock, allow_partial=True)
    sweep(lab, clock.advance(minutes=3))
    row = lease(lab.db, lease_id)
    assert (row.state, row.count) == (State.ACTIVE, 2)
    assert "is ready (2 of the 3 asked for)" in lab.notifier.texts(Kind.READY)[0]
    assert len(live_devices(lab, lease_id)) == 2


def test_without_allow_partial_a_missing_server_fails_the_lease(lab, clock):
    lab = with_policy(lab, create_attempts=1)
    lab.provider.fail_next_creates(1)
    lease_id = approved(lab, clock)
    sweep(lab, clock.advance(minutes=3))
    assert lease(lab.db, lease_id).state == State.FAILED
    sweep(lab, clock.advance(minutes=1))
    assert live_devices(lab) == []


def test_provisioning_that_takes_too_long_times_out(db, clock):
    lab = make_lab(db, clock)
    lab.provider.provision_time = timedelta(hours=10)
    lease_id = approved(lab, clock)
    sweep(lab, clock.advance(hours=1))
    assert lease(lab.db, lease_id).state == State.PROVISIONING
    sweep(lab, clock.advance(hours=1))
    row = lease(lab.db, lease_id)
    assert (row.state, row.reason) == (State.FAILED, "provisioning timed out")
    sweep(lab, clock.advance(minutes=1))
    assert live_devices(lab) == []


# Deletes that fail ------------------------------------------------------------------------


def test_failing_deletes_back_off_then_quarantine_after_n(lab, clock):
    lab = with_policy(lab, delete_attempts=3)
    lease_id = active(lab, clock)
    stuck = servers(lab.db, lease_id)[0]
    lab.provider.fail_deletes(stuck.provider_id, 4)
    release(lab, OWNER, lease_id, clock.now)
    assert lease(lab.db, lease_id).state == State.RELEASING
    assert [d.id for d in live_devices(lab)] == [stuck.provider_id]
    # Backoff: 30 s, then 60 s.
    sweep(lab, clock.advance(seconds=29))
    assert len(audits(lab.db, lease_id, "delete")) == 1
    sweep(lab, clock.advance(seconds=1))
    assert len(audits(lab.db, lease_id, "delete")) == 2
    sweep(lab, clock.advance(seconds=60))
    assert lease(lab.db, lease_id).state == State.QUARANTINED
    alerts = [m for m in lab.notifier.messages if m.data.get("alert") == "quarantined"]
    assert len(alerts) == 1
    assert f"deleting {stuck.hostname}" in alerts[0].text
    assert "failed 3 times" in alerts[0].text
    # Quarantine keeps trying hourly, as the alert says, and tells the admins only once.
    sweep(lab, clock.advance(minutes=59))
    assert len(audits(lab.db, lease_id, "delete")) == 3
    sweep(lab, clock.advance(minutes=1))
    assert len(audits(lab.db, lease_id, "delete")) == 4
    assert lease(lab.db, lease_id).state == State.QUARANTINED
    sweep(lab, clock.advance(hours=1))
    assert lease(lab.db, lease_id).state == State.RECLAIMED
    assert live_devices(lab) == []
    assert len([m for m in lab.notifier.messages if m.data.get("alert") == "quarantined"]) == 1


# Orphans and vanished devices ----------------------------------------------------------------


def _stray(lab, hostname, *tags):
    return lab.provider.create(
        DeviceSpec(hostname=hostname, plan="t1.small.x86", metro="ams1", os="x", tags=tags)
    )


def test_orphans_are_deleted_after_grace(lab, clock):
    orphan = _stray(lab, "forgotten", TAG, "lease-77")
    theirs = _stray(lab, "not-ours", "someone-else")
    sweep(lab, clock.now)
    with lab.db.read() as session:
        row = session.get(Orphan, orphan.id)
    assert row.first_seen == clock.now and row.deleted_at is None
    assert audits(lab.db, action="orphan_found")
    sweep(lab, clock.advance(minutes=30))
    assert {d.id for d in live_devices(lab)} == {orphan.id, theirs.id}
    sweep(lab, clock.advance(minutes=30))
    assert [d.id for d in live_devices(lab)] == [theirs.id]
    alert = [m for m in lab.notifier.messages if m.data.get("alert") == "orphan"]
    assert len(alert) == 1 and "forgotten" in alert[0].text
    sweep(lab, clock.advance(hours=1))
    assert len(audits(lab.db, action="orphan_deleted")) == 1


def test_a_device_of_a_lease_still_provisioning_is_not_an_orphan(lab, clock):
    lab.provider.provision_time = timedelta(hours=1, minutes=30)
    lease_id = approved(lab, clock)
    sweep(lab, clock.now)
    sweep(lab, clock.advance(hours=1, minutes=10))
    assert audits(lab.db, action="orphan_found") == []
    assert len(live_devices(lab, lease_id)) == 3


def test_a_vanished_device_is_flagged_and_stops_billing(lab, clock):
    lease_id = active(lab, clock)
    gone = servers(lab.db, lease_id)[2]
    lab.provider.vanish(gone.provider_id)
    sweep(lab, clock.advance(minutes=15))
    row = lease(lab.db, lease_id)
    assert row.state == State.ACTIVE
    assert row.flagged.startswith(f"{gone.hostname} vanished from the provider")
    assert [s.state for s in servers(lab.db, lease_id)] == [
        ServerState.ACTIVE,
        ServerState.ACTIVE,
        ServerState.VANISHED,
    ]
    vanished = [m for m in lab.notifier.messages if m.data.get("alert") == "vanished"]
    assert {m.audience for m in vanished} == {"admin", f"user:{OWNER}"}
    sweep(lab, clock.advance(minutes=15))
    assert len([m for m in lab.notifier.messages if m.data.get("alert") == "vanished"]) == 2
    # The rest of the lease runs its course.
    sweep(lab, row.ends_at + lab.policy.grace)
    assert lease(lab.db, lease_id).state == State.RECLAIMED
    assert live_devices(lab) == []


def test_the_reconcile_reads_the_providers_catalog_again(lab, clock):
    """A price the provider changes reaches the next request's estimate."""
    plans = dict(lab.plans().plans)
    plans["c1.small.x86"] = replace(plans["c1.small.x86"], hourly_cents=55)
    lab.provider.offered = replace(lab.plans(), plans=plans)  # the provider changed its list
    sweep(lab, clock.now)
    assert lab.plans().plans["c1.small.x86"].hourly_cents == 55


def test_with_no_grace_a_lease_is_reclaimed_exactly_at_its_end(lab, clock):
    lab = with_policy(lab, grace=timedelta(0))
    lease_id = active(lab, clock)
    ends = lease(lab.db, lease_id).ends_at
    sweep(lab, ends - timedelta(seconds=1))
    assert lease(lab.db, lease_id).state == State.ACTIVE
    sweep(lab, ends)
    assert lease(lab.db, lease_id).state != State.ACTIVE


def test_a_provisioning_lease_is_asked_again_after_the_policys_poll_interval(lab, clock):
    lab = with_policy(lab, provision_poll=timedelta(seconds=5))
    lease_id = approved(lab, clock)
    sweep(lab, clock.advance(seconds=10))  # the simulated servers take 120 s
    assert lease(lab.db, lease_id).state == State.PROVISIONING
    assert lease(lab.db, lease_id).due_at == clock.now + timedelta(seconds=5)
