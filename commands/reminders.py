"""Rules: when reminders fall due. Pure: sending them, and their words, are commands/remind.py,
which the sweep calls and which records what it sent."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from commands.durations import format_duration
from commands.policy import Policy

# The SentReminder offset that records the silent-lease check, so it runs once per lease end
# (an extension clears it with the reminders it re-arms).
SILENT_CHECK = -1


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


def silent_check_at(policy: Policy, starts_at: datetime, ends_at: datetime) -> datetime | None:
    """When the sweep looks whether anyone answered the last reminder: halfway from it to the
    end, which leaves the team time to answer and a reviewer time to extend before reclaim.
    None when no reminders are configured (there is nothing to answer)."""
    times = reminder_times(policy, starts_at, ends_at)
    if not times:
        return None
    last = times[-1][1]
    return last + (ends_at - last) / 2


def next_due(
    policy: Policy, starts_at: datetime, ends_at: datetime, sent: Iterable[int]
) -> datetime:
    """The next moment an active lease needs the sweep: an unsent reminder, the silent-lease
    check, or expiry."""
    done = set(sent)
    times = [at for offset, at in reminder_times(policy, starts_at, ends_at) if offset not in done]
    silent = silent_check_at(policy, starts_at, ends_at)
    if silent is not None and SILENT_CHECK not in done:
        times.append(silent)
    return min([*times, ends_at + policy.grace])


def remaining_words(ends_at: datetime, now: datetime) -> str:
    left = max(timedelta(0), ends_at - now)
    return format_duration(left) if left else "now"
