"""Real threads on a real database: sixteen reviewers clicking Approve at once, an owner's
release racing the expiry sweep, two sweeps at once, the sweep going on while an approval holds
the month."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlmodel import select

from commands.budget import over_budget
from commands.credit import books, ensure_grant
from commands.holds import planned_cost
from commands.lab import Code
from commands.policy import Roles
from commands.reclaim import release
from commands.review import approve
from commands.states import State
from commands.sweep import sweep
from storage.models import Lease, ServerSpend
from tests.commands.credit_reference import reference_books
from tests.commands.helpers import (
    active,
    approved,
    audits,
    file,
    lease,
    live_devices,
    servers,
    sweep_until_quiet,
)
from tests.conftest import OWNER, REVIEWER

REVIEWERS = [f"U0REV{n:02d}" for n in range(16)]


def run_together(*jobs):
    """Start every job at the same instant on its own thread; return their results."""
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)
    errors: list = []

    def run(index, job):
        barrier.wait()
        try:
            results[index] = job()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def test_sixteen_reviewers_approving_at_once_yield_one_approval(lab, clock):
    lab = replace(lab, roles=Roles(reviewers=frozenset(REVIEWERS)))
    lease_id = file(lab, clock)
    outcomes = run_together(
        *[lambda who=who: approve(lab, who, lease_id, clock.now) for who in REVIEWERS]
    )
    winners = [o for o in outcomes if o.ok]
    assert len(winners) == 1
    row = lease(lab.db, lease_id)
    assert row.decided_by in REVIEWERS
    losers = [o for o in outcomes if not o.ok]
    assert len(losers) == 15
    # Each loser is told who decided first.
    assert all(
        o.code == Code.ALREADY_DECIDED and f"<@{row.decided_by}>" in o.message for o in losers
    ), losers
    assert [a.actor for a in audits(lab.db, lease_id, "approve") if a.outcome == "ok"] == [
        row.decided_by
    ]
    # One commitment of credit, one set of servers.
    with lab.db.write() as session:
        month = books(session, ["2026-11"], lab.policy, clock.now)["2026-11"]
    assert month.committed == 3 * 40 * 49
    assert len(servers(lab.db, lease_id)) == 3
    assert len(live_devices(lab, lease_id)) == 3
    assert lab.provider.calls.count("create") == 3


def test_approvals_of_different_leases_at_once_never_over_commit(lab, clock):
    lab = replace(lab, roles=Roles(reviewers=frozenset(REVIEWERS)))
    # Each lease is $58.80; the month holds $200: three fit, the fourth does not.
    from tests.conftest import with_policy

    lab = with_policy(lab, monthly_credit_cents=20_000, pending_per_user=8)
    ids = [file(lab, clock) for _ in range(8)]
    outcomes = run_together(
        *[
            lambda i=i, who=who: approve(lab, who, i, clock.now)
            for i, who in zip(ids, REVIEWERS[: len(ids)], strict=True)
        ]
    )
    assert sum(o.ok for o in outcomes) == 3
    assert all(o.code == Code.OVER_BUDGET for o in outcomes if not o.ok)
    with lab.db.write() as session:
        month = books(session, ["2026-11"], lab.policy, clock.now)["2026-11"]
    assert month.committed == 3 * 5880 and month.available >= 0


def test_a_release_racing_the_expiry_sweep_reclaims_once(lab, clock):
    for round_ in range(6):
        lease_id = active(lab, clock)
        end = lease(lab.db, lease_id).ends_at + lab.policy.grace
        clock.now = end
        deletes_before = lab.provider.calls.count("delete")
        told_before = len(lab.notifier.messages)
        outcomes = run_together(
            lambda i=lease_id, end=end: release(lab, OWNER, i, end),
            lambda end=end: sweep(lab, end),
            lambda end=end: sweep(lab, end),
        )
        assert outcomes[1].errors == [] and outcomes[2].errors == []
        row = lease(lab.db, lease_id)
        assert row.state == State.RECLAIMED, (round_, row.state)
        actions = Counter(a.action for a in audits(lab.db, lease_id) if a.outcome == "ok")
        assert actions["release"] + actions["expire"] == 1
        assert actions["reclaimed"] == 1
        assert lab.provider.calls.count("delete") - deletes_before == 3, round_
        assert live_devices(lab) == []
        if not outcomes[0].ok:
            assert outcomes[0].code in (Code.WRONG_STATE, Code.CHANGED_MEANWHILE)
        kinds = Counter(m.kind for m in lab.notifier.messages[told_before:])
        assert kinds["released"] == 1 and kinds["reclaimed"] == 1


def test_an_approval_racing_the_request_deadline_is_one_or_the_other(lab, clock):
    for _ in range(4):
        lease_id = file(lab, clock)
        deadline = lease(lab.db, lease_id).decide_by
        outcome, report = run_together(
            lambda i=lease_id, deadline=deadline: approve(lab, "U0REVIEW", i, deadline),
            lambda deadline=deadline: sweep(lab, deadline),
        )
        assert report.errors == []
        state = lease(lab.db, lease_id).state
        if outcome.ok:
            assert state == State.PROVISIONING
        else:
            assert state == State.EXPIRED_REQUEST
            assert outcome.code == Code.WRONG_STATE
        clock.now = deadline


HELD_AT_MOST = 20  # seconds an approval keeps the month in the test below, unless let go


def test_the_sweep_goes_on_while_an_approval_holds_the_month(lab, clock):
    """An approval's check holds the month's lock row open. Meanwhile the sweep expires one
    lease, settles what its servers billed once they are gone, and activates another: none of
    that checks money, so none of it waits; the approval then goes through, and the books equal
    the reference to the cent."""
    if lab.db.is_sqlite:
        pytest.skip("SQLite has one writer at a time: every write waits for the approval")
    ending = active(lab, clock)
    starting = approved(lab, clock, project="envoy")
    waiting = file(lab, clock, project="cilium")
    clock.now = lease(lab.db, ending).ends_at + lab.policy.grace
    with lab.db.write() as session:  # the months' grants, which the first reader writes
        months = sorted(planned_cost(session.get(Lease, waiting), lab.policy, clock.now))
        for month in months:
            ensure_grant(session, month, lab.policy, clock.now)
    holding, let_go = threading.Event(), threading.Event()

    def hold_the_month() -> bool:
        with lab.db.write() as session:
            assert over_budget(session, session.get(Lease, waiting), lab.policy, clock.now) == []
            holding.set()
            return let_go.wait(HELD_AT_MOST)

    results: list[bool] = []
    holder = threading.Thread(target=lambda: results.append(hold_the_month()))
    holder.start()
    assert holding.wait(HELD_AT_MOST)
    sweep_until_quiet(lab, clock, timedelta(minutes=1), limit=5)
    let_go.set()
    holder.join(HELD_AT_MOST + 10)
    assert results == [True], "the sweep waited for the approval to let the month go"
    assert lease(lab.db, ending).state == State.RECLAIMED
    assert lease(lab.db, starting).state == State.ACTIVE
    with lab.db.read() as session:
        assert session.exec(select(ServerSpend).where(ServerSpend.lease_id == ending)).all()
    assert approve(lab, REVIEWER, waiting, clock.now).ok
    with lab.db.write() as session:
        months = sorted({*months, "2026-11"})
        assert books(session, months, lab.policy, clock.now) == reference_books(
            session, months, lab.policy, clock.now
        )
        for project in ("coredns", "envoy", "cilium"):
            assert books(
                session, months, lab.policy, clock.now, project=project
            ) == reference_books(session, months, lab.policy, clock.now, project=project)


def test_approvals_racing_the_sweep_keep_the_books_exact(lab, clock):
    """Two approvals, an expiry, a settlement and an activation at once, on each database: every
    one goes through and the books equal the reference to the cent."""
    ending = active(lab, clock)
    starting = approved(lab, clock, project="envoy")
    pending = [file(lab, clock, project=p) for p in ("cilium", "envoy")]
    clock.now = lease(lab.db, ending).ends_at + lab.policy.grace
    now = clock.now
    outcomes = run_together(
        *[lambda i=i: approve(lab, REVIEWER, i, now) for i in pending],
        lambda: sweep(lab, now),
        lambda: sweep(lab, now),
    )
    assert all(o.ok for o in outcomes[:2]), outcomes[:2]
    assert outcomes[2].errors == [] and outcomes[3].errors == []
    sweep_until_quiet(lab, clock, timedelta(minutes=1), limit=5)
    assert lease(lab.db, ending).state == State.RECLAIMED
    assert lease(lab.db, starting).state == State.ACTIVE
    months = ["2026-11", "2026-12"]
    with lab.db.write() as session:
        assert books(session, months, lab.policy, clock.now) == reference_books(
            session, months, lab.policy, clock.now
        )
        for project in ("coredns", "envoy", "cilium"):
            assert books(
                session, months, lab.policy, clock.now, project=project
            ) == reference_books(session, months, lab.policy, clock.now, project=project)
