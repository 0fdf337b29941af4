"""The operator's view of a running `labbot serve` (a subprocess, several web workers, its own
sweeper process): /metrics that agree with the database whichever worker answers, /healthz
that knows how old the last sweep is, and JSON log lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func
from sqlmodel import col, select

from commands.health import last_sweep, record_sweep
from fakes.slack import FakeSlack
from fakes.slack_sender import SlackSender
from metal.provider import utcnow
from storage.db import Database
from storage.models import Lease, Notice
from tests.bot.conftest import INLINE, SECRET
from tests.bot.test_serve import DEADLINE, free_port, serve_env, wait_healthy

WORKERS = 2
REQUESTS = 6
SCRAPES = 12


@dataclass
class Served:
    url: str
    db: Database
    metrics: Path
    log: Path
    pid: int


@pytest.fixture
def served(fake: FakeSlack, database_url: str, tmp_path: Path) -> Iterator[Served]:
    """`labbot serve` with two workers and JSON logs written to a file."""
    port = free_port()
    env = serve_env(
        fake,
        database_url,
        port,
        WEB_CONCURRENCY=str(WORKERS),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        LABBOT_LOG_FORMAT="json",
        LABBOT_SWEEP_INTERVAL="1h",
        LABBOT_HEALTH_SWEEP_AGE="2h",
        LABBOT_PENDING_PER_USER="10",
    )
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve"], env=env, stdout=stderr, stderr=stderr
        )
    db = Database(env["DATABASE_URL"])
    try:
        wait_healthy(port, process)
        _wait_for(lambda: last_sweep(db) is not None)  # the sweeper's pass at start-up
        yield Served(f"http://127.0.0.1:{port}", db, tmp_path / "metrics", log, process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DEADLINE)
        db.dispose()
    assert process.returncode == 0, log.read_text()


def test_every_worker_reports_the_same_counts_and_they_agree_with_the_database(
    served: Served,
) -> None:
    url, db = served.url, served.db
    sender = SlackSender(f"{url}/slack/events", SECRET)
    for n in range(REQUESTS):
        assert sender.slash_command(text=INLINE, user_id=f"U0ASK{n}").status_code == 200
    _wait_for(lambda: _count(db, Lease) == REQUESTS and _undelivered(db) == 0)

    scrapes = [_scrape(url) for _ in range(SCRAPES)]
    delivered = _count(db, Notice)
    for scrape in scrapes:
        assert scrape[("labbot_leases", (("state", "pending"),))] == REQUESTS
        assert scrape[("labbot_outbox_depth", ())] == 0
        assert scrape[("labbot_database_up", ())] == 1
        assert _sum(scrape, "labbot_slack_deliveries_total", outcome="ok") == delivered
        assert _sum(scrape, "labbot_slack_deliveries_total", outcome="error") == 0
        # every process that built a Lab read the catalog: each web process, the inbox worker,
        # and the sweeper at start-up and at its reconcile
        assert _sum(scrape, "labbot_provider_calls_total", call="catalog") == WORKERS + 3
        assert _sum(scrape, "labbot_sweeps_total", outcome="ok") == 1
    assert {_counters(s) for s in scrapes} == {_counters(scrapes[0])}
    writers = {path.stem.rsplit("_", 1)[1] for path in served.metrics.glob("*.db")}
    assert len(writers) >= WORKERS + 1, writers


def test_health_turns_unhealthy_when_the_recorded_sweep_is_stale(served: Served) -> None:
    url, db = served.url, served.db
    assert requests.get(f"{url}/healthz", timeout=5).json()["status"] == "ok"

    record_sweep(db, utcnow() - timedelta(hours=3))
    stale = requests.get(f"{url}/healthz", timeout=5)
    assert stale.status_code == 503
    assert stale.json()["status"] == "sweep_stale"
    assert stale.json()["last_sweep_age_s"] >= 3 * 3600
    assert _scrape(url)[("labbot_last_sweep_age_seconds", ())] >= 3 * 3600

    record_sweep(db, utcnow())
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200


def test_with_json_logs_every_line_of_every_process_is_one_json_object(served: Served) -> None:
    _wait_for(lambda: "worker doing kept requests" in served.log.read_text())  # it has started
    lines = [json.loads(line) for line in served.log.read_text().splitlines()]
    said = {line["message"] for line in lines}
    assert any(m.startswith("Listening at") for m in said)  # gunicorn's arbiter
    assert any(m.startswith("Booting worker") for m in said)  # gunicorn's workers
    assert any(m.startswith("sweeper running") for m in said)  # the sweeper process
    assert any(m.startswith("worker doing kept requests") for m in said)  # the inbox worker
    assert all({"time", "level", "logger", "message", "pid"} <= line.keys() for line in lines)


def test_one_sweeper_per_serve_restarted_by_the_arbiter_when_it_dies(served: Served) -> None:
    [first] = _sweepers(served.pid)
    os.kill(first, signal.SIGKILL)
    _wait_for(lambda: len(_sweepers(served.pid)) == 1 and first not in _sweepers(served.pid))
    swept = last_sweep(served.db)
    _wait_for(lambda: last_sweep(served.db) != swept)  # the new one sweeps at its start-up
    assert requests.get(f"{served.url}/healthz", timeout=5).status_code == 200


def test_the_workers_give_way_to_the_web_processes_and_the_sweeper(served: Served) -> None:
    """LABBOT_WORKER_NICENESS (10 by default): on a shared machine an ack comes before a
    reply, and the sweep that reclaims servers keeps its priority."""
    _wait_for(lambda: _children(served.pid, b"bot.worker") != [])
    workers = _children(served.pid, b"bot.worker")
    # A worker renices itself as it starts, before it says it is doing kept requests.
    _wait_for(lambda: all(_said(served, pid, "worker doing kept requests") for pid in workers))
    started_at = _niceness(served.pid)  # the suite itself may run under `nice`
    worker = {_niceness(pid) for pid in workers}
    assert worker == {min(started_at + 10, 19)}
    assert {_niceness(pid) for pid in _children(served.pid, b"bot.sweeper")} == {started_at}
    assert {_niceness(pid) for pid in _children(served.pid, b"bot.cli")} == {started_at}


def _niceness(pid: int) -> int:
    """Field 19 of /proc/PID/stat, counted after the command's closing parenthesis."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _sweepers(parent: int) -> list[int]:
    """The children of `parent` running bot.sweeper (the web workers run bot.cli serve)."""
    return _children(parent, b"bot.sweeper")


def _children(parent: int, module: bytes) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(pid) for pid in children if module in _cmdline(int(pid))]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:  # exited between the listing and the read
        return b""


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    answer = requests.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def _sum(scrape: dict, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, pairs), value in scrape.items()
        if sample == name and labels.items() <= dict(pairs).items()
    )


def _counters(scrape: dict) -> frozenset:
    return frozenset((key, value) for key, value in scrape.items() if key[0].endswith("_total"))


def _count(db: Database, table: type) -> int:
    with db.read() as session:
        return session.exec(select(func.count()).select_from(table)).one()


def _undelivered(db: Database) -> int:
    with db.read() as session:
        return session.exec(
            select(func.count()).select_from(Notice).where(col(Notice.retry_at).is_not(None))
        ).one()


def _said(served: Served, pid: int, message: str) -> bool:
    """Whether process `pid` has logged a line starting with `message` (JSON logs)."""
    lines = (json.loads(line) for line in served.log.read_text().splitlines())
    return any(line["pid"] == pid and line["message"].startswith(message) for line in lines)


def _wait_for(condition, timeout: float = DEADLINE) -> None:
    """Poll with a deadline: the server's processes work concurrently with the test."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the server did not get there in time"
        time.sleep(0.05)
