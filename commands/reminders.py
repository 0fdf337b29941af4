"""When reminders fall due. Pure: the sweep asks, and records what it sent."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from commands.durations import format_duration
from commands.policy import Policy


def reminder_times(
    policy: Policy, starts_at: datetime, ends_at: datetime
) -> list[tuple[int, datetime]]:
    """(offset in seconds, when it is due) for each configured offset, largest offset first.
    A lease shorter than an offset gets that reminder as soon as it starts."""
    offsets = sorted(policy.reminders, reverse=True)
    return [(int(o.total_seconds()), max(starts_at, ends_at - o)) for o in offsets]


def due_reminders(
    policy: Policy, starts_at: datetime, ends_at: datetime, sent: Iterable[int], now: datetime
) -> list[int]:
    done = set(sent)
    return [
        offset
        for offset, at in reminder_times(policy, starts_at, ends_at)
        if at <= now and offset not in done
    ]


def next_due(
    policy: Policy, starts_at: datetime, ends_at: datetime, sent: Iterable[int]
) -> datetime:
    """The next moment an active lease needs the sweep: an unsent reminder, or expiry."""
    done = set(sent)
    times = [at for offset, at in reminder_times(policy, starts_at, ends_at) if offset not in done]
    return min([*times, ends_at + policy.grace])


def remaining_words(ends_at: datetime, now: datetime) -> str:
    left = max(timedelta(0), ends_at - now)
    return format_duration(left) if left else "now"
