"""How fast approvals go on SQLite, from one thread and from 8 at once, and 8 reviewers approving
the same lease at once (exactly one may win).

Each `commands.review.approve` is the real path: the credit check inside `BEGIN IMMEDIATE`, the
conditional UPDATE, the notices, and provisioning through the simulated provider (server rows,
device create, first poll) and notice delivery.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, text

import commands.notices
from benchmarks.common import (
    copy_database,
    heading,
    new_database,
    note,
    open_database,
    remove_database,
    row,
    seal,
    seconds,
    timed,
)
from benchmarks.engine.labs import approve_all, engine_lab
from benchmarks.engine.leases import NOW, REVIEWERS
from benchmarks.engine.probes import LockClock, PhaseClock
from benchmarks.engine.sizes import APPROVALS, CONTENTION_ROUNDS
from benchmarks.engine.tables import pending_rows
from commands.lab import Lab
from commands.review import approve
from storage.db import Database
from storage.models import Lease, SimDevice

THREADS = len(REVIEWERS)


@dataclass
class ApprovalRun:
    seconds: float
    lock_wait: float
    begins: int
    claims: int
    halves: tuple[float, float] = (0.0, 0.0)  # rate over the first and second half (1 thread)


def bench_approvals(work: Path) -> None:
    heading(f"Approvals on SQLite: {APPROVALS:,} pending requests, 1 thread vs {THREADS}")
    source, contended = work / "pending.db", work / "contended.db"
    for path, count in ((source, APPROVALS), (contended, CONTENTION_ROUNDS)):
        db = new_database(path)
        pending_rows(count).insert_into(db)
        seal(db)
    note(
        "each approve() is the real path: credit check + conditional UPDATE in BEGIN IMMEDIATE, "
        "notices, then provisioning through the simulated provider (server row, device create, "
        "first poll) and notice delivery; 1 x t1.small.x86 each, credit high"
    )
    ids = list(range(1, APPROVALS + 1))
    scratch = work / "run.db"
    single = _approval_run(source, scratch, ids, threads=1)
    multi = _approval_run(source, scratch, ids, threads=THREADS)
    _report_approvals(single, multi)
    _bench_contention(contended, scratch)


def _report_approvals(single: ApprovalRun, multi: ApprovalRun) -> None:
    row(
        "approvals/s, 1 thread",
        f"{APPROVALS / single.seconds:,.1f}/s",
        f"{seconds(single.seconds)} total; first half {single.halves[0]:.1f}/s, "
        f"second {single.halves[1]:.1f}/s",
    )
    row(
        f"approvals/s, {THREADS} threads",
        f"{APPROVALS / multi.seconds:,.1f}/s",
        f"{seconds(multi.seconds)} total",
    )
    row(f"ratio {THREADS} threads / 1 thread", f"{single.seconds / multi.seconds:.2f}")
    row(
        "waiting to write (queue + BEGIN IMMEDIATE)",
        seconds(multi.lock_wait),
        f"summed over {THREADS} threads; 1 thread: {seconds(single.lock_wait)}",
    )
    row(
        "write transactions per approval",
        f"{multi.begins / APPROVALS:.1f}",
        f"{THREADS} threads; 1 thread: {single.begins / APPROVALS:.1f}",
    )
    row(
        "notice-delivery claims per approval",
        f"{multi.claims / APPROVALS:.1f}",
        f"{THREADS} threads; 1 thread: {single.claims / APPROVALS:.1f} (3 notices each)",
    )
    note(
        "writes run one at a time (the process's writer queue, then SQLite's lock) and the rest "
        "is Python under one GIL, so threads add waiting, not throughput"
    )


def _approval_run(source: Path, scratch: Path, ids: list[int], threads: int) -> ApprovalRun:
    copy_database(source, scratch)
    db = open_database(scratch)
    try:
        lab = engine_lab(db)
        locks = LockClock(db)
        claims = PhaseClock(commands.notices, ["_claim"])
        with claims:
            elapsed, failures, halves = _approve_timed(lab, ids, threads)
        if failures:
            raise RuntimeError(f"{len(failures)} approvals failed, e.g. {failures[:3]}")
        _check_provisioning(db, ids)
        return ApprovalRun(elapsed, locks.waited, locks.begins, claims.calls["_claim"], halves)
    finally:
        db.dispose()
        remove_database(scratch)


def _approve_timed(
    lab: Lab, ids: list[int], threads: int
) -> tuple[float, list[str], tuple[float, float]]:
    if threads == 1:
        half = len(ids) // 2
        first, failures = timed(lambda: approve_all(lab, ids[:half], 1))
        second, more = timed(lambda: approve_all(lab, ids[half:], 1))
        failures += more
        elapsed = first + second
        halves = (half / first, (len(ids) - half) / second)
    else:
        elapsed, failures = timed(lambda: approve_all(lab, ids, threads))
        halves = (0.0, 0.0)
    return elapsed, failures, halves


def _check_provisioning(db: Database, ids: list[int]) -> None:
    with db.engine.connect() as conn:
        states = Counter(
            dict(
                conn.execute(
                    select(Lease.state, func.count())
                    .where(Lease.id.in_(ids))  # type: ignore[union-attr]
                    .group_by(Lease.state)
                ).all()
            )
        )
        devices = conn.execute(select(func.count()).select_from(SimDevice)).scalar()
    if states != Counter({"provisioning": len(ids)}) or devices != len(ids):
        raise RuntimeError(f"after approval: lease states {dict(states)}, {devices} devices")


def _bench_contention(source: Path, scratch: Path) -> None:
    heading(f"Contention: {THREADS} threads approve the same lease, {CONTENTION_ROUNDS} rounds")
    note(
        "each round: a barrier releases 8 reviewers onto one pending lease; one approves it "
        "(and provisions), 7 are told who did (refusals audited); checked in the database too"
    )
    rounds = list(range(1, CONTENTION_ROUNDS + 1))
    elapsed = _contention_run(source, scratch, rounds)
    row("exactly one winner per round", "yes", f"{CONTENTION_ROUNDS} of {CONTENTION_ROUNDS}")
    row(
        "contended rounds/s",
        f"{CONTENTION_ROUNDS / elapsed:,.1f}/s",
        f"{CONTENTION_ROUNDS * THREADS / elapsed:,.0f} attempts/s, {seconds(elapsed)} total",
    )


def _contention_run(source: Path, scratch: Path, ids: list[int]) -> float:
    """Rounds of every reviewer approving the same lease at once; the seconds they took."""
    copy_database(source, scratch)
    db = open_database(scratch)
    try:
        elapsed, wins = _race(engine_lab(db), ids)
        _check_one_winner(db, ids, wins)
        _check_provisioning(db, ids)
        return elapsed
    finally:
        db.dispose()
        remove_database(scratch)


def _race(lab: Lab, ids: list[int]) -> tuple[float, list[list[str]]]:
    """Each round a barrier releases every reviewer onto one lease; who won each round."""
    barrier = threading.Barrier(THREADS)
    wins: list[list[str]] = [[] for _ in ids]
    errors: list[str] = []

    def worker(reviewer: str) -> None:
        for round_no, lease_id in enumerate(ids):
            barrier.wait()
            try:
                if approve(lab, reviewer, lease_id, NOW).ok:
                    wins[round_no].append(reviewer)
            except Exception as error:
                errors.append(f"{reviewer} on #{lease_id}: {type(error).__name__}: {error}")

    pool = [threading.Thread(target=worker, args=(r,)) for r in REVIEWERS]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} approvals raised, e.g. {errors[:3]}")
    return elapsed, wins


def _check_one_winner(db: Database, ids: list[int], wins: list[list[str]]) -> None:
    """One winner per round, and the database agrees: decided by the winner, the other
    reviewers' polite refusals audited."""
    bad = [(ids[n], w) for n, w in enumerate(wins) if len(w) != 1]
    if bad:
        raise RuntimeError(f"{len(bad)} rounds without exactly one winner, e.g. {bad[:3]}")
    with db.engine.connect() as conn:
        decided = dict(
            conn.execute(select(Lease.id, Lease.decided_by).where(Lease.id.in_(ids))).all()  # type: ignore[union-attr]
        )
        refused = conn.execute(
            text("SELECT count(*) FROM auditevent WHERE action = 'approve' AND outcome = 'refused'")
        ).scalar()
    if any(decided[lease_id] != wins[n][0] for n, lease_id in enumerate(ids)):
        raise RuntimeError("a lease records a different approver than the one that won")
    if refused != (THREADS - 1) * len(ids):
        raise RuntimeError(f"{refused} refusals audited, expected {(THREADS - 1) * len(ids)}")
