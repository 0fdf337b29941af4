"""Ack latency of labbot's bolt App under 32 concurrent clients, against a bare bolt App.

Both Apps are served the same way (the in-process threaded WSGI server of bot.serve, the Web
API on FakeSlack in a process of its own, the clients in another) and sent correctly signed
requests over HTTP. Measured: the time from sending a request to its HTTP answer, for
`/lab list` and for an Approve click on a reviewer card (whose real work, provisioning, goes on
after the ack). Targets: p99 < 100 ms and p99 within 2x of
the bare App's.

    python -m benchmarks.slack_ack
"""

from __future__ import annotations

import re
import statistics
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
from slack_bolt import App
from slack_sdk import WebClient

from benchmarks.common import serve_forever, served_elsewhere
from bot.app import LISTENER_THREADS, TrackedPool, build_context, create_app
from bot.blocks import cards
from bot.serve import local_server
from bot.settings import Settings
from commands.policy import Policy, RequestInput, Roles
from commands.request import request
from fakes.slack import FakeSlack
from fakes.slack_sender import SlackSender

CLIENTS = 32
PER_CLIENT = 5
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
    print(f"{CLIENTS} concurrent clients x {PER_CLIENT} requests each, over HTTP on 127.0.0.1")
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
        print(
            f"  p99 < 100 ms: {'yes' if ours[1] < 100 else 'NO'}; "
            f"p99 ratio <= 2: {'yes' if ours[1] / theirs[1] <= 2 else 'NO'}"
        )
    return 0


def _serve_fake_slack(ready: Queue) -> None:
    """The fake Slack Web API, elsewhere as Slack is; says its API base URL and the base of
    the response_urls it serves."""
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
    pool = TrackedPool(LISTENER_THREADS, "bare")
    app = App(
        client=WebClient(token=TOKEN, base_url=api_url),
        signing_secret=SECRET,
        process_before_response=False,
        listener_executor=pool,
    )
    app.command("/lab")(lambda ack: ack())
    app.action(re.compile(".*"))(lambda ack: ack())
    with local_server(app, SECRET) as url:
        yield url
    pool.shutdown(wait=True)


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
