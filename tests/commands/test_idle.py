"""Idle leases through the sweep, on a frozen clock: the owner asked, *Still using it*, the
reviewers told once, early reclaim with its refund exact to the cent, and every refusal of a
click that is not the owner's to make or no longer current."""

from __future__ import annotations

from datetime import datetime, timedelta

from freezegun import freeze_time
from sqlmodel import select

from commands.billing import month_key
from commands.credit import available_cents, lease_unspent
from commands.idle import keep, release_idle
from commands.lab import Code, Lab
from commands.notices import REVIEW, Kind
from commands.states import State
from commands.sweep import sweep
from storage.models import ActivitySample, IdleSpan, IdleWatch
from tests.commands.helpers import active, audits, lease, live_devices, servers
from tests.commands.samples import BUSY, QUIET, report
from tests.conftest import ADMIN, OTHER, OWNER, REVIEWER, Clock, with_policy


def swept(lab: Lab, at: datetime) -> None:
    with freeze_time(at):
        sweep(lab, at)


def asked(lab: Lab) -> list:
    return [m for m in lab.notifier.messages if m.kind == Kind.IDLE_ASKED]


def watch(lab: Lab, lease_id: int) -> IdleWatch:
    with lab.db.read() as session:
        return session.get(IdleWatch, lease_id)


def idle_lease(lab: Lab, clock: Clock) -> tuple[int, datetime]:
    """An active lease whose servers reported nothing but quiet for 6 hours, swept then."""
    lease_id = active(lab, clock)
    start = clock.now
    clock.advance(hours=6, minutes=5)
    report(lab.db, lease_id, start, clock.now, **QUIET)
    swept(lab, clock.now)
    return lease_id, start


def test_an_idle_lease_s_people_are_asked_once_with_what_it_cost(lab, clock):
    lease_id, start = idle_lease(lab, clock)
    [message] = asked(lab)
    assert message.audience == f"user:{OWNER}"
    assert message.text.startswith(
        f"Lease #{lease_id} (3 x c1.small.x86 in ams1 for 2d) looks idle"
    )
    # 3 servers x 7 started hours (up at 09:02:30, now 15:07:30) x $0.40
    assert "It has cost $8.40 so far." in message.text
    assert f"<!date^{int(start.timestamp())}^" in message.text
    assert message.data["round"] == 1
    swept(lab, clock.advance(minutes=20))
    assert len(asked(lab)) == 1


def test_quiet_but_not_for_long_enough_is_not_idle(lab, clock):
    lease_id = active(lab, clock)
    start = clock.now
    report(lab.db, lease_id, start, clock.advance(hours=5), **QUIET)
    swept(lab, clock.now)
    assert asked(lab) == []
    assert watch(lab, lease_id).check_at == start + timedelta(hours=6)  # its first chance


def test_a_gap_in_the_samples_starts_the_count_again(lab, clock):
    lease_id = active(lab, clock)
    start = clock.now
    report(lab.db, lease_id, start, start + timedelta(hours=3), **QUIET)
    report(
        lab.db, lease_id, start + timedelta(hours=3, minutes=30), clock.advance(hours=7), **QUIET
    )
    swept(lab, clock.now)
    assert asked(lab) == []
    assert watch(lab, lease_id).check_at == start + timedelta(hours=9, minutes=30)


def test_no_signal_at_all_is_unknown_never_idle(lab, clock):
    lease_id = active(lab, clock)
    start = clock.now
    nothing = {"cpu_busy": None, "net_bytes": None, "sessions": None}
    report(lab.db, lease_id, start, clock.advance(hours=12), **nothing)
    swept(lab, clock.now)
    assert asked(lab) == []
    assert watch(lab, lease_id).check_at == clock.now + timedelta(minutes=15)


def test_one_busy_server_keeps_the_lease_in_use(lab, clock):
    lease_id = active(lab, clock)
    start = clock.now
    report(lab.db, lease_id, start, clock.advance(hours=7), **QUIET)
    with lab.db.write() as session:
        server_id = servers(lab.db, lease_id)[0].id
        session.add(
            ActivitySample(
                server_id=server_id,
                lease_id=lease_id,
                at=clock.now,
                source="packet",
                interval_s=3600,
                net_bytes=50_000_000,
            )
        )
    swept(lab, clock.now)
    assert asked(lab) == []
    with lab.db.read() as session:
        assert len(session.exec(select(IdleSpan)).all()) == 2  # the other two were idle


def test_still_using_it_keeps_it_quiet_for_the_snooze(lab, clock):
    lease_id, _ = idle_lease(lab, clock)
    with freeze_time(clock.advance(minutes=10)):
        outcome = keep(lab, OWNER, lease_id, 1, clock.now)
    assert outcome.ok and "will not ask about it again before" in outcome.message
    until = clock.now + lab.policy.idle_snooze
    report(lab.db, lease_id, clock.now - timedelta(minutes=15), until, **QUIET)
    swept(lab, until - timedelta(minutes=1))
    assert len(asked(lab)) == 1
    swept(lab, until)
    assert [m.data["round"] for m in asked(lab)] == [1, 2]
    assert [a.actor for a in audits(lab.db, lease_id, "idle_keep")] == [OWNER]


def test_unanswered_the_reviewers_are_told_once_with_the_buttons(lab, clock):
    lease_id, _ = idle_lease(lab, clock)
    asked_at = clock.now
    report(lab.db, lease_id, asked_at, asked_at + timedelta(hours=13), **QUIET)
    swept(lab, asked_at + timedelta(hours=11, minutes=59))
    assert lab.notifier.texts(Kind.IDLE_ESCALATED) == []
    swept(lab, asked_at + timedelta(hours=12))
    [told] = [m for m in lab.notifier.messages if m.kind == Kind.IDLE_ESCALATED]
    assert told.audience == REVIEW and told.data["round"] == 1
    assert f"<@{OWNER}>" in told.text and "have not answered" in told.text
    swept(lab, asked_at + timedelta(hours=13))
    assert len(lab.notifier.texts(Kind.IDLE_ESCALATED)) == 1
    outcome = keep(lab, REVIEWER, lease_id, 1, asked_at + timedelta(hours=13))
    assert outcome.ok


def test_early_reclaim_releases_the_lease_and_gives_back_the_rest_exactly(lab, clock):
    lab = with_policy(lab, idle_reclaim=timedelta(hours=24))
    lease_id, _ = idle_lease(lab, clock)
    asked_at = clock.now
    reclaim_at = asked_at + timedelta(hours=24)
    report(lab.db, lease_id, asked_at, reclaim_at, **QUIET)
    swept(lab, reclaim_at - timedelta(minutes=1))
    assert lease(lab.db, lease_id).state == State.ACTIVE
    month = [month_key(reclaim_at)]
    with lab.db.read() as session:
        refund = lease_unspent(session, lease_id, reclaim_at)
        before = available_cents(session, month, lab.policy, reclaim_at)
    swept(lab, reclaim_at)
    assert lease(lab.db, lease_id).state in (State.RELEASING, State.RECLAIMED)
    with lab.db.read() as session:
        after = available_cents(session, month, lab.policy, reclaim_at)
    # 48h + 1h grace held for 3 servers at $0.40, less 31 started hours billed: $21.60
    assert refund == 3 * 40 * (49 - 31) == 2160
    assert after[month[0]] - before[month[0]] == refund
    [dm] = lab.notifier.texts(Kind.IDLE_RECLAIMED)
    assert "is being reclaimed early: idle since" in dm and "$21.60 of its credit" in dm
    [event] = audits(lab.db, lease_id, "idle_reclaim")
    assert '"refund_cents": 2160' in event.details and "nobody answered" in event.details
    swept(lab, reclaim_at + timedelta(minutes=5))
    assert live_devices(lab, lease_id) == []


def test_a_lease_used_just_before_the_reclaim_is_not_reclaimed(lab, clock):
    lab = with_policy(lab, idle_reclaim=timedelta(hours=24))
    lease_id, _ = idle_lease(lab, clock)
    asked_at = clock.now
    reclaim_at = asked_at + timedelta(hours=24)
    report(lab.db, lease_id, asked_at, reclaim_at - timedelta(minutes=10), **QUIET)
    report(lab.db, lease_id, reclaim_at - timedelta(minutes=10), reclaim_at, **BUSY)
    swept(lab, reclaim_at)
    assert lease(lab.db, lease_id).state == State.ACTIVE
    assert lab.notifier.texts(Kind.IDLE_RECLAIMED) == []
    assert watch(lab, lease_id).asked_at is None  # the question is over


def test_release_now_releases_once_and_only_for_its_people(lab, clock):
    lease_id, _ = idle_lease(lab, clock)
    now = clock.advance(minutes=1)
    stranger = release_idle(lab, OTHER, lease_id, 1, now)
    assert (stranger.ok, stranger.code) == (False, Code.NOT_ALLOWED)
    forged = release_idle(lab, OWNER, lease_id, 7, now)
    assert (forged.ok, forged.code) == (False, Code.CHANGED_MEANWHILE)
    assert lease(lab.db, lease_id).state == State.ACTIVE
    done = release_idle(lab, OWNER, lease_id, 1, now)
    assert done.ok, done.message
    again = release_idle(lab, ADMIN, lease_id, 1, now)
    assert (again.ok, again.code) == (False, Code.WRONG_STATE)
    refused = [a.details for a in audits(lab.db, lease_id, "release") if a.outcome == "refused"]
    assert len(refused) == 3
    assert [a.actor for a in audits(lab.db, lease_id, "idle_release")] == [OWNER]


def test_a_click_on_an_answered_question_is_stale(lab, clock):
    lease_id, _ = idle_lease(lab, clock)
    assert keep(lab, OWNER, lease_id, 1, clock.now).ok
    late = release_idle(lab, OWNER, lease_id, 1, clock.now)
    assert (late.ok, late.code) == (False, Code.ALREADY_DECIDED)
    assert lease(lab.db, lease_id).state == State.ACTIVE
    twice = keep(lab, OWNER, lease_id, 1, clock.now)
    assert (twice.ok, twice.code) == (False, Code.ALREADY_DECIDED)
