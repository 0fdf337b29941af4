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
from sqlmodel import col, select

from benchmarks.common import workdir
from bot.blocks import cards
from commands.billing import cost_by_month, format_cents, hours_by_month
from commands.states import ServerState, State
from fakes.keys import public_key
from fakes.packet import FakePacket
from fakes.slack import FakeSlack
from fakes.slack_sender import SlackSender
from storage.db import Database
from storage.models import AuditEvent, Lease, Notice, Server, ServerSpend
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
        # Longer than a create's claim (5 minutes), so that the creates the killed replica
        # had in flight are looked for and adopted, not left to fail the lease at the deadline.
        "LABBOT_PROVISION_TIMEOUT": "8m",
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


def card_refs(slack: FakeSlack) -> dict[int, tuple[str, str]]:
    refs = {}
    for call in slack.calls("chat.postMessage"):
        for block in call.params.get("blocks") or []:
            block_id = str(block.get("block_id", ""))
            if call.ok and block_id.startswith("review:"):
                refs[int(block_id.split(":")[1])] = (call.response["channel"], call.response["ts"])
    return refs


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
                say(f"{name}: {n} requests filed")
                _decide(pool, procs, load, slack, db, rng, n, kill)
                say(f"{name}: decided")
                _extend_and_release(pool, procs, load, db, rng)
            say(f"{name}: extensions and releases sent; waiting for every lease to end")
            settled = _wait_final(db, timeout=max(900, n))
        finally:
            stop.set()
            for proc in procs:
                proc.stop()
        wall = time.monotonic() - started
        packet.clear_faults()
        result = _check(db, packet, load, settled)
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


def _decide(pool, procs, load, slack, db, rng, n: int, kill: bool) -> None:
    """Deny a tenth, approve the rest; a third of approvals clicked on every replica at once."""
    # Filing runs after the ack; on one SQLite replica 2,000 requests took over 4 minutes.
    deadline = time.monotonic() + max(120, n / 2)
    filed: list[Lease] = []
    refs: dict[int, tuple[str, str]] = {}
    # A request is acked before it is filed: wait for every lease row and its review card.
    while time.monotonic() < deadline:
        filed, refs = leases(db), card_refs(slack)
        if len(filed) >= n and refs.keys() >= {lease.id for lease in filed}:
            break
        time.sleep(0.5)
    pending = {lease.id for lease in filed if lease.state == State.PENDING}
    order = sorted(pending)
    half = len(order) // 2

    def decide(lease_id: int) -> None:
        if rng.random() < 0.1:
            proc = rng.choice(procs)
            load.post(
                "deny",
                lambda: proc.sender.slash_command(
                    text=f"deny {lease_id} not this month", user_id=REVIEWERS[1]
                ),
            )
            return
        channel, ts = refs.get(lease_id, ("C0REVIEW", "0"))
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

        barrier_pool = ThreadPoolExecutor(len(clicks))
        list(barrier_pool.map(click, zip(clicks, REVIEWERS, strict=False)))
        barrier_pool.shutdown()

    say(f"cards found for {len(refs.keys() & pending)} of {len(pending)} requests")
    list(pool.map(decide, order[:half]))
    if kill:
        procs[0].kill()
        procs[0].start()
        say("replica 0 killed with SIGKILL and started again")
    list(pool.map(decide, order[half:]))
    # A click acked by the replica just before it was killed never reached its listener: the
    # card still shows Approve and Deny, so the reviewer clicks again.
    time.sleep(5)
    again = [lease.id for lease in leases(db) if lease.state == State.PENDING]
    say(f"{len(again)} cards still undecided after the clicks; clicked again")
    list(pool.map(decide, again))


def _extend_and_release(pool, procs, load, db, rng) -> None:
    """As leases come up: extend a fifth of them by a minute, release another fifth."""
    done: set[int] = set()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        live = [lease for lease in leases(db) if lease.id not in done]
        active = [lease for lease in live if lease.state == State.ACTIVE]
        waiting = [lease for lease in live if lease.state in (State.APPROVED, State.PROVISIONING)]
        for lease in active:
            done.add(lease.id)
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
        if not waiting and not active:
            return
        time.sleep(1)


def _wait_final(db: Database, timeout: float) -> bool:
    """Every lease final and no server still on its way up or down (a failed lease is final
    while the sweep is still deleting what came up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.read() as session:
            busy = session.exec(
                select(Server.id).where(
                    col(Server.state).not_in(
                        [ServerState.DELETED, ServerState.FAILED, ServerState.VANISHED]
                    )
                )
            ).first()
        if busy is None and all(lease.state in FINAL for lease in leases(db)):
            return True
        time.sleep(2)
    return False


def _check(db: Database, packet: FakePacket, load: Load, settled: bool) -> dict:
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
        "every lease in a final state": settled and all(r.state in FINAL for r in rows),
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
        **sweep_lag(packet, servers, ends, expired),
        **waste(packet, servers, ends),
        "checks": checks,
        "failed_audits": [
            f"#{e.lease_id} {e.at:%H:%M:%S.%f} {e.actor} {e.action} {e.outcome} {e.details}"
            for e in audits
        ],
    }


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
        print(f"    provider faults that fired: {dict(r['faults']) or 'none'}")
        for check, ok in r["checks"].items():
            print(f"    {'PASS' if ok else 'FAIL'}  {check}")
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
