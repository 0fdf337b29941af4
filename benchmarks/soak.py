"""The soak: replicas of `labbot serve` on one database, driven over HTTP as Slack drives them.

`make soak` (or `SOAK_REQUESTS=N SOAK_USERS=U python -m benchmarks soak`; defaults 2000 and 50;
not part of `make test` or `make bench`). In one run:

1. Two `labbot serve` processes on one throwaway PostgreSQL 15 database, the Packet backend
   against the fake Packet API (which answers some calls with 429 and 500 and loses some create
   answers, about one fault every two seconds), the Slack Web API faked. U users file N
   requests over HTTP, reviewers approve most (a third of them clicked on both replicas at once
   by two reviewers) and deny the rest, owners extend some leases and release others, and the
   rest expire: leases are two minutes long, so expiry and reclaim happen during the run.
   Halfway through the decisions one replica is killed with SIGKILL and started again.
2. The same load against one replica on a SQLite file.

At the end of each: every lease is in a final state and none failed, no device is left at the
provider, no hostname was created twice, the books balance to the cent in every month, no notice
was queued twice, and no request waited more than 3 s for its ack. It prints PASS or FAIL per
check, the audit of every failed lease, and what a person would ask, from what the soak itself
saw: acks timed at the client (p50, p99, p99.9, the maximum and the slowest request's kind); the
sweep's lag, from a lease's end + grace to the first delete of its servers that reached the
provider (p50, p99, maximum); and the server-hours the donor was billed past end + grace, in
dollars, from the deletes the provider took.

Each request is decided as soon as its card appears. The cards come at Slack's pace, about one
a second in one channel (the fake Slack enforces Slack's limits here), so a half takes about
N + 240 s: 2,000 requests about 38 minutes a half. No wait is a fixed guess: the card wait
gives up when cards come slower than that pace by more than a minute, the last wait a minute
after the last lease's end + grace, and each says what it was still waiting for.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import requests
from sqlmodel import col, func, select

from benchmarks.common import workdir
from bot.blocks import cards
from bot.slack_notifier import POST_EVERY
from commands.billing import cost_by_month, format_cents, hours_by_month
from commands.notices import CLAIM_FOR, Kind
from commands.states import ServerState, State
from fakes.keys import public_key
from fakes.packet import FakePacket
from fakes.slack import FakeSlack
from fakes.slack_sender import SlackSender
from metal.provider import utcnow
from storage.db import Database
from storage.models import AuditEvent, InboxItem, Lease, Notice, Server, ServerSpend
from tests.postgres import Server as PostgresServer
from tests.postgres import free_port

TOKEN, SECRET = "xoxb-soak", "soak-signing-secret"
REVIEWERS = [f"U0REV{n}" for n in range(4)]
FINAL = {
    State.RECLAIMED,
    State.DENIED,
    State.FAILED,
    State.EXPIRED_REQUEST,
    State.CANCELLED,
}
ACK_LIMIT = 3.0
LEASE = "2m"
GRACE = timedelta(seconds=10)
# Longer than a create's claim (5 minutes), so that the creates the killed replica had in flight
# are looked for and adopted, not left to fail the lease at the deadline.
PROVISION_TIMEOUT = timedelta(minutes=8)
PLAN, METRO = "t1.small.x86", "ams1"
ROOT = Path(__file__).parents[1]
LABBOT = str(Path(sys.executable).parent / "labbot")


@dataclass
class Load:
    """What the load generator did and saw: each request's kind and its ack's time, timed here
    at the client from sending to the answer."""

    acks: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, kind: str, send) -> requests.Response:
        started = time.monotonic()
        answer = send()
        with self.lock:
            self.acks.append((time.monotonic() - started, kind))
        return answer


class Replica:
    """One `labbot serve` process."""

    def __init__(self, env: dict[str, str], log: Path, slack: FakeSlack) -> None:
        self.port = free_port()
        self.env = {**env, "PORT": str(self.port)}
        self.log = log
        self.process: subprocess.Popen | None = None
        url = f"http://127.0.0.1:{self.port}/slack/events"
        self.sender = SlackSender(url, SECRET, response_url_base=slack)

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [LABBOT, "serve"], env=self.env, stdout=out, stderr=out, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"replica on port {self.port} did not start:\n{tail}")

    def kill(self) -> None:
        """SIGKILL to the whole replica (gunicorn's master and its worker), as a platform's
        kill of the container does."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def environment(url: str, slack: FakeSlack, packet: FakePacket) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": url,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.base_url,
        "LABBOT_REVIEW_CHANNEL": "C0REVIEW",
        "LABBOT_ADMIN_CHANNEL": "C0ADMIN",
        "LABBOT_REVIEWERS": ",".join(REVIEWERS),
        "LABBOT_ADMINS": REVIEWERS[0],
        "PACKET_AUTH_TOKEN": packet.token,
        "PACKET_PROJECT_ID": packet.project_id,
        "PACKET_API_URL": packet.end_point,
        "REQUESTS_CA_BUNDLE": packet.ca_bundle_path,
        "LABBOT_SWEEP_INTERVAL": "2s",
        "LABBOT_MIN_LEASE": "1m",
        "LABBOT_GRACE": f"{GRACE.seconds}s",
        "LABBOT_REMINDERS": "1m",
        "LABBOT_CLAIM_FOR": "20s",
        "LABBOT_RECONCILE_EVERY": "30s",
        "LABBOT_PROVISION_TIMEOUT": f"{PROVISION_TIMEOUT.total_seconds():.0f}s",
        "LABBOT_PENDING_PER_USER": "1000",
    }


def inject_faults(packet: FakePacket, stop: threading.Event, rng: random.Random) -> None:
    """The provider misbehaving all through the run, as Packet did: about one fault every two
    seconds, each armed for the next matching request within its second. A fault that found no
    request by then is dropped: a real provider's trouble is a rate, not a backlog. (Faults
    kept until a request came piled up while the lab was quiet, and then refused every create
    for minutes however long labbot backed off: in one small soak a lease created again after
    a lapsed claim met about 90 refusals in a row and failed.)"""
    devices = f"projects/{packet.project_id}/devices"
    faults = [
        lambda: packet.fail_next("POST", devices, 429, headers={"Retry-After": "1"}),
        lambda: packet.fail_next("POST", devices, 500),
        lambda: packet.fail_next("DELETE", "devices", 500),
        lambda: packet.fail_next("GET", devices, rng.choice([429, 500])),
        packet.lose_create_answer,
    ]
    while not stop.wait(1.0):
        packet.clear_faults()
        if rng.random() < 0.5:
            rng.choice(faults)()


def leases(db: Database) -> list[Lease]:
    with db.read() as session:
        return list(session.exec(select(Lease)).all())


def say(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", flush=True)


def drive(name: str, url: str, replicas: int, n: int, users: int, kill: bool) -> dict:
    """Run the load against `replicas` processes on `url`; return the figures and checks."""
    say(f"{name}: starting")
    rng = random.Random(8)
    load = Load()
    stop = threading.Event()
    with FakeSlack() as slack, FakePacket(provision_seconds=3) as packet, workdir() as logs:
        # The lab has room for the whole load: servers waiting for capacity would only measure
        # the fake's default (100 of a plan per location) against the provisioning deadline.
        packet.set_capacity(PLAN, METRO, n)
        # Slack's own limits, as the fake enforces them: a call the outbox paced wrongly is
        # refused with a 429, as Slack would, and counted.
        slack.limit_rates()
        env = environment(url, slack, packet)
        procs = [Replica(env, logs / f"replica-{i}.log", slack) for i in range(replicas)]
        for proc in procs:
            proc.start()
        faults = threading.Thread(target=inject_faults, args=(packet, stop, rng), daemon=True)
        faults.start()
        db = Database(url)
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(16) as pool:
                _file(pool, procs, load, n, users)
                say(f"{name}: {n} requests acked")
                gave_up = _decide(pool, procs, load, slack, db, rng, n, kill)
            say(f"{name}: waiting for every lease to end")
            gave_up += _wait_final(db)
        finally:
            stop.set()
            for proc in procs:
                proc.stop()
        wall = time.monotonic() - started
        packet.clear_faults()
        result = _check(db, packet, load, gave_up)
        result["slack_429s"] = Counter(c.method for c in slack.calls() if c.status == 429)
        db.dispose()
    result.update(name=name, wall=wall)
    return result


def _file(pool, procs, load: Load, n: int, users: int) -> None:
    def one(i: int) -> None:
        user, proc = f"U0USER{i % users:02d}", procs[i % len(procs)]
        text = (
            f"request 1 {PLAN} {METRO} {LEASE} project=soak{i % users} "
            f'repo=https://github.com/soak/p{i % users} key="{public_key(user)}" "soak run {i}"'
        )
        load.post("request", lambda: proc.sender.slash_command(text=text, user_id=user))

    list(pool.map(one, range(n)))


class Cards:
    """The review cards the fake Slack has taken so far, read incrementally: each look scans
    only the calls made since the last one."""

    def __init__(self, slack: FakeSlack) -> None:
        self.slack = slack
        self.seen = 0
        self.refs: dict[int, tuple[str, str]] = {}

    def look(self) -> dict[int, tuple[str, str]]:
        calls = self.slack.calls()
        for call in calls[self.seen :]:
            if call.method != "chat.postMessage" or not call.ok:
                continue
            for block in call.params.get("blocks") or []:
                block_id = str(block.get("block_id", ""))
                if block_id.startswith("review:"):
                    lease_id = int(block_id.split(":")[1])
                    self.refs[lease_id] = (call.response["channel"], call.response["ts"])
        self.seen = len(calls)
        return self.refs


class Deadline:
    """A wait that ends when Slack's pacing says it should have: `owed` things still to come,
    each at most `every` apart, plus `margin`. Reset on progress, so a run going at Slack's pace
    never reaches it, and one going slower than the pace by a margin's worth does."""

    def __init__(self, every: float, margin: float) -> None:
        self.every, self.margin = every, margin
        self.at = time.monotonic() + margin

    def progress(self, owed: int) -> None:
        self.at = time.monotonic() + owed * self.every + self.margin

    def pause(self, seconds: float) -> None:
        self.at += seconds

    def passed(self) -> bool:
        return time.monotonic() > self.at


CARD_EVERY = POST_EVERY.total_seconds()  # the outbox posts to one channel at Slack's pace
MARGIN = 60.0  # the start, a replica's restart's catch-up, and a few slow passes
RECLICK_AFTER = 60.0  # a click not done by then is clicked again, once, as a reviewer would


@dataclass
class Decisions:
    """What the soak clicked: when each lease was decided, and the leases whose activation it
    has seen (each extended, released or left to expire once)."""

    clicked: dict[int, float] = field(default_factory=dict)
    again: set[int] = field(default_factory=set)  # clicked a second time
    seen_active: set[int] = field(default_factory=set)
    killed: bool = False
    all_decided: bool = False


def _decide(pool, procs, load, slack, db, rng, n: int, kill: bool) -> list[str]:
    """Decide each request as soon as its card appears (a tenth denied, the rest approved, a
    third of approvals clicked on every replica at once), and extend or release leases as they
    come up; kill replica 0 halfway through the decisions. Returns what a wait gave up on."""
    board = Cards(slack)
    done = Decisions(killed=not kill)
    deadline = Deadline(CARD_EVERY, MARGIN)
    clicks: list = []
    posted = 0
    while True:
        rows, refs = leases(db), board.look()
        if len(refs) > posted:
            posted = len(refs)
            deadline.progress(n - posted)
        pending = [lease for lease in rows if lease.state == State.PENDING]
        for lease in pending:
            if lease.id in refs and lease.id not in done.clicked:
                clicks.append(pool.submit(_click, procs, load, rng, lease.id, refs[lease.id]))
                done.clicked[lease.id] = time.monotonic()
            elif (
                lease.id not in done.again
                and time.monotonic() - done.clicked.get(lease.id, math.inf) > RECLICK_AFTER
            ):
                # A click acked by a replica just before it was killed is done by the other's
                # sweeper from the inbox; the card still shows Approve and Deny meanwhile, and
                # a reviewer clicks again, once. (Clicking every few seconds while the workers
                # were behind flooded the inbox: 13,000 items for 500 requests.)
                clicks.append(pool.submit(_click, procs, load, rng, lease.id, refs[lease.id]))
                done.again.add(lease.id)
        if not done.killed and len(done.clicked) >= n // 2:
            for click in clicks:
                click.result()
            restarted = time.monotonic()
            procs[0].kill()
            procs[0].start()
            # And the killed replica's claims on audiences it was sending lapse only after
            # the outbox's CLAIM_FOR: until then nobody posts its cards (the takeover).
            deadline.pause(time.monotonic() - restarted + CLAIM_FOR.total_seconds())
            done.killed = True
            say(f"{len(done.clicked)} decided; replica 0 killed with SIGKILL and started again")
        _extend_and_release(pool, procs, load, rng, rows, done)
        decided = len(rows) >= n and done.killed and not pending
        if decided and not done.all_decided:
            # What remains is the provider's: an approved lease comes up, or fails, within
            # the provisioning timeout (a lost create is found and adopted by then).
            done.all_decided = True
            deadline = Deadline(0, PROVISION_TIMEOUT.total_seconds() + MARGIN)
            say(f"all {n} decided ({len(done.again)} clicked again)")
        coming = (State.APPROVED, State.PROVISIONING)
        if decided and not any(r.state in coming for r in rows):
            break
        if deadline.passed():
            return [_owed(db, n, posted, rows)]
        time.sleep(1)
    for click in clicks:
        click.result()
    say("every approved lease came up")
    return []


def _click(procs, load: Load, rng: random.Random, lease_id: int, ref: tuple[str, str]) -> None:
    """A reviewer's decision on the card: deny (a tenth) or approve, an approval clicked on
    every replica at once by as many reviewers a third of the time."""
    if rng.random() < 0.1:
        proc = rng.choice(procs)
        text = f"deny {lease_id} not this month"
        load.post("deny", lambda: proc.sender.slash_command(text=text, user_id=REVIEWERS[1]))
        return
    channel, ts = ref
    clicks = procs if rng.random() < 1 / 3 else [rng.choice(procs)]

    def click(pair) -> None:
        proc, reviewer = pair
        load.post(
            "approve",
            lambda: proc.sender.block_action(
                f"{cards.APPROVE}:{lease_id}",
                str(lease_id),
                reviewer,
                channel_id=channel,
                message_ts=ts,
            ),
        )

    with ThreadPoolExecutor(len(clicks)) as together:
        list(together.map(click, zip(clicks, REVIEWERS, strict=False)))


def _owed(db: Database, n: int, posted: int, rows: list[Lease]) -> str:
    """What the decisions' wait gave up on, for the report: the cards still owed by the outbox,
    or, all posted, the work on what Slack sent still undone (the inbox)."""
    with db.read() as session:
        owed = session.exec(
            select(Notice.kind, func.count(), func.min(Notice.retry_at))
            .where(col(Notice.audience) == "review", col(Notice.retry_at).is_not(None))
            .group_by(col(Notice.kind))
        ).all()
        undone = session.exec(select(func.count()).where(col(InboxItem.done_at).is_(None))).one()
    waiting = ", ".join(f"{kind} {count} (next due {due:%H:%M:%S})" for kind, count, due in owed)
    what = (
        "the clicks to be done and the leases to come up"
        if posted >= n
        else f"review cards at Slack's pace ({CARD_EVERY:g} s a card + {MARGIN:g} s)"
    )
    return (
        f"gave up at {time.strftime('%H:%M:%S')} waiting for {what}: {posted} of {n} cards "
        f"posted; {len(rows)} leases filed, {dict(Counter(r.state for r in rows))}; owed to "
        f"the review channel: {waiting or 'nothing'}; {undone} of what Slack sent not yet done"
    )


def _extend_and_release(pool, procs, load, rng, rows: list[Lease], done: Decisions) -> None:
    """As leases come up: extend a fifth of them by a minute, release another fifth."""
    for lease in rows:
        if lease.state != State.ACTIVE or lease.id in done.seen_active:
            continue
        done.seen_active.add(lease.id)
        roll, proc = rng.random(), rng.choice(procs)
        if roll < 0.2:
            text = f"extend {lease.id} 1m"
        elif roll < 0.4:
            text = f"release {lease.id}"
        else:
            continue
        pool.submit(
            load.post,
            text.split()[0],
            lambda t=text, o=lease.owner, p=proc: p.sender.slash_command(text=t, user_id=o),
        )


def _wait_final(db: Database) -> list[str]:
    """Every lease final and no server still on its way up or down (a failed lease is final
    while the sweep is still deleting what came up). The wait's deadline is the last lease's
    end + grace and a margin for the deletes; returns what it gave up on."""
    while True:
        rows = leases(db)
        with db.read() as session:
            busy = session.exec(
                select(Server.lease_id, Server.state).where(
                    col(Server.state).not_in(
                        [ServerState.DELETED, ServerState.FAILED, ServerState.VANISHED]
                    )
                )
            ).all()
        live = [r for r in rows if r.state not in FINAL]
        if not busy and not live:
            return []
        ends = [r.ends_at for r in live if r.ends_at] or [utcnow()]
        if utcnow() > max(ends) + GRACE + timedelta(seconds=MARGIN):
            return [
                f"gave up at {time.strftime('%H:%M:%S')} waiting for leases to end "
                f"(the last due at {max(ends) + GRACE:%H:%M:%S}, + {MARGIN:g} s): "
                f"{dict(Counter(r.state for r in live))} not final, servers not gone: "
                f"{dict(Counter(state for _, state in busy))}"
            ]
        time.sleep(2)


def _check(db: Database, packet: FakePacket, load: Load, gave_up: list[str]) -> dict:
    rows = leases(db)
    with db.read() as session:
        servers = session.exec(select(Server)).all()
        spend = session.exec(select(ServerSpend)).all()
        notices = session.exec(select(Notice)).all()
        expired = set(
            session.exec(select(AuditEvent.lease_id).where(AuditEvent.action == "expire")).all()
        )
        failed = [r.id for r in rows if r.state == State.FAILED]
        audits = session.exec(
            select(AuditEvent)
            .where(col(AuditEvent.lease_id).in_(failed))
            .order_by(col(AuditEvent.at), col(AuditEvent.id))
        ).all()
    # Every create that made a device: answered, or answered into the void (lost).
    created = Counter(
        r.body.get("hostname")
        for r in packet.requests
        if r.method == "POST" and r.path.endswith("/devices") and r.status in (201, None)
    )
    adopted = Counter(s.hostname for s in servers if s.provider_id)
    expected: Counter = Counter()
    for server in servers:
        if server.active_at and server.deleted_at:
            expected.update(
                cost_by_month(server.active_at, server.deleted_at, 1, server.hourly_cents)
            )
    booked: Counter = Counter()
    for row in spend:
        booked[row.month] += row.cents
    twice = Counter((n.kind, n.audience, n.lease_id, n.payload) for n in notices)
    acks = sorted(load.acks)
    checks = {
        "every wait ended before its deadline": not gave_up,
        "every lease in a final state": all(r.state in FINAL for r in rows),
        "no lease failed": not failed,
        "no device left at the provider": packet.devices() == [],
        "no server created twice": all(c == 1 for c in created.values())
        and all(c == 1 for c in adopted.values()),
        "books balance to the cent": +booked == +expected,
        "no notice queued twice": all(c == 1 for c in twice.values()),
        f"no ack over {ACK_LIMIT:.0f} s": (acks[-1][0] if acks else 0) <= ACK_LIMIT,
    }
    ends = {r.id: r.ends_at for r in rows if r.ends_at}
    seconds = [a for a, _ in acks]
    return {
        "requests": len(acks),
        "leases": len(rows),
        "states": Counter(r.state for r in rows),
        "ack_p50": percentile(seconds, 0.5),
        "ack_p99": percentile(seconds, 0.99),
        "ack_p999": percentile(seconds, 0.999),
        "ack_max": seconds[-1] if acks else 0,
        "slowest": acks[-1][1] if acks else "",
        "faults": Counter(
            "lost create" if r.status is None else f"{r.method} {r.status}"
            for r in packet.requests
            if r.status is None or r.status in (429, 500)
        ),
        **outbox(notices),
        **sweep_lag(packet, servers, ends, expired),
        **waste(packet, servers, ends),
        "checks": checks,
        "gave_up": gave_up,
        "failed_audits": [
            f"#{e.lease_id} {e.at:%H:%M:%S.%f} {e.actor} {e.action} {e.outcome} {e.details}"
            for e in audits
        ],
    }


def outbox(notices: list[Notice]) -> dict:
    """How long review cards and their edits waited in the outbox, from queued to sent (the
    pacing's cost), and what was still owed when the half ended."""
    waits: dict[str, list[float]] = {"cards": [], "edits": []}
    for notice in notices:
        group = {Kind.REVIEW_CARD: "cards", Kind.CARD_DECIDED: "edits"}.get(Kind(notice.kind))
        if group and notice.delivered_at:
            waits[group].append((notice.delivered_at - notice.created_at).total_seconds())
    figures = {}
    for group, seconds in waits.items():
        seconds.sort()
        figures[f"{group}_p50"] = percentile(seconds, 0.5)
        figures[f"{group}_max"] = seconds[-1] if seconds else 0
    owed = Counter(n.kind for n in notices if n.retry_at is not None)
    return {**figures, "owed": dict(owed)}


def percentile(ordered: list[float], q: float) -> float:
    """The nearest-rank percentile of values already in order (0 for none)."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else 0


def deletes_seen(packet: FakePacket) -> tuple[dict[str, datetime], dict[str, datetime]]:
    """By device id, as the provider saw them: the first delete asked for, and the delete that
    it took (what ends the donor's bill)."""
    asked: dict[str, datetime] = {}
    taken: dict[str, datetime] = {}
    for r in packet.requests:
        if r.method == "DELETE" and r.path.startswith("devices/"):
            device = r.path.split("?")[0].split("/")[1]
            asked.setdefault(device, r.at)
            if r.status is not None and r.status < 300:
                taken.setdefault(device, r.at)
    return asked, taken


def sweep_lag(
    packet: FakePacket, servers: list[Server], ends: dict[int, datetime], expired: set[int]
) -> dict:
    """For each lease the sweep expired: from its end + grace (when it was due) to the first
    delete of its servers that reached the provider (when it was acted on), in seconds."""
    asked, _ = deletes_seen(packet)
    acted: dict[int, datetime] = {}
    for server in servers:
        at = asked.get(server.provider_id or "")
        if server.lease_id in expired and at is not None:
            acted[server.lease_id] = min(at, acted.get(server.lease_id, at))
    lags = sorted((at - ends[i] - GRACE).total_seconds() for i, at in acted.items())
    return {
        "expired": len(lags),
        "lag_p50": percentile(lags, 0.5),
        "lag_p99": percentile(lags, 0.99),
        "lag_max": lags[-1] if lags else 0,
    }


def waste(packet: FakePacket, servers: list[Server], ends: dict[int, datetime]) -> dict:
    """What the donor paid for after leases' end + grace: each server billed per started hour
    from when it came up to when the provider took its delete, against the same bill cut at
    end + grace."""
    _, taken = deletes_seen(packet)
    hours = cents = 0
    late = 0.0
    for server in servers:
        gone = taken.get(server.provider_id or "")
        if server.active_at is None or gone is None or server.lease_id not in ends:
            continue
        due = max(server.active_at, ends[server.lease_id] + GRACE)
        over = sum(hours_by_month(server.active_at, gone).values()) - sum(
            hours_by_month(server.active_at, min(gone, due)).values()
        )
        hours += over
        cents += over * server.hourly_cents
        late += max(0.0, (gone - due).total_seconds())
    return {"waste_hours": hours, "waste_cents": cents, "late_server_minutes": late / 60}


def report(results: list[dict], n: int, users: int) -> None:
    print(f"soak: {n} requests from {users} users per run")
    for r in results:
        print(f"\n  {r['name']}: {r['wall']:.0f} s wall, {r['requests']} requests handled")
        print(f"    leases {r['leases']}: {dict(r['states'])}")
        print(
            f"    ack (timed at the client) p50 {r['ack_p50'] * 1000:.0f} ms, "
            f"p99 {r['ack_p99'] * 1000:.0f} ms, p99.9 {r['ack_p999'] * 1000:.0f} ms, "
            f"max {r['ack_max'] * 1000:.0f} ms ({r['slowest']})"
        )
        print(
            f"    sweep lag (end + grace to the first delete at the provider, "
            f"{r['expired']} leases expired) p50 {r['lag_p50']:.1f} s, "
            f"p99 {r['lag_p99']:.1f} s, max {r['lag_max']:.1f} s"
        )
        print(
            f"    billed past end + grace: {r['waste_hours']} server-hours, "
            f"{format_cents(r['waste_cents'])} ({r['late_server_minutes']:.1f} server-minutes "
            "up past it)"
        )
        print(
            f"    outbox (queued to sent): review cards p50 {r['cards_p50']:.0f} s, "
            f"max {r['cards_max']:.0f} s; card edits p50 {r['edits_p50']:.0f} s, "
            f"max {r['edits_max']:.0f} s; owed at the end: {r['owed'] or 'nothing'}"
        )
        print(f"    provider faults that fired: {dict(r['faults']) or 'none'}")
        print(f"    Slack's 429s (the outbox's pacing overrun): {dict(r['slack_429s']) or 'none'}")
        for check, ok in r["checks"].items():
            print(f"    {'PASS' if ok else 'FAIL'}  {check}")
        for line in r["gave_up"]:
            print(f"    {line}")
        for line in r["failed_audits"]:
            print(f"    audit {line}")


def main() -> int:
    n = int(os.environ.get("SOAK_REQUESTS", "2000"))
    users = int(os.environ.get("SOAK_USERS", "50"))
    results = []
    pg = PostgresServer.start()
    try:
        results.append(drive("PostgreSQL, 2 replicas, one SIGKILLed", pg.create(), 2, n, users,
                             kill=True))  # fmt: skip
    finally:
        pg.stop()
    with workdir() as tmp:
        url = f"sqlite:///{tmp / 'soak.db'}"
        results.append(drive("SQLite, 1 replica", url, 1, n, users, kill=False))
    report(results, n, users)
    print(
        json.dumps(
            [{**r, "states": dict(r["states"]), "faults": dict(r["faults"])} for r in results],
            default=str,
        )
    )
    return 0 if all(all(r["checks"].values()) for r in results) else 1
