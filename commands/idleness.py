"""Rules: whether a server, and a lease, is idle, judged from its activity samples. Pure: the
sweep's checks, the questions and the early reclaim are commands/idle.py.

A sample covers the `interval_s` seconds before its `at`. It is busy when any signal it has is at
or above its threshold (CPU busy share, network bytes per hour of its interval, a logged-in
session), quiet when every signal it has is below, and says nothing when it has none (the
source gives no signal: unknown, never idle). The load average is shown but not judged: the CPU
share already says whether the machine works.

A server is idle when its samples cover, without a gap, the last `idle_after` of what they have
said, all quiet, and what they said is fresh (the latest ends no more than `FRESH` before now).
A gap in the samples (more than `GAP` between one covered stretch and the next) is unknown and
starts the count again: a server whose reports stop is never idle for it, however quiet it was
before. Sources overlap freely: one busy sample of any source makes that stretch busy.
A lease is idle when every one of its running servers is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from commands.policy import Policy
from storage.models import ActivitySample

GAP = timedelta(minutes=2)  # samples this far apart still cover continuously (timers drift)
FRESH = timedelta(minutes=20)  # what the samples say is current if their latest ends this late
HOUR_S = 3600


class Use(StrEnum):
    IDLE = "idle"
    ACTIVE = "active"  # samples say something, not (yet) idle
    UNKNOWN = "unknown"  # no sample with a signal, or none fresh


@dataclass(frozen=True)
class Verdict:
    """One server's use: `quiet_since` is when its current quiet, covered stretch began, and
    `seen_until` the end of its latest sample with a signal; `idle_at` is the earliest moment
    it may be idle on what is known (None: nothing fresh, wait for samples)."""

    use: Use
    quiet_since: datetime | None = None
    seen_until: datetime | None = None
    idle_at: datetime | None = None


def busy(sample: ActivitySample, policy: Policy) -> bool | None:
    """Whether a sample says the server was used; None when it carries no signal at all."""
    said = []
    if sample.cpu_busy is not None:
        said.append(sample.cpu_busy >= policy.idle_cpu)
    if sample.net_bytes is not None:
        per_hour = sample.net_bytes * HOUR_S / max(sample.interval_s, 1)
        said.append(per_hour >= policy.idle_network)
    if sample.sessions is not None:
        said.append(sample.sessions > 0)
    return any(said) if said else None


def _stretches(
    samples: Iterable[ActivitySample], policy: Policy
) -> list[tuple[datetime, datetime, bool]]:
    """(start, end, busy) of each sample with a signal, by start."""
    out = []
    for sample in samples:
        used = busy(sample, policy)
        if used is not None:
            out.append((sample.at - timedelta(seconds=sample.interval_s), sample.at, used))
    return sorted(out)


def judge(samples: Iterable[ActivitySample], policy: Policy, now: datetime) -> Verdict:
    """One server's use at `now` from its samples (those of the last `idle_after` and a bit,
    at least: an older quiet stretch only makes `quiet_since` earlier)."""
    stretches = _stretches(samples, policy)
    if not stretches:
        return Verdict(Use.UNKNOWN)
    covered_from, covered_to = stretches[0][0], stretches[0][1]
    busy_until = covered_from
    for start, end, used in stretches:
        if start > covered_to + GAP:  # a gap: unknown, so the count starts again
            covered_from = busy_until = start
        covered_to = max(covered_to, end)
        if used:
            busy_until = max(busy_until, end)
    quiet_since = max(covered_from, busy_until)
    if covered_to < now - FRESH:
        return Verdict(Use.UNKNOWN, seen_until=covered_to)
    idle_at = quiet_since + policy.idle_after
    use = Use.IDLE if idle_at <= covered_to else Use.ACTIVE
    return Verdict(use, quiet_since, covered_to, idle_at)


@dataclass(frozen=True)
class LeaseVerdict:
    """A lease's use: idle when every running server is (`since`: the latest of their quiet
    starts); `idle_at` the earliest moment all may be, None when some server says nothing."""

    idle: bool
    since: datetime | None
    idle_at: datetime | None


def judge_lease(verdicts: Sequence[Verdict]) -> LeaseVerdict:
    if not verdicts or any(v.idle_at is None for v in verdicts):
        return LeaseVerdict(False, None, None)
    idle = all(v.use == Use.IDLE for v in verdicts)
    since = max(v.quiet_since for v in verdicts) if idle else None
    return LeaseVerdict(idle, since, max(v.idle_at for v in verdicts))
