"""Idleness under random activity: hypothesis writes what each server reports, five minutes at a
time (quiet, busy, a report with no signal, or no report at all), and checks against a plain
minute-by-minute reading of the same reports:

- a server judged idle had reports with a signal covering every minute of the last
  `idle_after` of what they said, all quiet; a server with no signal is unknown, never idle;
- through the sweep, with early reclaim on: a lease's people are asked, and a lease is
  reclaimed early, only when every one of its servers was quiet, and reported, for the whole
  `idle_after` before; a busy lease is never reclaimed early.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import event, given, settings
from hypothesis import strategies as st
from sqlmodel import SQLModel, select

from commands.idleness import FRESH, Use, judge
from commands.lab import Lab
from commands.notices import Kind
from commands.policy import Policy
from commands.states import State
from commands.sweep import sweep
from fakes.notifier import RecordingNotifier
from metal.simulated import SimulatedProvider
from storage.db import Database
from storage.models import ActivitySample, AuditEvent, Server
from tests.commands.helpers import active, lease
from tests.conftest import ROLES, Clock
from tests.properties import on_a_database

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SLOT = timedelta(minutes=5)
POLICY = Policy(
    idle_after=timedelta(hours=1),
    idle_escalate=timedelta(minutes=30),
    idle_reclaim=timedelta(minutes=30),
)
SIGNALS = {
    "quiet": {"cpu_busy": 0.01, "net_bytes": 1_000, "sessions": 0},
    "busy": {"cpu_busy": 0.5, "net_bytes": 1_000, "sessions": 0},
    "session": {"cpu_busy": None, "net_bytes": None, "sessions": 1},
    "traffic": {"cpu_busy": None, "net_bytes": 2_000_000, "sessions": None},  # 24 MB/h
    "silent": {"cpu_busy": None, "net_bytes": None, "sessions": None},
}
KINDS = [*SIGNALS, "missing"]
QUIET_KIND = "quiet"
BUSY_KINDS = ("busy", "session", "traffic")
SAY_NOTHING = ("silent", "missing")

# Runs of slots, the same kind each: one server's reports; mostly quiet, so leases go idle.
runs = st.lists(
    st.tuples(st.sampled_from([QUIET_KIND] * 5 + KINDS), st.integers(1, 30)),
    min_size=1,
    max_size=6,
)


def slots(server_runs: list[tuple[str, int]]) -> list[str]:
    return [kind for kind, length in server_runs for _ in range(length)]


def samples(kinds: list[str], server_id: int = 1, lease_id: int = 1, start: datetime = START):
    """A report at the end of each slot that has one."""
    return [
        ActivitySample(
            server_id=server_id,
            lease_id=lease_id,
            at=start + SLOT * (i + 1),
            source="server",
            interval_s=300,
            **SIGNALS[kind],
        )
        for i, kind in enumerate(kinds)
        if kind != "missing"
    ]


def quiet_throughout(kinds: list[str], until: int, policy: Policy) -> bool:
    """Every slot of the `idle_after` before slot `until` was reported, with a signal, and
    quiet."""
    need = int(policy.idle_after / SLOT)
    return until >= need and all(kind == QUIET_KIND for kind in kinds[until - need : until])


def may_be_idle(kinds: list[str], now: int, policy: Policy) -> bool:
    """The plain reading at slot `now`: the reports quiet throughout the `idle_after` before
    their last signal, that signal at most `FRESH` old, and nothing said since."""
    fresh = int(FRESH / SLOT)
    return any(
        quiet_throughout(kinds, last, policy)
        and all(kind in SAY_NOTHING for kind in kinds[last:now])
        for last in range(max(0, now - fresh), min(now, len(kinds)) + 1)
    )


def busy_lately(kinds: list[str], now: int, policy: Policy) -> bool:
    need = int(policy.idle_after / SLOT)
    return any(kind in BUSY_KINDS for kind in kinds[max(0, now - need) : now])


@settings(max_examples=300, deadline=None)
@given(server_runs=runs, extra=st.integers(0, 6))
def test_a_server_judged_idle_was_quiet_and_reported_throughout(server_runs, extra):
    kinds = slots(server_runs)
    now = len(kinds) + extra
    verdict = judge(samples(kinds), POLICY, START + SLOT * now)
    if verdict.use == Use.IDLE:
        assert may_be_idle(kinds, now, POLICY)
        assert not busy_lately(kinds, now, POLICY)
    if all(kind in SAY_NOTHING for kind in kinds):
        assert verdict.use == Use.UNKNOWN


def fresh_lab(db: Database) -> tuple[Lab, Clock]:
    with db.write() as session:
        for table in reversed(SQLModel.metadata.sorted_tables):
            session.execute(table.delete())
    clock = Clock(START)
    provider = SimulatedProvider(db, clock=clock, provision_seconds=120)
    return Lab(db, provider, RecordingNotifier(), POLICY, ROLES), clock


@on_a_database(20)
@given(first=runs, second=runs, every=st.integers(1, 4))
def test_a_busy_lease_is_never_reclaimed_early(db, first, second, every):
    lab, clock = fresh_lab(db)
    lease_id = active(lab, clock, count=2)
    begun = clock.now
    with db.read() as session:
        ids = session.exec(select(Server.id).where(Server.lease_id == lease_id)).all()
    reports = {ids[0]: slots(first), ids[1]: slots(second)}
    length = max(len(kinds) for kinds in reports.values())
    for slot in range(1, length + 1):
        with db.write() as session:
            for server_id, kinds in reports.items():
                if slot <= len(kinds):
                    session.add_all(
                        samples(
                            kinds[slot - 1 : slot], server_id, lease_id, begun + SLOT * (slot - 1)
                        )
                    )
        if slot % every:
            continue
        now = begun + SLOT * slot
        told = len(lab.notifier.texts(Kind.IDLE_ASKED))
        sweep(lab, now)
        idle = all(may_be_idle(kinds, slot, POLICY) for kinds in reports.values())
        busy = any(busy_lately(kinds, slot, POLICY) for kinds in reports.values())
        if len(lab.notifier.texts(Kind.IDLE_ASKED)) > told:
            assert idle and not busy, f"asked at slot {slot}"
        if lease(db, lease_id).state != State.ACTIVE:
            with db.read() as session:
                reclaimed = session.exec(
                    select(AuditEvent).where(AuditEvent.action == "idle_reclaim")
                ).all()
            assert len(reclaimed) == 1 and idle and not busy, f"reclaimed at slot {slot}"
            event("reclaimed early")
            return
    event("asked" if lab.notifier.texts(Kind.IDLE_ASKED) else "never asked")
