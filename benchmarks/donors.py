"""Several donors: does a lab whose credit comes from 5 donors approve and sweep as fast as a lab
with 1? `python -m benchmarks donors`.

Two labs on SQLite, built the same way through the use cases and measured in turns in one run
(so a machine whose load changes colours both alike): one donor granting the whole credit, and
5 donors (each its own simulated provider account on the lab's database) granting a fifth of
it each, the requests billed to them in turn (`donor=NAME`). The same requests, one server
each, are filed in both; then

- the approval cost: `commands.review.approve` of every request (the donor's terms and dates,
  its months' credit checked and held, the state change, provisioning through its provider),
  ten at a time in each lab in turn;
- the sweep drain: `commands.sweep.sweep` called until nothing is due, once when the servers
  are up (every lease's poll) and once after the leases' end and grace (every expiry and
  reclaim, and the deletes confirmed); each lab on its own copy, in turn.

Targets: 5 donors / 1 donor at most 1.2 for each. The sizes follow ENGINE_SCALE
(benchmarks/engine/sizes.py); at a small scale the figures are indicative only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from benchmarks.common import (
    FixedClock,
    copy_database,
    heading,
    median,
    new_database,
    note,
    open_database,
    remove_database,
    row,
    seal,
    seconds,
    section,
    target_row,
    timed,
    workdir,
)
from benchmarks.engine.leases import NOW, RICH
from benchmarks.engine.sizes import SCALE, scaled
from commands.donors import Donor
from commands.lab import Lab
from commands.policy import RequestInput, Roles
from commands.request import request
from commands.review import approve
from commands.sweep import due_leases, sweep
from fakes.keys import public_key
from fakes.notifier import RecordingNotifier
from metal.simulated import SimulatedProvider
from storage.db import Database

LEASES = scaled(1_000, 40)
TURN = 10  # approvals in one lab before the other takes its turn
REPEATS = 3  # drains of each kind, on fresh copies, median
TARGET = 1.2
PLAN, METRO = "t1.small.x86", "ams1"
LEASE_HOURS = 8
REVIEWER = "U0REVIEW"
KEY = public_key("bench", "bench@ci")


@dataclass
class Run:
    """Seconds per request and per approval, and the median seconds of each drain."""

    filing: float  # request(), the donor named (routing checks that one's terms and credit)
    approval: float
    up: float  # the sweep drain once the servers are up
    end: float  # the sweep drain after the leases' end and grace


def main() -> int:
    section("donors: approval cost and sweep drain with 5 donors vs 1")
    if SCALE != 1:
        note(f"ENGINE_SCALE={SCALE:g}: {LEASES} leases a lab; the figures are indicative only")
    with workdir() as work:
        runs = _measure(work)
    one, five = runs[1], runs[5]
    heading(f"{LEASES:,} leases of 1 x {PLAN} for {LEASE_HOURS} h in each lab")
    for label, get in (
        ("request(), per request (no target)", lambda r: r.filing),
        ("approve(), per approval", lambda r: r.approval),
        ("sweep drain, servers up (polls)", lambda r: r.up),
        ("sweep drain, leases end (expire, reclaim)", lambda r: r.end),
    ):
        row(label, f"{seconds(get(one))} -> {seconds(get(five))}", "1 donor -> 5 donors")
    met = target_row("approval cost, 5 donors / 1", five.approval / one.approval, TARGET)
    drain = (five.up + five.end) / (one.up + one.end)
    met &= target_row(f"sweep drain, 5 donors / 1 (median of {REPEATS})", drain, TARGET)
    print()
    note(f"donor targets (ratios <= {TARGET}): {'PASS' if met else 'MISS'}")
    return 0


def donors(count: int) -> tuple[Donor, ...]:
    """`count` donors sharing the lab's whole credit equally."""
    grant = RICH.monthly_credit_cents // count
    return tuple(Donor(f"donor{n}", monthly_grant_cents=grant) for n in range(1, count + 1))


def donors_lab(db: Database, clock: FixedClock, count: int) -> Lab:
    """A lab of `count` donors, each a simulated provider account on the lab's database."""
    providers = {
        donor.name: SimulatedProvider(db, clock=clock, provision_seconds=120)
        for donor in donors(count)
    }
    first = next(iter(providers.values()))
    rules = replace(RICH, donor_list=donors(count), max_servers=LEASES)
    roles = Roles(reviewers=frozenset({REVIEWER}))
    return Lab(db, first, RecordingNotifier(), rules, roles, providers=providers)


def _measure(work: Path) -> dict[int, Run]:
    """Both labs filed, approved in turns, then each drained in turn on fresh copies."""
    clock = FixedClock(NOW)
    labs = {count: donors_lab(new_database(work / f"{count}.db"), clock, count) for count in (1, 5)}
    filed = {
        count: timed(lambda lab=lab, count=count: _file(lab, count)) for count, lab in labs.items()
    }
    ids = {count: result for count, (_, result) in filed.items()}
    spent = {count: 0.0 for count in labs}
    for start in range(0, LEASES, TURN):
        for count, lab in labs.items():
            turn = ids[count][start : start + TURN]
            spent[count] += timed(lambda lab=lab, turn=turn: _approve(lab, turn))[0]
    for lab in labs.values():
        seal(lab.db)
    up: dict[int, list[float]] = {count: [] for count in labs}
    end: dict[int, list[float]] = {count: [] for count in labs}
    for _ in range(REPEATS):
        for count in labs:
            first, second = _drains(work, count)
            up[count].append(first)
            end[count].append(second)
    return {
        count: Run(
            filed[count][0] / LEASES, spent[count] / LEASES, median(up[count]), median(end[count])
        )
        for count in labs
    }


def _file(lab: Lab, count: int) -> list[int]:
    """The same requests in each lab, one owner each, billed to the donors in turn."""
    names = [donor.name for donor in lab.policy.donors()]
    ids = []
    for n in range(LEASES):
        filed = request(
            lab,
            f"U0OWNER{n:05d}",
            RequestInput(
                project=f"project{n % 50}",
                repo_url=f"https://github.com/project{n % 50}/project{n % 50}",
                purpose="integration tests",
                plan=PLAN,
                metro=METRO,
                count=1,
                duration=timedelta(hours=LEASE_HOURS),
                ssh_key=KEY,
                donor=names[n % count],
            ),
            NOW,
        )
        if not filed.ok:
            raise RuntimeError(f"request {n} of the {count}-donor lab: {filed.message}")
        ids.append(filed.lease_id)
    return ids


def _approve(lab: Lab, ids: list[int]) -> None:
    for lease_id in ids:
        outcome = approve(lab, REVIEWER, lease_id, NOW)
        if not outcome.ok:
            raise RuntimeError(f"approving #{lease_id}: {outcome.message}")


def _drains(work: Path, count: int) -> tuple[float, float]:
    """On a fresh copy of the approved lab: the drain once the servers are up, and the one after
    the leases' end and grace (the deletes confirmed a few minutes later included)."""
    scratch = copy_database(work / f"{count}.db", work / f"{count}-run.db")
    db = open_database(scratch)
    try:
        clock = FixedClock(NOW + timedelta(minutes=5))
        lab = donors_lab(db, clock, count)
        up = timed(lambda: _drain(lab, clock.now))[0]
        clock.now = NOW + timedelta(hours=LEASE_HOURS) + RICH.grace + timedelta(minutes=5)
        end = timed(lambda: _drain(lab, clock.now))[0]
        clock.now += timedelta(minutes=5)
        return up, end + timed(lambda: _drain(lab, clock.now))[0]
    finally:
        db.dispose()
        remove_database(scratch)


def _drain(lab: Lab, now: datetime) -> None:
    """Sweep until nothing is due (the sweep takes a batch of leases a call)."""
    for _ in range(20):
        report = sweep(lab, now)
        if report.errors:
            raise RuntimeError(f"the sweep reported errors: {report.errors[:3]}")
        if not due_leases(lab, now, limit=1):
            return
    raise RuntimeError("leases are still due after 20 sweeps")
