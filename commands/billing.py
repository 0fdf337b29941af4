"""Pure arithmetic of money and time: started hours, months, and which month an hour falls in.

A server bills per started hour (as Packet billed), from `active_at` until it is gone. Each
started hour is attributed to the calendar month (UTC) in which it starts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)


def started_hours(start: datetime, end: datetime) -> int:
    if end <= start:
        return 0
    return math.ceil((end - start) / HOUR)


def month_key(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")


def month_bounds(key: str) -> tuple[datetime, datetime]:
    year, month = (int(part) for part in key.split("-"))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def months_between(start: datetime, end: datetime) -> Iterator[str]:
    """Every month key that [start, end) touches, in order."""
    key = month_key(start)
    while True:
        yield key
        _, month_end = month_bounds(key)
        if month_end >= end:
            return
        key = month_key(month_end)


def hours_by_month(start: datetime, end: datetime) -> dict[str, int]:
    """The started hours of [start, end) grouped by the month in which each hour starts.

    Hour k starts at start + k hours; the hours starting inside a month are counted with two
    ceilings, so a year-long span costs a dozen steps, not 8,760."""
    total = started_hours(start, end)
    if total == 0:
        return {}
    result: dict[str, int] = {}
    for key in months_between(start, start + (total - 1) * HOUR + timedelta(microseconds=1)):
        month_start, month_end = month_bounds(key)
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
