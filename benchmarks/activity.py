"""Activity reports against acks (issue 23): 5,000 servers reporting every 5 minutes (about 17
reports a second to `POST /activity`) must not slow Slack's acks.

`labbot serve` as production runs it (gunicorn web processes, a worker, the sweeper) on a
SQLite database holding 500 active leases of 10 servers, each server with its token, and a
pending lease per Slack client for `/lab list` to show. Rounds of `/lab list` (32 concurrent
clients x 5, signed as Slack signs them, from a process of their own) alternate between the
server alone and the server while a reporter process sends the 5,000 servers' reports at their
pace, each with its own token (so none is rate limited), over HTTP. Target: the ack's p99 with
the reports at most 1.2x its p99 alone, measured in the same run.

    python -m benchmarks activity
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import func, insert
from sqlmodel import select

from benchmarks.common import note, row, section, served_elsewhere, target_row
from benchmarks.slack_ack import (
    NOW,
    ROUNDS,
    _labbot_served,
    _list,
    _percentiles,
    _run,
    _serve_fake_slack,
)
from bot.settings import Settings
from commands.activity import new_token, token_hash
from commands.lab import Lab
from commands.states import ServerState, State
from metal.provider import TAG, lease_tag
from storage.db import Database
from storage.models import ActivitySample, ActivityToken, Lease, Server, SimDevice

SERVERS = 5_000
PER_LEASE = 10
EVERY_S = 300.0  # the reporter's timer
RATIO = 1.2  # ack p99 with the reports, at most this times the p99 alone
SENDERS = 4  # the reporter process's threads, each with a connection of its own
WARM_UP_S = 1.0  # reports flow this long before a measured round starts
BODY = '{"interval_s": 300, "load_1m": 0.2, "cpu_busy": 0.03, "net_bytes": 51200, "sessions": 1}'


def main() -> int:
    tokens = [new_token() for _ in range(SERVERS)]
    workers = Settings().web_concurrency
    with (
        served_elsewhere(_serve_fake_slack) as (api_url, responses),
        tempfile.TemporaryDirectory() as tmp,
    ):
        database = Path(tmp) / "served.db"
        with _labbot_served(
            api_url,
            responses,
            f"sqlite:///{database}",
            workers,
            lambda lab, port: _servers(lab, port, tokens),
        ) as url:
            base = url.rsplit("/slack/", 1)[0]
            alone, loaded, sent = _alternating(url, responses, f"{base}/activity", tokens)
        written = _samples(database)
    _report(alone, loaded, sent, written, workers)
    return 0


def _servers(lab: Lab, port: int, tokens: list[str]) -> dict[str, str]:
    """The lab's 5,000 active servers with their tokens' hashes, written as provisioning would
    have left them; the settings that make `labbot serve` take their reports."""
    leases = SERVERS // PER_LEASE
    with lab.db.write() as session:
        first = (session.exec(select(func.max(Lease.id))).one() or 0) + 1
        session.execute(
            insert(Lease),
            [
                {
                    "id": first + n,
                    "state": State.ACTIVE,
                    "owner": f"U1{n:05d}",
                    "project": "bench",
                    "repo_url": "https://github.com/example/bench",
                    "purpose": "benchmark",
                    "plan": "t1.small.x86",
                    "metro": "ams1",
                    "os": "ubuntu_16_04",
                    "count": PER_LEASE,
                    "duration_s": 14 * 86_400,
                    "hourly_cents": 7,
                    "created_at": NOW,
                    "starts_at": NOW,
                    "ends_at": NOW + timedelta(days=400),  # the serving sweeper finds none due
                }
                for n in range(leases)
            ],
        )
        servers = session.execute(
            insert(Server).returning(Server.id),
            [
                {
                    "lease_id": first + n // PER_LEASE,
                    "hostname": f"bench-{n}",
                    "plan": "t1.small.x86",
                    "metro": "ams1",
                    "state": ServerState.ACTIVE,
                    "provider_id": f"sim-bench-{n}",
                    "hourly_cents": 7,
                    "active_at": NOW,
                }
                for n in range(SERVERS)
            ],
        ).scalars()
        session.execute(  # the simulated provider's devices, so its reconcile finds them
            insert(SimDevice),
            [
                {
                    "id": f"sim-bench-{n}",
                    "hostname": f"bench-{n}",
                    "plan": "t1.small.x86",
                    "metro": "ams1",
                    "os": "ubuntu_16_04",
                    "tags": json.dumps([TAG, lease_tag(first + n // PER_LEASE)]),
                    "created_at": NOW,
                    "ready_at": NOW,
                }
                for n in range(SERVERS)
            ],
        )
        session.execute(
            insert(ActivityToken),
            [
                {"server_id": server_id, "token_hash": token_hash(token), "issued_at": NOW}
                for server_id, token in zip(servers, tokens, strict=True)
            ],
        )
    return {"LABBOT_PUBLIC_URL": f"http://127.0.0.1:{port}"}


def _alternating(
    url: str, responses: str, activity: str, tokens: list[str]
) -> tuple[list[float], list[float], Counter[int]]:
    """Rounds of `/lab list` alone and with the reports, in turn (one unmeasured round first:
    every web process pays its first-request costs in it)."""
    _run(url, responses, _list)
    alone: list[float] = []
    loaded: list[float] = []
    sent: Counter[int] = Counter()
    context = multiprocessing.get_context("spawn")
    for round_ in range(ROUNDS):
        alone += _run(url, responses, _list)
        stop = context.Event()
        answers = context.Queue()
        shift = round_ * len(tokens) // ROUNDS  # each round, other servers: none rate limited
        reporter = context.Process(
            target=_report_at_pace, args=(activity, tokens[shift:] + tokens[:shift], stop, answers)
        )
        reporter.start()
        time.sleep(WARM_UP_S)
        loaded += _run(url, responses, _list)
        stop.set()
        sent.update(answers.get(timeout=60))
        reporter.join(60)
    return alone, loaded, sent


def _report_at_pace(activity: str, tokens: list[str], stop, answers) -> None:
    """The servers' reports, one every EVERY_S / len(tokens) seconds, each from the next
    server, until told to stop; puts the count of each answer's status. SENDERS threads take
    turns, each on a kept-alive connection of its own (http.client: the senders stand for
    servers elsewhere, so they should take as little of this machine as they can)."""
    spacing = EVERY_S / len(tokens)
    where = urlsplit(activity)
    started = time.perf_counter()

    def sender(first: int) -> Counter[int]:
        statuses: Counter[int] = Counter()
        connection = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
        for n in range(first, len(tokens), SENDERS):
            pause = started + n * spacing - time.perf_counter()
            if stop.wait(max(0.0, pause)):
                break
            headers = {
                "Authorization": f"Bearer {tokens[n]}",
                "Content-Type": "application/json",
            }
            try:
                connection.request("POST", where.path, BODY, headers)
                answer = connection.getresponse()
                answer.read()
                statuses[answer.status] += 1
            except (OSError, http.client.HTTPException):
                statuses[0] += 1
                connection.close()
                connection = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
        connection.close()
        return statuses

    with ThreadPoolExecutor(SENDERS) as pool:
        answers.put(sum(pool.map(sender, range(SENDERS)), Counter()))


def _samples(database: Path) -> int:
    db = Database(f"sqlite:///{database}")
    try:
        with db.read() as session:
            return session.exec(select(func.count()).select_from(ActivitySample)).one()
    finally:
        db.dispose()


def _report(
    alone: list[float], loaded: list[float], sent: Counter[int], written: int, workers: int
) -> None:
    section("Activity reports against Slack's acks (labbot serve)")
    note(
        f"{SERVERS:,} servers reporting every {EVERY_S / 60:.0f} minutes "
        f"({SERVERS / EVERY_S:.1f} reports a second) to POST /activity, during alternate "
        f"rounds of /lab list (32 clients x 5, {ROUNDS} rounds each way); {workers} web "
        "processes"
    )
    ours, theirs = _percentiles(loaded), _percentiles(alone)
    row("ack p50 / p99 ms, with reports", f"{ours[0]:.1f} / {ours[1]:.1f}")
    row("ack p50 / p99 ms, alone", f"{theirs[0]:.1f} / {theirs[1]:.1f}")
    answered = ", ".join(f"{status or 'no answer'}: {n}" for status, n in sorted(sent.items()))
    row("reports sent", f"{sum(sent.values()):,}", f"({answered}); {written:,} samples written")
    target_row("ack p99 with reports / alone", ours[1] / theirs[1], RATIO)
