"""Books: the capacity calendar: how many servers of a plan each metro holds at every moment,
and the one check that no booking or extension takes it past the operator's limits.

The operator may say how many servers of a plan the lab may hold in a metro at once (`[capacity]`,
`Policy.capacity`), and each donor how many its own account may (`Donor.capacity`); no entry
means no limit. A lease holds its servers over its window, `[start, end)`: from its start (its
servers' start once they are up, else the lead time before the start it booked, when its
servers are made (`Policy.prepare_from`), else now) to that start plus its
duration and extensions (its `ends_at` once set). It holds from its approval until it ends;
a pending request holds nothing, because it is not a promise: a request that may be denied
would otherwise keep others out, and reviewers decide in the queue's order, not the filing
order. Approval checks again, under the lock of the plan's metros, so approvals and extensions
are decided one after the other and the limits hold at every moment.

A lease approved to start "as soon as its servers are up" does not know its start yet: until
they are, it is counted from now to the latest it can end (approval plus the provisioning
timeout plus its length), so a booking approved meanwhile never collides with it later; a
request to start on approval is checked for the same window, from now.

The calendar's index is `CapacityDay`: a row per lease, metro and UTC day its window touches
(or `day` "" while its start is unknown). A check reads the rows of its plan, metro and days by
the key's prefix and takes each lease's window from the lease itself; from those it builds the
step function of servers held over its window. Its cost follows what overlaps it, never the
size of the calendar (`make bench`, benchmarks/capacity.py). The rows are written when a lease
is approved, when its servers come up and when it is extended (`place`), and removed when it
ends (`forget`); a check also skips any lease no longer live, so a lease ended elsewhere never
counts.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from sqlmodel import Session, col, delete, select

from commands.donors import capacity_of
from commands.durations import format_duration
from commands.facts import when
from commands.lab import Code, Lab, Outcome, Refusal
from commands.policy import Policy
from commands.states import LIVE, State
from metal.provider import Catalog
from storage.locks import insert_all_once, serialize
from storage.models import CapacityDay, Lease

DAY = timedelta(days=1)
UNKNOWN_DAY = ""  # the row of a lease whose start is not known yet: read by every check
SEARCH = timedelta(days=60)  # how far ahead a refusal looks for the next window that fits
CALENDAR_DAYS = 14


@dataclass(frozen=True)
class Limit:
    """How many servers may be held at once: the lab's (`donor` None) or a donor's own."""

    servers: int
    donor: str | None = None

    def whose(self) -> str:
        return "the lab's" if self.donor is None else f"{self.donor}'s"


@dataclass(frozen=True)
class Held:
    """A live lease's servers of the plan in one metro, over its window."""

    lease_id: int
    donor: str
    count: int
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Misfit:
    """Why a window does not fit: the first moment a limit is passed, and the next window of
    the same length that fits (None: none within `SEARCH`)."""

    metro: str
    limit: Limit
    at: datetime
    held: int  # servers the limit already counts at that moment
    next_start: datetime | None


def limits(policy: Policy, plan: str, metro: str, donor: str) -> list[Limit]:
    """The limits a lease of `plan` in `metro` paid by `donor` must fit."""
    found = [Limit(n) for n in [capacity_of(policy.capacity, plan, metro)] if n is not None]
    rules = policy.donor(donor)
    own = capacity_of(rules.capacity, plan, metro) if rules else None
    return found + ([Limit(own, donor)] if own is not None else [])


def window(lease: Lease, policy: Policy, now: datetime) -> tuple[datetime, datetime]:
    """When the lease holds its servers (see the module's docstring)."""
    length = timedelta(seconds=lease.duration_s + lease.extended_s)
    if lease.starts_at is not None:
        return lease.starts_at, lease.ends_at or lease.starts_at + length
    if lease.book_start is not None:  # its servers are made the lead time before its start
        return policy.prepare_from(lease.book_start), lease.book_start + length
    approved = lease.decided_at or now  # a request would start on approval
    return now, max(now, approved + policy.provision_timeout) + length


def day_keys(start: datetime, end: datetime) -> list[str]:
    """The UTC days `[start, end)` touches, as `CapacityDay.day` writes them."""
    first, last = start.astimezone(UTC).date(), (end - timedelta(microseconds=1)).astimezone(UTC)
    return [(first + n * DAY).isoformat() for n in range((last.date() - first).days + 1)]


def place(session: Session, leases: Iterable[Lease], policy: Policy, now: datetime) -> None:
    """(Re)write the leases' rows of the calendar from what they now are: approved, up, or
    extended. A lease no longer live is removed."""
    leases = list(leases)
    forget(session, [lease.id for lease in leases])
    rows = [
        {"plan": lease.plan, "metro": metro, "day": day, "lease_id": lease.id}
        for lease in leases
        if State(lease.state) in LIVE
        for metro in lease.per_metro()
        for day in _days_of(lease, policy, now)
    ]
    insert_all_once(session, CapacityDay, rows)


def forget(session: Session, lease_ids: list[int]) -> None:
    """The leases ended: they hold nothing any more."""
    if lease_ids:
        session.exec(delete(CapacityDay).where(col(CapacityDay.lease_id).in_(lease_ids)))


def _days_of(lease: Lease, policy: Policy, now: datetime) -> list[str]:
    if lease.starts_at is None and lease.book_start is None:
        return [UNKNOWN_DAY]
    return day_keys(*window(lease, policy, now))


def held(
    session: Session,
    policy: Policy,
    plan: str,
    metro: str,
    start: datetime,
    end: datetime,
    now: datetime,
    leaving: int | None = None,
) -> list[Held]:
    """What live leases hold of `plan` in `metro` during `[start, end)` (one indexed read of
    the days it touches), less the lease `leaving` (one being extended counts anew)."""
    ids = select(CapacityDay.lease_id).where(
        CapacityDay.plan == plan,
        CapacityDay.metro == metro,
        col(CapacityDay.day).in_([UNKNOWN_DAY, *day_keys(start, end)]),
    )
    leases = session.exec(
        select(Lease).where(col(Lease.id).in_(ids), col(Lease.state).in_(list(LIVE)))
    ).all()
    found = []
    for lease in leases:
        begins, ends = window(lease, policy, now)
        if lease.id != leaving and begins < end and ends > start:
            count = lease.per_metro().get(metro, 0)
            found.append(Held(lease.id, lease.donor, count, begins, ends))
    return found


class Steps:
    """The step function of servers held over a span (those `donor` pays for; None: all, as
    the lab's limit counts them): `at[i]` is where a step starts and `count[i]` what is held
    from there to the next step."""

    def __init__(
        self, holding: list[Held], donor: str | None, start: datetime, end: datetime
    ) -> None:
        change: dict[datetime, int] = defaultdict(int)
        change[start] += 0
        for each in holding:
            if donor is None or each.donor == donor:
                change[max(each.start, start)] += each.count
                if each.end < end:
                    change[each.end] -= each.count
        self.at: list[datetime] = sorted(change)
        self.count: list[int] = []
        running = 0
        for moment in self.at:
            running += change[moment]
            self.count.append(running)

    def count_at(self, moment: datetime) -> int:
        i = bisect_right(self.at, moment) - 1
        return self.count[i] if i >= 0 else 0

    def most(self, start: datetime, end: datetime) -> int:
        """The most held at any moment of `[start, end)`."""
        first = max(0, bisect_right(self.at, start) - 1)
        return max(
            (self.count[i] for i in range(first, len(self.at)) if self.at[i] < end), default=0
        )

    def first_over(self, start: datetime, end: datetime, room: int) -> datetime | None:
        """The first moment of `[start, end)` at which more than `room` are held."""
        first = max(0, bisect_right(self.at, start) - 1)
        for i in range(first, len(self.at)):
            if self.at[i] >= end:
                break
            if self.count[i] > room:
                return max(self.at[i], start)
        return None

    def first_within(self, after: datetime, room: int) -> datetime | None:
        """The first step after `after` at which at most `room` are held."""
        for i in range(bisect_right(self.at, after), len(self.at)):
            if self.count[i] <= room:
                return self.at[i]
        return None


def misfit(
    session: Session,
    policy: Policy,
    lease: Lease,
    now: datetime,
    leaving: int | None = None,
    own_only: bool = False,
) -> Misfit | None:
    """Whether `lease` as it would stand (a request, an approval, a lease with its extension
    applied) fits every limit of its plan in each of its metros over its whole window (with
    `own_only`, its donor's own limits alone, and no next window); if not, where it first does
    not, and the next window of the same length that does. Call inside the write transaction
    that changes the lease: the plan's metros are locked for it."""
    start, end = window(lease, policy, now)
    per_metro = lease.per_metro()
    serialize(session, *(f"capacity:{lease.plan}:{metro}" for metro in per_metro))
    for metro, count in per_metro.items():
        rules = [
            limit
            for limit in limits(policy, lease.plan, metro, lease.donor)
            if limit.donor or not own_only
        ]
        if not rules:
            continue
        holding = held(session, policy, lease.plan, metro, start, end, now, leaving)
        for limit in rules:
            steps = Steps(holding, limit.donor, start, end)
            at = steps.first_over(start, end, limit.servers - count)
            if at is not None:
                return Misfit(
                    metro,
                    limit,
                    at,
                    steps.count_at(at),
                    None
                    if own_only
                    else _next_start(session, policy, lease, now, leaving, start, end - start),
                )
    return None


def _next_start(
    session: Session,
    policy: Policy,
    lease: Lease,
    now: datetime,
    leaving: int | None,
    start: datetime,
    length: timedelta,
) -> datetime | None:
    """The first start after `start` of a window of `length` that fits every limit in every
    metro, looking `SEARCH` ahead: a window that fits must start after the moment the window
    before it failed at, at a moment that fits, so each try jumps to the next such moment."""
    horizon = start + SEARCH + length
    checks = []
    for metro, count in lease.per_metro().items():
        holding = held(session, policy, lease.plan, metro, start, horizon, now, leaving)
        for limit in limits(policy, lease.plan, metro, lease.donor):
            checks.append((Steps(holding, limit.donor, start, horizon), limit.servers - count))
    if any(room < 0 for _, room in checks):
        return None
    candidate = start
    while candidate <= start + SEARCH:
        failed = [
            at
            for steps, room in checks
            if (at := steps.first_over(candidate, candidate + length, room)) is not None
        ]
        if not failed:
            return candidate
        bad = min(failed)
        later = [steps.first_within(bad, room) for steps, room in checks]
        if any(moment is None for moment in later):
            return None
        candidate = max(later)
    return None


def misfit_refusal(lease: Lease, short: Misfit, what: str) -> Refusal:
    """The sentence of a window that does not fit, `what` naming the action ("Booking #7")."""
    need = lease.per_metro()[short.metro]
    length = format_duration(lease.duration_s + lease.extended_s)
    limit = short.limit
    then = (
        f"{short.held} of {limit.whose()} {limit.servers} {lease.plan} in {short.metro} are held "
        "then"
    )
    if short.next_start is None:
        after = (
            f"no {length} window fits in the {SEARCH.days} days after it"
            if limit.servers >= need
            else f"{limit.whose()} limit there is {limit.servers}, so ask for fewer servers"
        )
    else:
        after = f"the next {length} that fits starts {when(short.next_start)}"
    return Refusal(
        Code.NO_CAPACITY,
        f"{what} would not fit the capacity calendar: {need} more {lease.plan} in {short.metro} "
        f"do not fit from {when(short.at)} ({then}); {after}.",
    )


@dataclass(frozen=True)
class CalendarDay:
    """One UTC day of a plan's calendar in a metro: the most servers held at any moment of it,
    against the limit (None: no limit)."""

    day: datetime
    held: int
    limit: int | None


def calendar_limit(policy: Policy, plan: str, metro: str) -> int | None:
    """What the calendar measures a day against: the lab's limit, else the donors' own limits
    together, else None (no limit)."""
    lab = capacity_of(policy.capacity, plan, metro)
    if lab is not None:
        return lab
    own = [capacity_of(d.capacity, plan, metro) for d in policy.donors()]
    return sum(n for n in own if n is not None) if any(n is not None for n in own) else None


@dataclass(frozen=True)
class Calendar:
    """A plan's coming days in a metro, as `/lab calendar`, App Home and the report show it."""

    plan: str
    metro: str
    days: list[CalendarDay]

    def text(self) -> str:
        limit = self.days[0].limit if self.days else None
        against = "no limit set" if limit is None else f"at most {limit} at once"
        lines = "\n".join(calendar_lines(self.days))
        return (
            f"*{self.plan} in {self.metro}*, the coming {len(self.days)} days (UTC): the most "
            f"servers held or booked at any moment of each day ({against})\n```{lines}```"
        )


def calendar_text(lab: Lab, plan: str, metro: str, now: datetime) -> Outcome:
    """`/lab calendar PLAN METRO` (the names are checked against the catalog when the
    providers can say what they offer)."""
    try:
        catalog = lab.plans()
    except Exception:  # the providers cannot say now: the names are taken as given
        catalog = None
    problem = _unknown(catalog, plan, metro) if catalog else None
    if problem:
        return Outcome(False, problem, code=Code.BAD_INPUT)
    with lab.db.read() as session:
        days = calendar(session, lab.policy, plan, metro, now)
    return Outcome(True, Calendar(plan, metro, days).text())


def _unknown(catalog: Catalog, plan: str, metro: str) -> str | None:
    if plan not in catalog.plans:
        return f"There is no plan '{plan[:40]}'; choose one of {', '.join(catalog.plans)}."
    if metro not in catalog.metros:
        return f"There is no metro '{metro[:40]}'; choose one of {', '.join(catalog.metros)}."
    return None


def calendars(lab: Lab, now: datetime, most: int = 3) -> list[Calendar]:
    """The calendars of the first `most` plans and metros with a limit (the lab's, then the
    donors'), for App Home."""
    limited = dict.fromkeys(
        (plan, metro)
        for capacity in (lab.policy.capacity, *(d.capacity for d in lab.policy.donors()))
        for plan, metro, _ in capacity
    )
    with lab.db.read() as session:
        return [
            Calendar(plan, metro, calendar(session, lab.policy, plan, metro, now))
            for plan, metro in list(limited)[:most]
        ]


def calendar(
    session: Session, policy: Policy, plan: str, metro: str, now: datetime
) -> list[CalendarDay]:
    """The coming `CALENDAR_DAYS` UTC days of `plan` in `metro`, from today's."""
    first = datetime.combine(now.astimezone(UTC).date(), time(), UTC)
    end = first + CALENDAR_DAYS * DAY
    steps = Steps(held(session, policy, plan, metro, first, end, now), None, first, end)
    limit = calendar_limit(policy, plan, metro)
    return [
        CalendarDay(day, steps.most(day, day + DAY), limit)
        for day in (first + n * DAY for n in range(CALENDAR_DAYS))
    ]


BAR = 10


def calendar_lines(days: list[CalendarDay]) -> list[str]:
    """Each day as a person reads it at a glance: `Mon Dec 07  12/20  ######....`."""
    return [f"{d.day:%a %b %d}  {_held_words(d):>7}  {_bar(d)}" for d in days]


def _held_words(day: CalendarDay) -> str:
    return f"{day.held}/{'-' if day.limit is None else day.limit}"


def _bar(day: CalendarDay) -> str:
    if day.limit is None:
        return ""
    if day.limit == 0:
        return "x" * BAR
    full = min(BAR, -(-day.held * BAR // day.limit))
    return "#" * full + "." * (BAR - full)


def fit_words(session: Session, policy: Policy, lease: Lease, now: datetime) -> str:
    """What the calendar says of a request, for its reviewers' card: in each metro with a limit,
    the most servers held during its window against the limit (`ams1: 12 of the lab's 20 held
    at the busiest moment of its window`)."""
    start, end = window(lease, policy, now)
    said = []
    for metro in lease.per_metro():
        rules = limits(policy, lease.plan, metro, lease.donor)
        holding = (
            held(session, policy, lease.plan, metro, start, end, now, lease.id) if rules else []
        )
        for limit in rules:
            most = Steps(holding, limit.donor, start, end).most(start, end)
            said.append(
                f"{metro}: {most} of {limit.whose()} {limit.servers} held at the busiest moment "
                "of its window"
            )
    return "; ".join(said) or "no limit set"
