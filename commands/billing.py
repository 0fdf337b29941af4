"""Vocabulary: pure arithmetic of money and time: started hours, months, and which month an hour
falls in.

A server bills per started hour (as Packet billed), from `active_at` until it is gone. Each
started hour is attributed to the calendar month (UTC) in which it starts.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)


def started_hours(start: datetime, end: datetime) -> int:
    if end <= start:
        return 0
    return math.ceil((end - start) / HOUR)


def month_key(at: datetime) -> str:
    utc = at.astimezone(UTC)
    return _key(utc.year, utc.month)


def _key(year: int, month: int) -> str:
    """`2026-12`, as strftime("%Y-%m") writes it (glibc leaves years before 1000 unpadded)."""
    return f"{year}-{month:02d}"


def month_bounds(key: str) -> tuple[datetime, datetime]:
    year, month = (int(part) for part in key.split("-"))
    return _bounds(year, month)


def _bounds(year: int, month: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _months(start: datetime, end: datetime) -> Iterator[tuple[str, datetime, datetime]]:
    """Every month that [start, end) touches, in order: its key, its start and its end. Counted
    on the year and month, so a month costs no formatting and parsing of its key."""
    utc = start.astimezone(UTC)
    year, month = utc.year, utc.month
    while True:
        month_start, month_end = _bounds(year, month)
        yield _key(year, month), month_start, month_end
        if month_end >= end:
            return
        year, month = month_end.year, month_end.month


def months_between(start: datetime, end: datetime) -> Iterator[str]:
    """Every month key that [start, end) touches, in order."""
    return (key for key, _, _ in _months(start, end))


def hours_by_month(start: datetime, end: datetime) -> dict[str, int]:
    """The started hours of [start, end) grouped by the month in which each hour starts.

    Hour k starts at start + k hours; the hours starting inside a month are counted with two
    ceilings, so a year-long span costs a dozen steps, not 8,760. When the first and the last
    hour start in the same month (most leases), that month has them all."""
    total = started_hours(start, end)
    if total == 0:
        return {}
    last_hour = start + (total - 1) * HOUR
    first_key, last_key = month_key(start), month_key(last_hour)
    if first_key == last_key:
        return {first_key: total}
    result: dict[str, int] = {}
    for key, month_start, month_end in _months(start, last_hour + timedelta(microseconds=1)):
        first = max(0, math.ceil((month_start - start) / HOUR))
        last = min(total, math.ceil((month_end - start) / HOUR))
        if last > first:
            result[key] = last - first
    return result


def cost_by_month(start: datetime, end: datetime, count: int, hourly_cents: int) -> dict[str, int]:
    return {key: hours * count * hourly_cents for key, hours in hours_by_month(start, end).items()}


def format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    dollars, rest = divmod(abs(cents), 100)
    return f"{sign}${dollars:,}.{rest:02d}"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def to_us(at: datetime) -> int:
    """Microseconds since the epoch: exact, and countable in SQL."""
    return (at - EPOCH) // MICROSECOND


def from_us(us: int) -> datetime:
    return EPOCH + us * MICROSECOND


def first_overrun(
    caps: dict[str, int], meters: Iterable[tuple[datetime, datetime | None, int]]
) -> datetime | None:
    """The first moment at which servers billing per started hour from `start` (never past
    `stop`) at `cents` an hour would together have billed more in some month than `caps`
    allows there (a month without a cap allows nothing); None if they never would. Until that
    moment the caps bound their spend exactly. Servers that started together are counted
    together, so a lease costs a few hundred steps, not one per server-hour."""
    groups: dict[tuple[datetime, datetime | None], int] = defaultdict(int)
    for start, stop, cents in meters:
        groups[start, stop] += cents
    # (when the next hour starts, which group, when the group stops, its cents an hour)
    hours = [(start, n, stop, cents) for n, ((start, stop), cents) in enumerate(groups.items())]
    heapq.heapify(hours)
    spent: dict[str, int] = defaultdict(int)
    while hours:
        at, n, stop, cents = heapq.heappop(hours)
        if stop is not None and at >= stop:
            continue
        key = month_key(at)
        spent[key] += cents
        if spent[key] > caps.get(key, 0):
            return at
        heapq.heappush(hours, (at + HOUR, n, stop, cents))
    return None
