"""The lab's process at scale: the ranked queue, the reserve check at approval, and the public
report's month, in a lab of 1,000 pending requests and 1,000 live leases.

Each is measured against a baseline taken in the same run on the same database:
- `/lab queue` against `/lab credit` (both read the month's books; the queue adds the pending
  requests and their ranking);
- an approval with the reserve kept (20%) against the same approval with no reserve (the check
  is skipped);
- the report's month against `/lab credit`.
"""

from __future__ import annotations

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
from commands.credit_report import credit_report
from commands.holds import hold_approved
from commands.policy import Policy
from commands.process import CLASSES
from commands.queue import queue
from commands.report import public_month
from commands.review import approve
from commands.states import State
from storage.models import Lease

PENDING = 1_000
LIVE = 1_000
APPROVALS = 9
REVIEWER = "U0REVIEW"


def _lease(n: int, state: State, applicant: str, clock: FixedClock) -> Lease:
    start = clock.now - timedelta(hours=n % 48)
    live = state != State.PENDING
    return Lease(
        state=state,
        owner=f"U0USER{n % 50}",
        project=f"project-{n % 120}",
        repo_url=f"https://github.com/org/project-{n % 120}",
        purpose="benchmark",
        plan="t1.small.x86",
        metro="ams1",
        os="ubuntu_16_04",
        count=1,
        duration_s=3600 * 24,
        hourly_cents=7,
        created_at=start,
        starts_at=start if live else None,
        ends_at=start + timedelta(days=1) if live else None,
        applicant_class=applicant,
        claimed_class=applicant,
    )


def main() -> int:
    section("The lab's process: queue, reserve, report (1,000 pending, 1,000 live leases)")
    note("ratios against /lab credit measured in the same run; absolute times vary by machine")
    clock = FixedClock()
    rng = random.Random(11)
    with workdir() as tmp:
        db = new_database(tmp / "process.db")
        with db.write() as session:
            live = [_lease(n, State.APPROVED, rng.choice(CLASSES), clock) for n in range(LIVE)]
            session.add_all(live)
            session.flush()
            for lease in live:  # as an approval leaves them: holding their plan
                hold_approved(session, lease, Policy(), clock.now)
            for n in range(PENDING):
                session.add(_lease(LIVE + n, State.PENDING, rng.choice(CLASSES), clock))
        lab = make_lab(db, clock, reviewers=frozenset({REVIEWER}))
        lab = replace(lab, policy=replace(lab.policy, monthly_credit_cents=10**12))
        results = [
            _compare(
                "/lab queue against /lab credit",
                lambda: queue(lab, clock.now),
                lambda: credit_report(lab, clock.now),
                3.0,
            ),
            _approvals(lab, clock),
            _compare(
                "the report's month against /lab credit",
                lambda: public_month(lab, clock.now.strftime("%Y-%m"), clock.now),
                lambda: credit_report(lab, clock.now),
                3.0,
            ),
        ]
        db.dispose()
    note(f"{sum(results)} of {len(results)} targets met")
    return 0


def _compare(title: str, measured, baseline, target: float) -> bool:
    heading(title)
    pairs = [(timed(measured)[0], timed(baseline)[0]) for _ in range(7)]
    got, base = median([p[0] for p in pairs]), median([p[1] for p in pairs])
    row("measured (median of 7)", seconds(got))
    row("baseline (median of 7)", seconds(base))
    return target_row("ratio", got / base, target)


def _approvals(lab, clock) -> bool:
    """Approvals of foundation requests, alternating a lab keeping 20% with one keeping none."""
    heading("approval with the reserve check against without it")
    kept, none = lab, replace(lab, policy=replace(lab.policy, reserved_share=0))
    with lab.db.read() as session:
        ids = [
            lease.id
            for lease in session.exec(
                Lease.__table__.select().where(
                    Lease.state == State.PENDING, Lease.applicant_class == "foundation"
                )
            ).all()
        ][: 2 * APPROVALS]
    with_reserve, without = [], []
    for i, lease_id in enumerate(ids):
        which, into = (kept, with_reserve) if i % 2 == 0 else (none, without)
        elapsed, outcome = timed(lambda: approve(which, REVIEWER, lease_id, clock.now))  # noqa: B023
        assert outcome.ok, outcome.message
        into.append(elapsed)
    got, base = median(with_reserve), median(without)
    row(f"with the reserve (median of {len(with_reserve)})", seconds(got))
    row(f"without (median of {len(without)})", seconds(base))
    return target_row("ratio", got / base, 2.0)
