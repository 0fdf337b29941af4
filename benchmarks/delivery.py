"""Delivery at Slack's pace: 500 notices across 50 channels through the real outbox and
SlackNotifier, against the fake Slack with its rate limits on, compared with the ideal schedule
those limits allow.

The clock is simulated, not real: the fake Slack's rate model and the outbox both read it, and
the courier's loop (a `deliver` pass every COURIER_EVERY, as `labbot serve` runs it) steps it.
So the run takes seconds of wall time for about a minute of Slack time, and the figure is the
schedule itself (when each message reached Slack), free of this machine's speed; the HTTP calls,
the database and the notifier are the real ones.

Two runs of the same size:
- cold: a process that has just started must open every DM (conversations.open, Tier 3, about
  50 a minute) before posting to it, which is the slowest lane of the lot;
- warm: the same process again, its DMs known: every channel at about one message a second.

Each prints outbox / ideal (target: at most 1.2x) with PASS or MISS, and the 429s provoked.
Size with DELIVERY_NOTICES and DELIVERY_CHANNELS.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from slack_sdk import WebClient

from benchmarks.common import heading, new_database, note, row, section, target_row, workdir
from bot.scheduler import COURIER_EVERY
from bot.slack_notifier import SlackNotifier
from commands.notices import ADMIN, REVIEW, Draft, Kind, deliver, enqueue_all, owner, undelivered
from fakes.slack import FakeSlack
from fakes.slack_rates import LIMITS
from storage.db import Database

NOTICES = int(os.environ.get("DELIVERY_NOTICES", "500"))
CHANNELS = int(os.environ.get("DELIVERY_CHANNELS", "50"))
TARGET = 1.2
START = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
REVIEW_CHANNEL, ADMIN_CHANNEL = "C0REVIEW", "C0ADMIN"


@dataclass
class SimClock:
    now: datetime = START

    def seconds(self) -> float:
        return self.now.timestamp()


@dataclass(frozen=True)
class Run:
    makespan: float  # seconds from the first notice queued to the last message Slack took
    ideal: float
    refused: int  # 429s
    passes: int
    wall: float

    @property
    def ratio(self) -> float:
        """Outbox / ideal; a run whose every channel fits in one burst is ideal at 0 s."""
        if self.ideal == 0:
            return 1.0 if self.makespan == 0 else float("inf")
        return self.makespan / self.ideal


def audiences(channels: int) -> list[str]:
    """The review and admin channels, and a DM to each of the other people."""
    people = [owner(f"U0P{i:03d}") for i in range(max(0, channels - 2))]
    return [REVIEW, ADMIN, *people][:channels]


def queue(db: Database, now: datetime, round_: str, channels: list[str], total: int) -> None:
    """`total` notices, round robin over the channels, as a busy minute queues them."""
    drafts = [
        Draft(
            Kind.SHARED if audience.startswith("user:") else Kind.ADMIN_ALERT,
            audience,
            f"{round_} notice {n} for {audience}",
        )
        for n in range(total)
        for audience in [channels[n % len(channels)]]
    ]
    with db.write() as session:
        enqueue_all(session, drafts, now)


def ideal(channels: list[str], total: int, open_dms: bool) -> float:
    """The earliest Slack's limits let the last message go: each channel's posts at its pace
    (a burst, then one a second), a DM's only after its conversations.open, which are paced
    by their own tier, one DM after another."""
    post, opens = LIMITS["chat.postMessage"], LIMITS["conversations.open"]

    def earliest(k: int, every: float, burst: int) -> float:  # the k-th call, 0-based
        return max(0, k - (burst - 1)) * every

    last = 0.0
    dms = 0
    for i, audience in enumerate(channels):
        count = total // len(channels) + (1 if i < total % len(channels) else 0)
        begins = 0.0
        if open_dms and audience.startswith("user:"):
            begins = earliest(dms, opens.every, opens.burst)
            dms += 1
        last = max(last, begins + earliest(count - 1, post.every, post.burst))
    return last


def run(db: Database, fake: FakeSlack, notifier: SlackNotifier, clock: SimClock, cold: bool) -> Run:
    channels = audiences(CHANNELS)
    fake.reset()
    began = clock.now
    queue(db, began, "cold" if cold else "warm", channels, NOTICES)
    wall = time.perf_counter()
    passes = 0
    while undelivered(db):
        deliver(db, notifier, clock.now, owner="bench", limit=NOTICES)
        passes += 1
        clock.now += COURIER_EVERY
        if clock.now - began > timedelta(hours=1):
            raise RuntimeError(f"{undelivered(db)} notices still undelivered after an hour")
    wall = time.perf_counter() - wall
    posts = [c for c in fake.calls("chat.postMessage") if c.ok]
    assert len(posts) == NOTICES, f"{len(posts)} posts for {NOTICES} notices"
    return Run(
        makespan=max(c.at for c in posts) - began.timestamp(),
        ideal=ideal(channels, NOTICES, open_dms=cold),
        refused=len([c for c in fake.calls() if c.status == 429]),
        passes=passes,
        wall=wall,
    )


def report(what: str, result: Run) -> bool:
    heading(what)
    row("Slack time to deliver every notice", f"{result.makespan:.1f} s")
    row("ideal schedule Slack's limits allow", f"{result.ideal:.1f} s")
    met = target_row("outbox / ideal", result.ratio, TARGET)
    row("429s provoked", str(result.refused))
    row("courier passes", str(result.passes))
    row("wall time of the run", f"{result.wall:.1f} s")
    return met


def main() -> int:
    section(f"delivery: {NOTICES} notices across {CHANNELS} channels at Slack's pace")
    note("Simulated clock shared by the outbox and the fake Slack's rate model; real HTTP,")
    note("SQLite and SlackNotifier. The fake's bursts: 4 posts per channel, 5 Tier 3 calls.")
    clock = SimClock()
    with workdir() as path, FakeSlack(clock=clock.seconds) as fake:
        fake.limit_rates()
        db = new_database(path / "delivery.db")
        client = WebClient(token="xoxb-bench", base_url=fake.base_url)
        notifier = SlackNotifier(client, REVIEW_CHANNEL, ADMIN_CHANNEL)
        report("cold: a fresh process opens every DM first", run(db, fake, notifier, clock, True))
        clock.now += timedelta(minutes=5)
        report("warm: every DM already open", run(db, fake, notifier, clock, False))
        db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
