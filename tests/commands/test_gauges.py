"""The figures behind /metrics and /healthz, read from the database as they stand."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from commands.billing import month_key
from commands.credit_report import credit_report
from commands.gauges import gauges
from commands.health import Verdict, judge, record_sweep
from commands.notices import deliver
from commands.states import ServerState
from commands.sweep import sweep
from tests.commands.helpers import active, approved, file, lease


def test_the_gauges_count_leases_servers_and_the_outbox_as_the_database_has_them(lab, clock):
    pending = file(lab, clock)
    active(lab, clock)
    figures = gauges(lab, clock.now)

    assert figures.leases["pending"] == 1 and figures.leases["active"] == 1
    assert figures.leases["reclaimed"] == 0
    assert figures.servers[ServerState.ACTIVE] == 3
    assert figures.quarantined == 0
    book = credit_report(lab, clock.now).lab
    assert figures.credit[month_key(clock.now)] == book
    assert book.committed > 0 and book.available == book.granted - book.spent - book.committed
    assert pending  # the pending lease is not due before its decision deadline
    assert figures.sweep_lag_s == 0


def test_sweep_lag_is_the_wait_of_the_oldest_due_lease(lab, clock):
    due_at = lease(lab.db, approved(lab, clock)).due_at  # the next provisioning poll
    late = due_at + timedelta(minutes=7)
    assert gauges(lab, due_at - timedelta(seconds=1)).sweep_lag_s == 0
    assert gauges(lab, late).sweep_lag_s == 7 * 60
    sweep(lab, late)
    assert gauges(lab, late).sweep_lag_s == 0


def test_outbox_depth_and_age_count_what_is_not_delivered(lab, clock):
    file(replace(lab, notifier=None), clock)  # as the CLI does: notices wait in the outbox
    later = clock.now + timedelta(minutes=5)
    figures = gauges(lab, later)
    assert figures.outbox_depth == 2 and figures.outbox_age_s == 5 * 60

    assert deliver(lab.db, lab.notifier, later, owner=lab.replica) == 2
    assert gauges(lab, later).outbox_depth == 0


def test_health_knows_the_recorded_sweep(lab, clock):
    limit = timedelta(minutes=10)
    started = clock.now
    assert judge(clock.now, None, started, limit).verdict == Verdict.STARTING
    assert judge(clock.now + limit * 2, None, started, limit).verdict == Verdict.NEVER_SWEPT

    record_sweep(lab.db, clock.now)
    assert gauges(lab, clock.now + limit).last_sweep_age_s == limit.total_seconds()
    fresh = judge(clock.now + limit, clock.now, started, limit)
    stale = judge(clock.now + limit + timedelta(seconds=1), clock.now, started, limit)
    assert fresh.healthy and fresh.verdict == Verdict.OK
    assert not stale.healthy and stale.verdict == Verdict.SWEEP_STALE
    down = judge(clock.now, clock.now, started, limit, database_answers=False)
    assert not down.healthy and down.verdict == Verdict.DATABASE_DOWN
