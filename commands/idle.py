"""Lease life: idle leases noticed, their people asked, the reviewers told, and (where the lab
wants it) the lease reclaimed early with its unspent hold given back.

What idle means is commands/idleness.py. Each lease with samples has an `IdleWatch` row whose
`check_at` says when the sweep next looks; the sweep claims those due a lease at a time, as it
claims due leases. A watch is armed by the samples themselves: each pass reads the samples
written since the last one it read (a watermark in the watch of lease 0) and makes their leases
due, so whoever writes samples need not know this module, and a lease nobody ever reported on
costs nothing. A look either finds the lease in use (the next look is when it could first be idle),
unknown (a server without fresh samples: looked at again soon), or finds it idle: then its
owner and co-owners are asked once a round (*Still using it* / *Release now*), the reviewers are
told once when nobody answered within `idle_escalate`, and with `idle_reclaim` set a lease idle
that long after the question is released early. The release re-checks idleness in its own
transaction, the one that moves the lease (`reclaim.release`'s proviso), so a server used since
the last look is never reclaimed early. A button names its question's round: a click on an
older question, or one already answered, is refused and audited.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, func, select

from commands.billing import format_cents
from commands.coowners import audiences, co_owner_ids
from commands.credit import lease_spent, lease_unspent
from commands.durations import format_duration
from commands.facts import shape, when
from commands.idleness import HOUR_S, LeaseVerdict, Use, Verdict, judge, judge_lease
from commands.lab import (
    Code,
    Lab,
    Outcome,
    Refusal,
    audit,
    not_found,
    owner_or_admin,
    refuse,
    wrong_state,
)
from commands.notices import REVIEW, Kind, enqueue
from commands.policy import Policy
from commands.reclaim import release
from commands.states import ServerState, State
from storage.claims import claim, give_back
from storage.locks import insert_all_once, insert_once, locked
from storage.models import ActivitySample, IdleSpan, IdleWatch, Lease, Server

log = logging.getLogger(__name__)

RECHECK = timedelta(minutes=15)  # the soonest a lease is looked at again (or half idle_after)
WATERMARK = 0  # the watch row that holds the last sample id the sweep read
CHUNK = 50
MARGIN = timedelta(hours=1)  # samples read beyond `idle_after`: lag, drift, long intervals
HOSTS_NAMED = 10
LOOKBACK = timedelta(days=2)  # the furthest back a look reads, however late it comes


def idle_pass(lab: Lab, now: datetime) -> list[tuple[int, str | Exception]]:
    """The sweep's share: arm the watches of leases with new samples, then look at each due
    one, claimed a chunk at a time (so replicas share them). Returns what each look did."""
    _arm(lab, now)
    done: list[tuple[int, str | Exception]] = []
    seen: list[int] = [WATERMARK]
    while True:
        with lab.db.write() as session:
            ids = claim(
                session,
                IdleWatch,
                col(IdleWatch.check_at) <= now,
                col(IdleWatch.lease_id).not_in(seen),
                owner=lab.replica,
                now=now,
                hold=lab.policy.claim_for,
                order_by=[col(IdleWatch.check_at)],
                limit=CHUNK,
            )
        if not ids:
            return done
        seen += ids
        try:
            for lease_id in ids:
                try:
                    done.append((lease_id, look(lab, lease_id, now)))
                except Exception as error:
                    log.exception("idle check of lease %s", lease_id)
                    done.append((lease_id, error))
        finally:
            with lab.db.write() as session:
                give_back(session, IdleWatch, ids, lab.replica)


def _arm(lab: Lab, now: datetime) -> None:
    """Make due, now, the watch of every lease a sample was written for since the last pass.
    A sample whose id commits after a higher one was read is missed here, and costs nothing:
    its server reports again within minutes."""
    with lab.db.write() as session:
        insert_once(session, IdleWatch, lease_id=WATERMARK, round=0, sample_id=0)
        mark = locked(session, IdleWatch, WATERMARK)
        rows = session.exec(
            select(ActivitySample.lease_id, func.max(ActivitySample.id))
            .where(col(ActivitySample.id) > mark.sample_id)
            .group_by(ActivitySample.lease_id)
        ).all()
        if not rows:
            return
        ids = [lease_id for lease_id, _ in rows]
        insert_all_once(
            session,
            IdleWatch,
            [{"lease_id": i, "check_at": now, "round": 0, "sample_id": 0} for i in ids],
        )
        session.exec(
            update(IdleWatch)
            .where(col(IdleWatch.lease_id).in_(ids), col(IdleWatch.check_at).is_(None))
            .values(check_at=now)
        )
        mark.sample_id = max(last for _, last in rows)
        session.add(mark)


def look(lab: Lab, lease_id: int, now: datetime) -> str:
    """One look at one watched lease: judge it, record its idle servers, ask, tell, or
    reclaim early."""
    with lab.db.write() as session:
        lease = locked(session, Lease, lease_id)
        watch = locked(session, IdleWatch, lease_id)
        if watch is None:
            return "not watched"
        if lease is None or lease.state != State.ACTIVE:
            watch.check_at = None
            session.add(watch)
            return "not running"
        verdicts = server_verdicts(session, lab, lease_id, now)
        starts = _record_spans(session, lease, verdicts)
        seen = judge_lease(list(verdicts.values()))
        if seen.idle:  # quiet since before the samples read here, as the stretches recorded
            seen = replace(seen, since=max(starts.values()))
        what = _step(session, lab, lease, watch, seen, verdicts, now)
        session.add(watch)
        asked_round = watch.round
        reclaim = _reclaim_due(lab, watch, seen, now)
    if not reclaim:
        return what
    outcome = release(
        lab,
        "system",
        lease_id,
        now,
        proviso=lambda session, lease: _still_idle(session, lab, lease, asked_round, now),
    )
    return "idle; reclaimed early" if outcome.ok else f"idle; not reclaimed: {outcome.message}"


def server_verdicts(session: Session, lab: Lab, lease_id: int, now: datetime) -> dict[str, Verdict]:
    """Each running server of the lease (by hostname) judged from its recent samples."""
    servers = session.exec(
        select(Server.id, Server.hostname).where(
            Server.lease_id == lease_id, Server.state == ServerState.ACTIVE
        )
    ).all()
    since = now - lab.policy.idle_after - MARGIN
    last_idle = session.exec(
        select(func.max(IdleSpan.end)).where(IdleSpan.lease_id == lease_id)
    ).one()
    if last_idle is not None:  # read back to it, so a stretch continues across a late look
        since = max(min(since, _aware(last_idle) - MARGIN), now - LOOKBACK)
    samples: dict[int, list[ActivitySample]] = {server_id: [] for server_id, _ in servers}
    for sample in session.exec(
        select(ActivitySample).where(
            col(ActivitySample.server_id).in_(list(samples)),
            col(ActivitySample.at) >= since,
            col(ActivitySample.at) <= now,
        )
    ).all():
        samples[sample.server_id].append(sample)
    return {host: judge(samples[server_id], lab.policy, now) for server_id, host in servers}


def _aware(at: datetime) -> datetime:
    """SQLite hands back naive values from aggregate functions; they are UTC."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _record_spans(
    session: Session, lease: Lease, verdicts: dict[str, Verdict]
) -> dict[str, datetime]:
    """Each idle server's current idle stretch, extended to what its samples last said (the
    stretch starts where its quiet did; a later quiet is a new stretch). Returns when each
    idle server's stretch began: it may be before the samples a look reads, since a lease is
    looked at every `_recheck` while it is idle."""
    idle = {h: v for h, v in verdicts.items() if v.use == Use.IDLE}
    if not idle:
        return {}
    ids = dict(
        session.exec(
            select(Server.hostname, Server.id).where(
                Server.lease_id == lease.id, col(Server.hostname).in_(list(idle))
            )
        ).all()
    )
    starts = {}
    for host, verdict in idle.items():
        open_span = session.exec(
            select(IdleSpan)
            .where(IdleSpan.server_id == ids[host], col(IdleSpan.end) >= verdict.quiet_since)
            .order_by(col(IdleSpan.start))
        ).first()
        if open_span is None:
            session.add(
                IdleSpan(
                    server_id=ids[host],
                    start=verdict.quiet_since,
                    end=verdict.seen_until,
                    lease_id=lease.id,
                    project=lease.project,
                )
            )
            starts[host] = verdict.quiet_since
        else:
            open_span.end = max(open_span.end, verdict.seen_until)
            session.add(open_span)
            starts[host] = open_span.start
    return starts


def _step(
    session: Session,
    lab: Lab,
    lease: Lease,
    watch: IdleWatch,
    seen: LeaseVerdict,
    verdicts: dict[str, Verdict],
    now: datetime,
) -> str:
    policy = lab.policy
    if not seen.idle:
        if watch.asked_at is not None:
            audit(session, now, "system", "idle_over", lease.id, round=watch.round)
            _end_round(watch)
        # Unknown (a server says nothing fresh) is looked at again soon, as late samples may
        # fill the gap; in use, when it could first be idle.
        soonest = now + _recheck(policy)
        watch.check_at = soonest if seen.idle_at is None else max(seen.idle_at, soonest)
        return "in use" if seen.idle_at is not None else "unknown: no fresh samples"
    if watch.snoozed_until is not None and now < watch.snoozed_until:
        watch.check_at = min(watch.snoozed_until, now + _recheck(policy))
        return "idle; its people still use it"
    what = "idle; asked"
    if watch.asked_at is None:
        _ask(session, lease, watch, seen.since, sorted(verdicts), now)
        what = "idle; its people asked"
    elif watch.escalated_at is None and now >= watch.asked_at + policy.idle_escalate:
        _escalate(session, lease, watch, now)
        what = "idle; nobody answered, reviewers told"
    deadlines = [watch.asked_at + policy.idle_escalate] if watch.escalated_at is None else []
    if policy.idle_reclaim is not None:
        deadlines.append(watch.asked_at + policy.idle_reclaim)
    watch.check_at = min([at for at in deadlines if at > now] + [now + _recheck(policy)])
    return what


def _recheck(policy: Policy) -> timedelta:
    return min(RECHECK, policy.idle_after / 2)


def _end_round(watch: IdleWatch) -> None:
    """The question is over (answered, or the lease is used again): its buttons go stale."""
    watch.asked_at = watch.escalated_at = watch.idle_since = None


def _facts(session: Session, lease: Lease, hosts: Sequence[str], now: datetime) -> tuple[str, str]:
    """Its servers, named (the first few), and what the lease has cost so far."""
    named = ", ".join(hosts[:HOSTS_NAMED])
    more = f" and {len(hosts) - HOSTS_NAMED} more" if len(hosts) > HOSTS_NAMED else ""
    return f"{named}{more}", format_cents(lease_spent(session, lease.id, now))


def _ask(
    session: Session,
    lease: Lease,
    watch: IdleWatch,
    since: datetime,
    hosts: list[str],
    now: datetime,
) -> None:
    watch.round += 1
    watch.asked_at, watch.idle_since, watch.escalated_at = now, since, None
    named, cost = _facts(session, lease, hosts, now)
    audit(session, now, "system", "idle_asked", lease.id, round=watch.round, since=since)
    for audience in audiences(session, lease):
        enqueue(
            session,
            Kind.IDLE_ASKED,
            audience,
            f"Lease #{lease.id} ({shape(lease)}) looks idle: nothing has used its servers "
            f"({named}) since {when(since)}. It has cost {cost} so far. Still using it? If "
            "not, release it now and its unspent credit goes back to the lab.",
            now,
            lease.id,
            round=watch.round,
        )


def _escalate(session: Session, lease: Lease, watch: IdleWatch, now: datetime) -> None:
    watch.escalated_at = now
    people = [lease.owner, *co_owner_ids(session, lease.id)]
    hosts = sorted(
        session.exec(
            select(Server.hostname).where(
                Server.lease_id == lease.id, Server.state == ServerState.ACTIVE
            )
        ).all()
    )
    named, cost = _facts(session, lease, hosts, now)
    audit(session, now, "system", "idle_escalated", lease.id, round=watch.round)
    enqueue(
        session,
        Kind.IDLE_ESCALATED,
        REVIEW,
        f"Lease #{lease.id} ({shape(lease)} for {lease.project}) looks idle: nothing has used "
        f"its servers ({named}) since {when(watch.idle_since)}. It has cost {cost} so far. "
        f"Its people ({', '.join(f'<@{p}>' for p in people)}) were asked at "
        f"{when(watch.asked_at)} and have not answered. A reviewer may release it now, or "
        "keep it.",
        now,
        lease.id,
        round=watch.round,
    )


def _reclaim_due(lab: Lab, watch: IdleWatch, seen: LeaseVerdict, now: datetime) -> bool:
    """Early reclaim is on, the question is `idle_reclaim` old and still open, and the lease
    is idle now. An open question means every look since it found the lease idle (a look that
    does not, ends the round), and looks come at least every `_recheck`, shorter than
    `idle_after`: so the lease has been idle throughout."""
    after = lab.policy.idle_reclaim
    return (
        after is not None
        and watch.asked_at is not None
        and now >= watch.asked_at + after
        and seen.idle
    )


def _still_idle(
    session: Session, lab: Lab, lease: Lease, asked_round: int, now: datetime
) -> Refusal | None:
    """In the transaction that releases the lease: still idle since before the question (and
    the question still open), judged again from the samples as they are now; then the reason
    and the refund go into the audit and to its people."""
    watch = locked(session, IdleWatch, lease.id)
    seen = judge_lease(list(server_verdicts(session, lab, lease.id, now).values()))
    if watch is None or watch.round != asked_round or not _reclaim_due(lab, watch, seen, now):
        return Refusal(
            Code.CHANGED_MEANWHILE, f"Lease #{lease.id} is in use again; it stays as it is."
        )
    refund = lease_unspent(session, lease.id, now)
    reason = (
        f"idle since {when(watch.idle_since)} and nobody answered the question of "
        f"{when(watch.asked_at)} within {format_duration(lab.policy.idle_reclaim)}"
    )
    audit(
        session,
        now,
        "system",
        "idle_reclaim",
        lease.id,
        reason=reason,
        idle_since=watch.idle_since,
        asked_at=watch.asked_at,
        refund_cents=refund,
    )
    for audience in audiences(session, lease):
        enqueue(
            session,
            Kind.IDLE_RECLAIMED,
            audience,
            f"Lease #{lease.id} ({shape(lease)}) is being reclaimed early: {reason}. "
            f"{format_cents(refund)} of its credit goes back to the lab.",
            now,
            lease.id,
            refund_cents=refund,
        )
    _end_round(watch)
    watch.check_at = None
    session.add(watch)
    return None


def _cannot_answer(
    session: Session,
    lab: Lab,
    lease: Lease | None,
    watch: IdleWatch | None,
    actor: str,
    lease_id: int,
    asked_round: int,
) -> Refusal | None:
    """Who may answer a question about an idle lease (its owner, co-owners, reviewers and
    admins), and only the open question of its current round."""
    if lease is None:
        return not_found(lease_id)
    if lease.state != State.ACTIVE:
        return wrong_state(lease, "kept or released", "an active lease")
    problem = owner_or_admin(
        lab, lease, actor, "answer for", co_owner_ids(session, lease_id), reviewers=True
    )
    if problem is not None:
        return problem
    if watch is None or watch.round != asked_round:
        return Refusal(
            Code.CHANGED_MEANWHILE,
            f"That question about lease #{lease_id} is not its latest; `/lab show {lease_id}` "
            "shows where it stands.",
        )
    if watch.asked_at is None:
        return Refusal(
            Code.ALREADY_DECIDED,
            f"That question about lease #{lease_id} is already answered (or the lease was used "
            "again); nothing changed.",
        )
    return None


def keep(lab: Lab, actor: str, lease_id: int, asked_round: int, now: datetime) -> Outcome:
    """*Still using it*: no question about the lease for `idle_snooze`."""
    with lab.db.write() as session:
        lease = locked(session, Lease, lease_id)
        watch = locked(session, IdleWatch, lease_id)
        problem = _cannot_answer(session, lab, lease, watch, actor, lease_id, asked_round)
        if problem is None:
            until = now + lab.policy.idle_snooze
            watch.snoozed_until, watch.check_at = until, now + _recheck(lab.policy)
            _end_round(watch)
            session.add(watch)
            audit(session, now, actor, "idle_keep", lease_id, round=asked_round, until=until)
    if problem is not None:
        return refuse(lab, now, actor, "idle_keep", problem, lease_id)
    return Outcome(
        True,
        f"Noted: lease #{lease_id} is in use. labbot will not ask about it again before "
        f"{when(until)}.",
        lease_id,
    )


def release_idle(lab: Lab, actor: str, lease_id: int, asked_round: int, now: datetime) -> Outcome:
    """*Release now* on the question: the lease released through the usual path, once, by
    its owner, a co-owner, a reviewer or an admin, while the question is open."""

    def proviso(session: Session, lease: Lease) -> Refusal | None:
        watch = locked(session, IdleWatch, lease_id)
        problem = _cannot_answer(session, lab, lease, watch, actor, lease_id, asked_round)
        if problem is None:
            _end_round(watch)
            watch.check_at = None
            session.add(watch)
            audit(session, now, actor, "idle_release", lease_id, round=asked_round)
        return problem

    return release(lab, actor, lease_id, now, reviewers=True, proviso=proviso)


def idle_marks(lab: Lab, lease_ids: list[int]) -> dict[int, datetime]:
    """The leases among these whose people are being asked about them now, and since when
    each has been idle (App Home marks them)."""
    if not lease_ids:
        return {}
    with lab.db.read() as session:
        return dict(
            session.exec(
                select(IdleWatch.lease_id, IdleWatch.idle_since).where(
                    col(IdleWatch.lease_id).in_(lease_ids), col(IdleWatch.asked_at).is_not(None)
                )
            ).all()
        )


def last_samples(lab: Lab, server_ids: list[int]) -> dict[int, ActivitySample]:
    """Each server's latest sample, of any source (`/lab show`), by its index."""
    if not server_ids:
        return {}
    latest = (
        select(ActivitySample.server_id, func.max(ActivitySample.at).label("at"))
        .where(col(ActivitySample.server_id).in_(server_ids))
        .group_by(ActivitySample.server_id)
        .subquery()
    )
    with lab.db.read() as session:
        rows = session.exec(
            select(ActivitySample).join(
                latest,
                (col(ActivitySample.server_id) == latest.c.server_id)
                & (col(ActivitySample.at) == latest.c.at),
            )
        ).all()
    return {sample.server_id: sample for sample in rows}


def activity_words(sample: ActivitySample | None) -> str:
    """`last activity Nov 2, 2026 15:05 UTC (server): CPU 3%, 1.2 MB/h, no sessions`: what a
    server's latest sample said, each signal its source does not give left out."""
    if sample is None:
        return "no activity reported"
    said = []
    if sample.cpu_busy is not None:
        said.append(f"CPU {sample.cpu_busy:.0%}")
    if sample.net_bytes is not None:
        said.append(f"{sample.net_bytes * HOUR_S / max(sample.interval_s, 1) / 1e6:.1f} MB/h")
    if sample.load_1m is not None:
        said.append(f"load {sample.load_1m:.2f}")
    if sample.sessions is not None:
        said.append(f"{sample.sessions} session(s)" if sample.sessions else "no sessions")
    return f"last activity {when(sample.at)} ({sample.source}): {', '.join(said) or 'no signal'}"


def idle_hours(session: Session, since: datetime, until: datetime) -> dict[str, float]:
    """The server-hours each project's servers were idle between `since` and `until`, as the
    sweep recorded them (`IdleSpan`): the /metrics figure and the public report's."""
    hours: dict[str, float] = defaultdict(float)
    for project, start, end in session.exec(
        select(IdleSpan.project, IdleSpan.start, IdleSpan.end).where(
            col(IdleSpan.end) > since, col(IdleSpan.start) < until
        )
    ).all():
        seconds = (min(end, until) - max(start, since)).total_seconds()
        if seconds > 0:
            hours[project] += seconds / HOUR_S
    return dict(hours)
