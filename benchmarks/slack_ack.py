"""Ack latency of labbot's bolt App under 32 concurrent clients, against a bare bolt App.

Two comparisons, each against a bare bolt App (listeners that only ack) served the same way in
the same run, with correctly signed requests over HTTP from a client process of their own, and
the Web API on FakeSlack in another process:

1. In process: both Apps on the threaded WSGI server of bot.serve. Measured: `/lab list` and an
   Approve click on a reviewer card (whose real work, provisioning, goes on after the ack).
   Targets: p99 < 100 ms and p99 within 2x of the bare App's.
2. Behind gunicorn, as production runs: `labbot serve` (a subprocess: WEB_CONCURRENCY web
   processes, which only verify, keep the request in the inbox and ack, its worker process,
   which does `/lab list` and answers through the response_url, and its sweeper) against the
   bare App under gunicorn with the same web processes and threads. Measured: `/lab list`'s
   ack, on SQLite (the embedded default) and on PostgreSQL (production: a server started by the
   benchmark, as the tests start theirs). Target: labbot's p99 within 1.2x of the bare App's,
   on each.

    python -m benchmarks slack_ack          (WEB_CONCURRENCY=4 to try another worker count)
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from multiprocessing import Queue, get_context
from pathlib import Path

import requests
from gunicorn.app.base import BaseApplication
from slack_bolt import App
from slack_sdk import WebClient

from benchmarks.common import (
    FixedClock,
    make_lab,
    note,
    row,
    section,
    serve_forever,
    served_elsewhere,
    target_row,
)
from bot.app import LISTENER_THREADS, TrackedPool, build_context, create_app
from bot.blocks import cards
from bot.serve import EVENTS_PATH, HTTP_THREADS, local_server, wsgi_app
from bot.settings import Settings
from commands.lab import Lab
from commands.policy import Policy, RequestInput, Roles
from commands.request import request
from fakes.slack import FakeSlack
from fakes.slack_sender import SlackSender
from storage.db import Database
from storage.schema import upgrade
from tests.postgres import Server as PostgresServer

CLIENTS = 32
PER_CLIENT = 5
ROUNDS = 12  # alternating rounds per server behind gunicorn: p99 of 1,920 acks a side (six
# rounds, 960, gave ratios from 1.03 to 1.56 for one commit on 2 cores; three, 1.14 to 1.99)
GUNICORN_RATIO = 1.2  # labbot's ack p99 behind gunicorn, at most this times the bare App's
SECRET = "bench-signing-secret"
TOKEN = "xoxb-bench"
REVIEWER = "U0REVIEW"
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

Send = Callable[[SlackSender, int], requests.Response]


def main() -> int:
    with (
        served_elsewhere(_serve_fake_slack) as (api_url, responses),
        tempfile.TemporaryDirectory() as tmp,
    ):
        with _labbot(api_url, Path(tmp)) as (labbot_url, lease_ids):
            labbot = _measure(labbot_url, responses, lease_ids)
        with _bare(api_url) as bare_url:
            bare = _measure(bare_url, responses, list(range(1, CLIENTS * PER_CLIENT + 2)))
        _report_in_process(labbot, bare)
        workers = int(os.environ.get("WEB_CONCURRENCY", Settings().web_concurrency))
        sqlite = f"sqlite:///{Path(tmp) / 'served.db'}"
        _gunicorn_round("SQLite, embedded", sqlite, api_url, responses, workers)
        postgres = PostgresServer.start()
        try:
            _gunicorn_round(
                "PostgreSQL, as in production", postgres.create(), api_url, responses, workers
            )
        finally:
            postgres.stop()
    return 0


def _gunicorn_round(name: str, url: str, api_url: str, responses: str, workers: int) -> None:
    with (
        _labbot_served(api_url, responses, url, workers) as labbot_url,
        _bare_served(api_url, workers) as bare_url,
    ):
        served, bare_served = _alternating(labbot_url, bare_url, responses)
    _report_gunicorn(name, served, bare_served, workers)


def _report_in_process(labbot: dict[str, list[float]], bare: dict[str, list[float]]) -> None:
    section("Slack ack latency, in process (threaded WSGI server)")
    note(f"{CLIENTS} concurrent clients x {PER_CLIENT} requests each, over HTTP on 127.0.0.1")
    print(
        f"{'':22}{'p50 ms':>9}{'p99 ms':>9}{'bare p50':>10}{'bare p99':>10}{'ratio p50':>11}"
        f"{'ratio p99':>11}"
    )
    for name in labbot:
        ours, theirs = _percentiles(labbot[name]), _percentiles(bare[name])
        print(
            f"{name:22}{ours[0]:9.1f}{ours[1]:9.1f}{theirs[0]:10.1f}{theirs[1]:10.1f}"
            f"{ours[0] / theirs[0]:11.2f}{ours[1] / theirs[1]:11.2f}"
        )
        target_row(f"{name}: p99 ms", ours[1], 100, "{:.1f}")
        target_row(f"{name}: p99 / bare p99", ours[1] / theirs[1], 2)


def _report_gunicorn(name: str, labbot: list[float], bare: list[float], workers: int) -> None:
    section(f"Slack ack latency behind gunicorn on {name} (labbot serve against a bare App)")
    note(
        f"{CLIENTS} concurrent clients x {PER_CLIENT} requests each of /lab list, "
        f"{ROUNDS} rounds per server, alternating; "
        f"{workers} web processes x {HTTP_THREADS} threads in both; labbot's work in its "
        "worker process"
    )
    ours, theirs = _percentiles(labbot), _percentiles(bare)
    row("labbot p50 / p99 ms", f"{ours[0]:.1f} / {ours[1]:.1f}")
    row("bare App p50 / p99 ms", f"{theirs[0]:.1f} / {theirs[1]:.1f}")
    target_row("labbot p99 / bare p99", ours[1] / theirs[1], GUNICORN_RATIO)


def _serve_fake_slack(ready: Queue) -> None:
    """The fake Slack Web API, elsewhere as Slack is; says its API base URL and the base of
    the response_urls it serves. Slack's servers take none of labbot's CPU: on this one
    machine their stand-in runs at the lowest priority, on what the servers under test leave."""
    os.nice(19)
    with FakeSlack() as fake:
        ready.put((fake.base_url, fake.response_url("")))
        serve_forever()


@contextmanager
def _labbot(api_url: str, workdir: Path) -> Iterator[tuple[str, list[int]]]:
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'bench.db'}",
        policy=Policy(pending_per_user=CLIENTS * PER_CLIENT),
        roles=Roles(reviewers=frozenset({REVIEWER})),
        review_channel="C0REVIEW",
        admin_channel="C0ADMIN",
        slack_api_url=api_url,
        slack_bot_token=TOKEN,
        slack_signing_secret=SECRET,
    )
    ctx = build_context(settings, clock=lambda: NOW)
    lease_ids = [_pending(ctx.lab, n) for n in range(CLIENTS * PER_CLIENT + 1)]
    with local_server(create_app(ctx), settings.slack_signing_secret) as url:
        yield url, lease_ids
        ctx.settle(120)
    ctx.shutdown()
    ctx.lab.db.dispose()


def _pending(lab, n: int) -> int:
    answer = RequestInput(
        project="bench",
        repo_url="https://github.com/example/bench",
        purpose="benchmark",
        plan="t1.small.x86",
        metro="ams1",
        count=1,
        duration=timedelta(hours=2),
    )
    return request(lab, f"U{n:05d}", answer, NOW).lease_id


@contextmanager
def _bare(api_url: str) -> Iterator[str]:
    """The floor: bolt, the same server, listeners that only ack."""
    app, pool = _bare_app(api_url)
    with local_server(app, SECRET) as url:
        yield url
    pool.shutdown(wait=True)


def _bare_app(api_url: str) -> tuple[App, TrackedPool]:
    pool = TrackedPool(LISTENER_THREADS, "bare")
    app = App(
        client=WebClient(token=TOKEN, base_url=api_url),
        signing_secret=SECRET,
        process_before_response=False,
        listener_executor=pool,
    )
    app.command("/lab")(lambda ack: ack())
    app.action(re.compile(".*"))(lambda ack: ack())
    return app, pool


@contextmanager
def _labbot_served(
    api_url: str,
    responses: str,
    database_url: str,
    workers: int,
    prepare: Callable[[Lab, int], dict[str, str]] | None = None,
) -> Iterator[str]:
    """`labbot serve` as an operator starts it, on a new database (SQLite or PostgreSQL) where
    each client has a lease for `/lab list` to show. `prepare(lab, port)` adds what another
    benchmark needs to the database first, and returns the settings it needs
    (benchmarks.activity: the public URL)."""
    port = _free_port()
    more: dict[str, str] = {}
    with _lab_on(database_url) as lab:
        for n in range(CLIENTS * PER_CLIENT):
            _pending(lab, n)
        if prepare is not None:
            more = prepare(lab, port)
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": api_url,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "LABBOT_PENDING_PER_USER": str(CLIENTS * PER_CLIENT),
        "LABBOT_SWEEP_INTERVAL": "1m",
        "LABBOT_LOG_FORMAT": "text",
        **more,
    }
    for name in ("SLACK_APP_TOKEN", "PROMETHEUS_MULTIPROC_DIR", "LABBOT_CONFIG"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        yield _when_up(port, process)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


@contextmanager
def _lab_on(database_url: str) -> Iterator:
    db = Database(database_url)
    upgrade(db)
    try:
        yield make_lab(db, FixedClock(NOW), Policy(pending_per_user=CLIENTS * PER_CLIENT))
    finally:
        db.dispose()


@contextmanager
def _bare_served(api_url: str, workers: int) -> Iterator[str]:
    """The bare App under gunicorn with the same workers and threads as `labbot serve`."""
    port = _free_port()
    process = get_context("spawn").Process(
        target=_serve_bare, args=(api_url, port, workers), daemon=True
    )
    process.start()
    try:
        yield _when_up(port, process)
    finally:
        process.terminate()  # SIGTERM: gunicorn's arbiter drains its workers and exits
        process.join(60)


def _serve_bare(api_url: str, port: int, workers: int) -> None:
    class Bare(BaseApplication):
        def load_config(self) -> None:
            for key, value in {
                "bind": f"127.0.0.1:{port}",
                "workers": workers,
                "worker_class": "gthread",
                "threads": HTTP_THREADS,
                "accesslog": None,
                "loglevel": "warning",
            }.items():
                self.cfg.set(key, value)
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)

        def load(self):
            return wsgi_app(_bare_app(api_url)[0], SECRET)

    Bare().run()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _when_up(port: int, process) -> str:
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not _alive(process):
            raise RuntimeError("the server under test exited during start-up")
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return f"{base}{EVENTS_PATH}"
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.2)
    raise RuntimeError("the server under test did not come up within 60 s")


def _alive(process) -> bool:
    return process.poll() is None if isinstance(process, subprocess.Popen) else process.is_alive()


def _alternating(labbot_url: str, bare_url: str, responses: str) -> tuple[list, list]:
    """Rounds of `/lab list` against each server in turn, both up throughout, so that a burst
    of load from elsewhere on the machine falls on both alike. One unmeasured round each
    first: every worker pays its first-request costs in it."""
    _run(labbot_url, responses, _list)
    _run(bare_url, responses, _list)
    labbot: list[float] = []
    bare: list[float] = []
    for _ in range(ROUNDS):
        labbot += _run(labbot_url, responses, _list)
        bare += _run(bare_url, responses, _list)
    return labbot, bare


def _measure(url: str, responses: str, lease_ids: list[int]) -> dict[str, list[float]]:
    """Each kind is sent once from one client first, unmeasured: the first request of a kind
    pays for imports, compiled queries and pooled connections, which no later one does."""
    sends: dict[str, Send] = {"/lab list": _list, "Approve click": partial(_approve, lease_ids)}
    sender = SlackSender(url, SECRET, response_url_base=responses)
    _list(sender, 0).raise_for_status()
    _approve([lease_ids[-1]], sender, 0).raise_for_status()
    return {name: _run(url, responses, send) for name, send in sends.items()}


def _list(sender: SlackSender, i: int) -> requests.Response:
    return sender.slash_command(text="list", user_id=f"U{i:05d}")


def _approve(lease_ids: list[int], sender: SlackSender, i: int) -> requests.Response:
    lease = str(lease_ids[i])
    return sender.block_action(f"{cards.APPROVE}:{lease}", lease, REVIEWER, channel_id="C0REVIEW")


def _run(url: str, responses: str, send: Send) -> list[float]:
    """The clients run in a separate process, so they do not compete with the server for
    this process's GIL (Slack's requests come from elsewhere too)."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as clients:
        return clients.submit(_clients, url, responses, send).result()


def _clients(url: str, response_url_base: str, send: Send) -> list[float]:
    sender = SlackSender(url, SECRET, response_url_base=response_url_base)

    def client(c: int) -> list[float]:
        latencies = []
        for k in range(PER_CLIENT):
            started = time.perf_counter()
            answer = send(sender, c * PER_CLIENT + k)
            latencies.append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
        return latencies

    with ThreadPoolExecutor(CLIENTS) as threads:
        return [ms for batch in threads.map(client, range(CLIENTS)) for ms in batch]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return statistics.median(samples), cuts[98]


if __name__ == "__main__":
    raise SystemExit(main())
