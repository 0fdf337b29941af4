"""`/metrics` for Prometheus.

Two kinds of figure, each counted where it can be counted correctly when labbot runs as several
web worker processes, a sweeper process, and several replicas:

- What the lab looks like (leases and servers by state, each month's books, sweep lag, outbox
  depth and age, quarantines) is read from the database when Prometheus scrapes, by a custom
  collector: any process of any replica gives the same answer.
- What a process did (provider and Slack calls, their latency and errors, sweep durations) is
  counted in prometheus_client's multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (as
  `labbot serve` sets it): each process writes its own files in that directory and a scrape of
  any worker adds them all up. Without it (the demo, the in-process tests) they are ordinary
  in-memory counters.

Calls are counted at the boundary (the Provider and the Notifier), by wrappers around whichever
backend runs, so no backend knows about metrics.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _render
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from commands.gauges import Gauges, gauges
from commands.lab import Lab
from commands.log_context import about_lease
from commands.notices import Message, Notifier, Rate, Throttled
from metal.provider import Catalog, Device, DeviceSpec, Provider

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

PROVIDER_CALLS = Counter(
    "labbot_provider_calls",
    "Calls to the provider's API, by call and outcome (ok or error).",
    ["provider", "call", "outcome"],
    registry=None,
)
PROVIDER_SECONDS = Histogram(
    "labbot_provider_call_seconds",
    "How long provider calls took.",
    ["provider", "call"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=None,
)
SLACK_CALLS = Counter(
    "labbot_slack_deliveries",
    "Messages handed to Slack by the notifier, by kind and outcome (ok, throttled: Slack "
    "answered 429, or error).",
    ["kind", "outcome"],
    registry=None,
)
SLACK_SECONDS = Histogram(
    "labbot_slack_delivery_seconds",
    "How long a delivery to Slack took.",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=None,
)
SWEEP_SECONDS = Histogram(
    "labbot_sweep_seconds",
    "How long a sweep pass took.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=None,
)
SWEEPS = Counter(
    "labbot_sweeps", "Sweep passes, by outcome (ok or error).", ["outcome"], registry=None
)
COUNTED = (PROVIDER_CALLS, PROVIDER_SECONDS, SLACK_CALLS, SLACK_SECONDS, SWEEP_SECONDS, SWEEPS)


@contextmanager
def _timed(calls: Counter, seconds: Histogram, **labels: str) -> Iterator[None]:
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    except Throttled:
        outcome = "throttled"
        raise
    finally:
        seconds.labels(**labels).observe(time.perf_counter() - started)
        calls.labels(outcome=outcome, **labels).inc()


@contextmanager
def sweep_timer() -> Iterator[None]:
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        SWEEP_SECONDS.observe(time.perf_counter() - started)
        SWEEPS.labels(outcome=outcome).inc()


class CountedProvider:
    """A Provider that counts and times every call of the one it wraps."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name
        self.max_batch = inner.max_batch

    def _call(self, call: str, fn: Callable[..., Any], *args: Any) -> Any:
        with _timed(PROVIDER_CALLS, PROVIDER_SECONDS, provider=self.name, call=call):
            return fn(*args)

    def catalog(self) -> Catalog:
        return self._call("catalog", self.inner.catalog)

    def create(self, spec: DeviceSpec) -> Device:
        return self._call("create", self.inner.create, spec)

    def create_many(self, specs: Sequence[DeviceSpec]) -> list[Device | Exception]:
        return self._call("create_many", self.inner.create_many, specs)

    def get(self, device_id: str) -> Device | None:
        return self._call("get", self.inner.get, device_id)

    def delete(self, device_id: str) -> None:
        self._call("delete", self.inner.delete, device_id)

    def delete_many(self, device_ids: Sequence[str]) -> list[Exception | None]:
        return self._call("delete_many", self.inner.delete_many, device_ids)

    def list(self, tag: str) -> list[Device]:
        return self._call("list", self.inner.list, tag)

    def capacity(self, plan: str, metro: str, quantity: int) -> bool | None:
        return self._call("capacity", self.inner.capacity, plan, metro, quantity)

    def set_backstop(self, tag: str, metro: str, when: datetime, device_ids: Sequence[str]) -> None:
        self._call("set_backstop", self.inner.set_backstop, tag, metro, when, device_ids)

    def verify(self) -> None:
        self._call("verify", self.inner.verify)


class CountedNotifier:
    """A Notifier that counts and times every delivery of the one it wraps; what is logged
    while delivering carries the notice's lease."""

    def __init__(self, inner: Notifier) -> None:
        self.inner = inner

    def lanes(self, message: Message) -> tuple[Rate, ...]:
        return self.inner.lanes(message)

    def deliver(self, message: Message) -> str | None:
        with (
            about_lease(message.lease_id),
            _timed(SLACK_CALLS, SLACK_SECONDS, kind=str(message.kind)),
        ):
            return self.inner.deliver(message)


class LabCollector(Collector):
    """The lab's state, read from the database at scrape time."""

    def __init__(self, lab: Lab, clock: Callable[[], datetime]) -> None:
        self.lab = lab
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("labbot_database_up", "1 when the database answered this scrape.")
        try:
            figures = gauges(self.lab, self.clock())
        except (SQLAlchemyError, OSError):
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _families(figures)


def _families(g: Gauges) -> Iterator[Metric]:
    yield _labelled("labbot_leases", "Leases by state.", "state", g.leases)
    yield _labelled("labbot_servers", "Servers by state.", "state", g.servers)
    for kind in ("granted", "spent", "committed", "available"):
        yield _labelled(
            f"labbot_credit_{kind}_cents",
            f"The lab's {kind} credit per month, in cents.",
            "month",
            {month: getattr(line, kind) for month, line in g.credit.items()},
        )
        donors = GaugeMetricFamily(
            f"labbot_donor_credit_{kind}_cents",
            f"Each donor's {kind} credit per month, in cents (when several donors give).",
            labels=["month", "donor"],
        )
        for (month, donor), line in sorted(g.donor_credit.items()):
            donors.add_metric([month, donor], getattr(line, kind))
        yield donors
    yield _single(
        "labbot_sweep_lag_seconds", "How long the oldest due lease has waited.", g.sweep_lag_s
    )
    if g.last_sweep_age_s is not None:
        yield _single(
            "labbot_last_sweep_age_seconds",
            "Time since the last completed sweep (any process, any replica).",
            g.last_sweep_age_s,
        )
    yield _single("labbot_outbox_depth", "Notices not yet delivered.", g.outbox_depth)
    yield _single(
        "labbot_outbox_age_seconds", "Age of the oldest undelivered notice.", g.outbox_age_s
    )
    yield _single("labbot_quarantined_leases", "Leases whose deletes keep failing.", g.quarantined)
    yield _labelled(
        "labbot_idle_server_hours",
        "Server-hours each project's servers were idle this month (docs/idle.md).",
        "project",
        g.idle_server_hours,
    )


def _labelled(
    name: str, doc: str, label: str, values: dict[str, int] | dict[str, float]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _single(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def registry_for(lab: Lab, clock: Callable[[], datetime]) -> CollectorRegistry:
    """What a scrape of this process reports: the lab's state, and the counters of every
    labbot process (multiprocess mode) or of this one."""
    registry = CollectorRegistry()
    registry.register(LabCollector(lab, clock))
    if os.environ.get(MULTIPROC_DIR):
        MultiProcessCollector(registry)
    else:
        for metric in COUNTED:
            registry.register(metric)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return _render(registry)
