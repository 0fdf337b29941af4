"""`POST /activity`: where the servers' activity reports come in (issue 23, docs/idle.md).

Served by every web process of `labbot serve` beside Slack's endpoint, and built so that no
flood of reports can delay an ack: what a report costs is bounded before it touches the
database, and it never waits for the write lock.

- The size is checked from the headers (at most MAX_BODY bytes) before anything is read.
- The sender's token is rate limited in memory (`Limiter`: a burst of BURST, then one report
  per REFILL_S seconds per token, in each web process) before the database is asked: a flood
  of reports, forged or not, costs a dictionary look-up each and gets 429 with Retry-After.
- The body is read as `commands.activity.ActivityReport`: not JSON, 400; a number out of its
  range or a field it does not know, 422.
- The token is checked with one indexed read (no lock): not the token of a server that is up
  under a live lease, 401. Nothing is written for any refusal.
- A good report is handed to the `Recorder`, whose thread writes what came in over a second
  (GATHER_S) together in one insert, waiting for the write lock at most WRITE_WAIT at a time
  and trying again while the database is busy (a sweep pass on SQLite); the answer, 202, does
  not wait for it. A process that dies loses at most the reports of its last second or so: a
  gap, which reads as "unknown", never as idle. Past QUEUE_LIMIT reports waiting, 503.

The token appears in no log line and no answer.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError

from bot.runtime import Clock
from commands.activity import ActivityReport, record, reporter_of, sample, token_hash
from commands.lab import Lab
from storage.db import Busy

log = logging.getLogger(__name__)

MAX_BODY = 1024  # the reporter sends about 100 bytes
BURST = 3  # reports a server may send at once (a retry after a timeout, a reboot)
REFILL_S = 60.0  # then one report a minute: the timer sends one every five
LIMITED_KEYS = 100_000  # tokens the limiter remembers (the oldest forgotten first)
QUEUE_LIMIT = 10_000  # reports waiting to be written, at most
BATCH = 500  # reports written in one insert, at most
WRITE_WAIT = 0.25  # seconds the recorder waits for the write lock at a time
GATHER_S = 1.0  # reports gathered this long into one insert
RETRY_AFTER_BUSY = 0.5  # seconds before the recorder tries a busy database again

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Limiter:
    """A token bucket per key, in memory: BURST at once, then one per REFILL_S seconds."""

    def __init__(
        self,
        burst: int = BURST,
        refill_s: float = REFILL_S,
        keys: int = LIMITED_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = burst
        self._refill_s = refill_s
        self._keys = keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, key: str) -> float:
        """0 and one report taken from `key`'s bucket, or how many seconds until it has one."""
        now = self._clock()
        with self._lock:
            left, then = self._buckets.pop(key, (float(self._burst), now))
            left = min(float(self._burst), left + (now - then) / self._refill_s)
            wait = 0.0 if left >= 1 else (1 - left) * self._refill_s
            self._buckets[key] = (left - 1 if wait == 0 else left, now)
            while len(self._buckets) > self._keys:
                self._buckets.popitem(last=False)
        return wait


class Recorder:
    """The reports' group commit, off the request threads: a thread writes what has come in
    together, and nobody waits for it."""

    def __init__(self, lab: Lab) -> None:
        self._lab = lab
        self._waiting: queue.Queue[dict[str, object] | None] = queue.Queue(QUEUE_LIMIT)
        self._thread = threading.Thread(target=self._writing, name="activity", daemon=True)
        self._thread.start()

    def put(self, row: dict[str, object]) -> bool:
        """Hand a sample over; False when QUEUE_LIMIT are waiting already."""
        try:
            self._waiting.put_nowait(row)
        except queue.Full:
            return False
        return True

    def _writing(self) -> None:
        batch: list[dict[str, object]] = []
        stopping = False
        while not (stopping and not batch):
            if not batch:
                first = self._waiting.get()
                if first is None:
                    return
                batch.append(first)
            stopping = self._gather(batch, time.monotonic() + GATHER_S) or stopping
            try:
                record(self._lab, batch, wait=WRITE_WAIT)
            except Busy:
                if not stopping:
                    time.sleep(RETRY_AFTER_BUSY)  # the batch is kept, and grows meanwhile
                    continue
                log.warning("%d activity reports not written: the database stayed busy", len(batch))
            except Exception:
                log.exception("%d activity reports could not be written", len(batch))
            batch = []

    def _gather(self, batch: list[dict[str, object]], until: float) -> bool:
        """Add what comes in until `until` (or BATCH are in hand): one write a GATHER_S, not
        one a report, so the reports take the write lock as rarely as the acks' inbox does.
        True when told to stop meanwhile."""
        while len(batch) < BATCH:
            try:
                row = self._waiting.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                return False
            if row is None:
                return True
            batch.append(row)
        return False

    def stop(self) -> None:
        """Write what is waiting, then stop."""
        while True:
            try:
                self._waiting.put(None, timeout=1)
                break
            except queue.Full:
                continue
        self._thread.join(timeout=10)


def activity_endpoint(lab: Lab, clock: Clock, recorder: Recorder, limiter: Limiter) -> Wsgi:
    """The WSGI application for `POST /activity` (bot.serve routes the path here)."""

    def endpoint(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status, sentence, headers = _answer(lab, clock, recorder, limiter, environ)
        body = (sentence + "\n").encode()
        start_response(
            status,
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                *headers,
            ],
        )
        return [body]

    return endpoint


Answer = tuple[str, str, list[tuple[str, str]]]


def _answer(
    lab: Lab, clock: Clock, recorder: Recorder, limiter: Limiter, environ: dict[str, Any]
) -> Answer:
    if environ.get("REQUEST_METHOD") != "POST":
        return "405 Method Not Allowed", "POST a report here.", [("Allow", "POST")]
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return "411 Length Required", "Send the report's Content-Length.", []
    if length > MAX_BODY or length < 0:
        return "413 Content Too Large", f"A report is at most {MAX_BODY} bytes.", []
    token = _bearer(environ.get("HTTP_AUTHORIZATION") or "")
    if token is None:
        return "401 Unauthorized", _UNKNOWN_TOKEN, [("WWW-Authenticate", "Bearer")]
    wait = limiter.wait(token_hash(token))
    if wait > 0:
        retry = str(max(1, round(wait)))
        return (
            "429 Too Many Requests",
            "Too many reports; one every 5 minutes.",
            [("Retry-After", retry)],
        )
    report = _report(environ["wsgi.input"].read(length))
    if isinstance(report, tuple):
        return report
    reporter = reporter_of(lab, token)
    if reporter is None:
        log.info("refused an activity report: its token is not a live server's")
        return "401 Unauthorized", _UNKNOWN_TOKEN, [("WWW-Authenticate", "Bearer")]
    if not recorder.put(sample(reporter, report, clock())):
        return (
            "503 Service Unavailable",
            "Too many reports waiting; try later.",
            [("Retry-After", "60")],
        )
    return "202 Accepted", "Thanks.", []


_UNKNOWN_TOKEN = "That token belongs to no server of a live lease."


def _bearer(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200 or not token.isascii():
        return None
    return token


def _report(raw: bytes) -> ActivityReport | Answer:
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "400 Bad Request", "A report is a JSON object.", []
    if not isinstance(document, dict):
        return "400 Bad Request", "A report is a JSON object.", []
    try:
        return ActivityReport.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(map(str, first["loc"])) or "the report"
        return "422 Unprocessable Content", f"{where}: {first['msg']}.", []
