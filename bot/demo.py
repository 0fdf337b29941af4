"""`labbot demo`: a whole story on a fresh temporary database with a simulated clock.

Two projects, three requests: one denied, one refused because it would over-commit the month,
one approved, provisioned, reminded at 24h and 1h, extended, expired and reclaimed. It prints
what each person was told, and the month's books at the end.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from commands.extend import extend
from commands.lab import Lab, Outcome
from commands.notices import Message
from commands.policy import Policy, RequestInput, Roles
from commands.request import request
from commands.review import approve, deny
from commands.sweep import sweep
from commands.views import credit_report
from metal.simulated import SimulatedProvider
from storage.db import Database
from storage.schema import upgrade

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ALICE, BOB, RITA, ADA = "U0ALICE", "U0BOB", "U0RITA", "U0ADA"
NAMES = {ALICE: "alice (coredns)", BOB: "bob (envoy)", RITA: "rita (reviewer)", ADA: "ada (admin)"}


@dataclass
class DemoClock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


class Transcript:
    """Prints each message as the person it was meant for saw it."""

    def deliver(self, message: Message) -> str:
        if message.user:
            where = f"DM to {NAMES.get(message.user, message.user)}"
        else:
            where = f"#{message.audience} channel"
        print(f"    [{where}] {_names(message.text)}")
        return f"demo-{message.id}"


def _names(text: str) -> str:
    for user, name in NAMES.items():
        text = text.replace(f"<@{user}>", "@" + name.split()[0])
    return text


def main(workdir: Path | None = None) -> int:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="labbot-demo-"))
    db = Database(f"sqlite:///{workdir / 'demo.db'}")
    upgrade(db)
    clock = DemoClock()
    lab = Lab(
        db,
        SimulatedProvider(db, clock=clock, provision_seconds=240),
        Transcript(),
        Policy(),
        Roles(reviewers=frozenset({RITA}), admins=frozenset({ADA})),
    )
    Story(lab, clock).run()
    print("\n" + credit_report(lab, clock.now).text())
    db.dispose()
    return 0


class Story:
    def __init__(self, lab: Lab, clock: DemoClock) -> None:
        self.lab, self.clock = lab, clock

    def say(self, who: str, what: str, outcome: Outcome) -> None:
        mark = "ok" if outcome.ok else "refused"
        print(f"\n{self.clock.now:%a %d %b %H:%M} — {NAMES[who]}: {what}")
        print(f"    -> ({mark}) {_names(outcome.message)}")

    def wait(self, label: str, **delta: float) -> None:
        self.clock.now += timedelta(**delta)
        report = sweep(self.lab, self.clock.now)
        steps = ", ".join(f"#{i} {what}" for i, what in report.stepped) or "nothing due"
        print(f"\n{self.clock.now:%a %d %b %H:%M} — sweep ({label}): {steps}")

    def run(self) -> None:
        lab, now = self.lab, lambda: self.clock.now
        coredns = RequestInput(
            project="coredns",
            repo_url="https://github.com/coredns/coredns",
            purpose="scale tests of the kubernetes plugin",
            plan="c1.small.x86",
            metro="ams1",
            count=3,
            duration=timedelta(hours=48),
        )
        envoy_big = RequestInput(
            project="envoy",
            repo_url="https://github.com/envoyproxy/envoy",
            purpose="a month of ARM CI",
            plan="m1.xlarge.x86",
            metro="sjc1",
            count=100,
            duration=timedelta(days=14),
        )
        envoy_odd = envoy_big.model_copy(
            update={"count": 2, "duration": timedelta(hours=12), "purpose": "mine cryptocurrency"}
        )
        first = request(lab, ALICE, coredns, now())
        self.say(ALICE, "/lab request 3 c1.small.x86 ams1 48h project=coredns ...", first)
        big = request(lab, BOB, envoy_big, now())
        self.say(BOB, "/lab request 100 m1.xlarge.x86 sjc1 14d project=envoy ...", big)
        odd = request(lab, BOB, envoy_odd, now())
        self.say(BOB, "/lab request 2 m1.xlarge.x86 sjc1 12h project=envoy ...", odd)
        self.clock.now += timedelta(minutes=20)
        self.say(
            RITA,
            f"denies #{odd.lease_id}",
            deny(lab, RITA, odd.lease_id, "not what the lab is for", now()),
        )
        self.say(RITA, f"approves #{big.lease_id}", approve(lab, RITA, big.lease_id, now()))
        self.say(RITA, f"approves #{first.lease_id}", approve(lab, RITA, first.lease_id, now()))
        self.wait("servers come up", minutes=5)
        self.wait("a day before the end", hours=24)
        self.say(
            ALICE,
            f"extends #{first.lease_id} by 12h",
            extend(lab, ALICE, first.lease_id, timedelta(hours=12), now()),
        )
        self.wait("an hour before the new end", hours=35)
        self.wait("the lease ends", hours=1)
        self.wait("grace is over", hours=1, minutes=1)
        self.wait("deletes confirmed", minutes=1)
