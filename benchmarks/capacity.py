"""The capacity calendar at scale: a booking's capacity check against a calendar of 10,000
bookings, against the same check on an empty calendar (target: at most 1.5 times as long).

The calendar is a lab's 60 days ahead: 10,000 approved bookings (1 to 4 servers, 4 to 72 hours)
spread over its five plans and fifteen metros, every plan and metro with a limit that leaves
room, so the check answers "fits" after reading everything that overlaps it. The check reads
the days its window touches by the calendar index's prefix, so it costs what overlaps it (a
handful of bookings), never the calendar's size: a scan of the live leases would cost 10,000
rows. Each check runs in a write transaction that is rolled back, as an approval's would hold
the plan's metros; both calendars are checked in turn with the same windows.
"""

from __future__ import annotations

import os
import random
from dataclasses import replace
from datetime import timedelta

from benchmarks.common import (
    FixedClock,
    heading,
    make_lab,
    median,
    new_database,
    note,
    row,
    seconds,
    section,
    target_row,
    timed,
    workdir,
)
from commands.capacity import held, misfit, place, window
from commands.policy import Policy
from commands.states import State
from storage.models import Lease

BOOKINGS = int(os.environ.get("CAPACITY_BOOKINGS", "10000"))
PLANS = ("t1.small.x86", "c1.small.x86", "m1.xlarge.x86", "c1.large.arm", "c1.xlarge.x86")
METROS = ("ams1", "ewr1", "sjc1", "nrt1", "atl1", "dfw1", "iad1", "lax1", "ord1", "sea1")
METROS += ("fra2", "sin3", "syd2", "hkg1", "yyz1")
DAYS = 60
CHECKS = 41
TARGET = 1.5


def _booking(n: int, rng: random.Random, clock: FixedClock) -> Lease:
    start = clock.now + timedelta(minutes=rng.randrange(DAYS * 24 * 60))
    return Lease(
        state=State.APPROVED,
        owner=f"U0USER{n % 50}",
        project=f"project-{n % 120}",
        repo_url=f"https://github.com/org/project-{n % 120}",
        purpose="benchmark",
        plan=rng.choice(PLANS),
        metro=rng.choice(METROS),
        os="ubuntu_16_04",
        count=rng.randint(1, 4),
        duration_s=3600 * rng.randint(4, 72),
        hourly_cents=40,
        created_at=clock.now,
        decided_at=clock.now,
        decided_by="U0REVIEW",
        book_start=start,
    )


def _probe(rng: random.Random, clock: FixedClock) -> Lease:
    """A request for a booking somewhere in the 60 days: what approval checks."""
    lease = _booking(0, rng, clock)
    lease.state, lease.decided_at, lease.plan, lease.metro = (
        State.PENDING,
        None,
        "c1.small.x86",
        "ams1",
    )
    lease.duration_s = 24 * 3600
    return lease


def main() -> int:
    section(f"The capacity calendar: a booking's check against {BOOKINGS:,} bookings")
    note("the same checks on an empty calendar in the same run; absolute times vary by machine")
    clock = FixedClock()
    rng = random.Random(22)
    policy = Policy(capacity=tuple((p, m, 10_000) for p in PLANS for m in METROS))
    with workdir() as tmp:
        full = new_database(tmp / "full.db")
        empty = new_database(tmp / "empty.db")
        bookings = [_booking(n, rng, clock) for n in range(BOOKINGS)]
        with full.write() as session:
            session.add_all(bookings)
            session.flush()
            place(session, bookings, policy, clock.now)
        labs = {
            name: replace(make_lab(db, clock), policy=policy)
            for name, db in (("full", full), ("empty", empty))
        }
        probes = [_probe(rng, clock) for _ in range(CHECKS)]
        times: dict[str, list[float]] = {"full": [], "empty": []}
        overlaps = []
        for probe in probes:
            for name, lab in labs.items():
                times[name].append(timed(lambda lab=lab, probe=probe: _check(lab, probe, clock))[0])
            with full.read() as session:
                start, end = window(probe, policy, clock.now)
                overlaps.append(
                    len(held(session, policy, probe.plan, probe.metro, start, end, clock.now))
                )
        heading(f"one booking's check (median of {CHECKS}, 24h windows in c1.small.x86 / ams1)")
        row("bookings overlapping the window (median)", f"{median(overlaps):.0f}")
        got, base = median(times["full"]), median(times["empty"])
        row(f"against {BOOKINGS:,} bookings", seconds(got))
        row("against an empty calendar", seconds(base))
        met = target_row("ratio", got / base, TARGET)
        full.dispose()
        empty.dispose()
    note(f"{int(met)} of 1 targets met")
    return 0


def _check(lab, probe: Lease, clock: FixedClock) -> None:
    with lab.db.write() as session:
        assert misfit(session, lab.policy, probe, clock.now) is None
        session.rollback()
