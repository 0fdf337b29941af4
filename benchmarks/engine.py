"""The lease engine on SQLite: does the sweep's cost follow the work that is due, and how fast
do approvals go, alone and from 8 threads at once?

1. Sweep: the same 1,000 due leases, once alone in a table and once among 99,000 other leases
   (years of history: reclaimed, denied, expired and cancelled requests with their deleted
   servers, audit events and delivered notices, plus live leases and pending requests that are
   not due yet). `commands.sweep.sweep` is called until nothing is due (it takes BATCH=500
   leases a call) on a fresh copy of each database; median of 3. Targets: 100k / 1k <= 1.5,
   and the 100k drain in at most 3 s.
   Then: which phase of the sweep and which SQL grew, what one approval costs on each table,
   and what the stock simulated provider's `list(tag)` would add.
2. Approvals: `commands.review.approve` of N pending requests, one thread and then 8 threads
   taking distinct leases from a queue. That is the real approval path: the credit check inside
   `BEGIN IMMEDIATE`, the conditional UPDATE, the notices, and provisioning through the
   simulated provider (server rows, device create, first poll) and notice delivery.
3. Contention: 8 threads approving the same lease at once, 200 rounds; exactly one may win.
4. The books with 10 and with 1,000 live leases among 100,000 leases of history: the books'
   part of an approval (credit check, overrides, holds; target >= 200/s at 1,000 live and a
   1,000/10 cost ratio <= 1.2), approve() end to end, `credit_report` and App Home's view
   (ratio <= 1.2), and the reference computation (every live lease, as the previous release
   read them) beside them. Both databases are measured in turns in one run.

Databases are built as the previous release wrote them (schema 0001) and upgraded by the
migrations, so live leases carry the holds an upgraded lab has.

Tables are built with one executemany per table into a temporary SQLite file and copied byte
for byte for each run, since a sweep or an approval changes what it touches.
"""

from __future__ import annotations

import functools
import json
import random
import re
import sqlite3
import textwrap
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from queue import Empty, Queue

from sqlalchemy import DateTime, event, func, select, text

import commands.notices
import commands.review
import commands.sweep
from benchmarks.common import (
    FixedClock,
    copy_database,
    heading,
    make_lab,
    median,
    new_database,
    note,
    open_database,
    remove_database,
    row,
    seal,
    seconds,
    section,
    target_row,
    timed,
    workdir,
)
from commands.billing import cost_by_month, month_key
from commands.holds import refresh_exactness
from commands.lab import Lab
from commands.policy import Policy
from commands.review import approve
from commands.sweep import BATCH, due_leases, sweep
from metal.catalog import SEED_METROS, SEED_OSES, SEED_PLANS
from storage.db import Database
from storage.models import (
    AuditEvent,
    CreditHold,
    Lease,
    Notice,
    SentReminder,
    Server,
    ServerSpend,
    SimDevice,
)
from storage.schema import upgrade

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

TOTAL_LEASES = 100_000
DUE_LEASES = 1_000
DUE_ID_BASE = TOTAL_LEASES - DUE_LEASES  # due leases are the newest: ids 99,001..100,000
DUE_SERVER_ID_BASE = 5_000_000  # explicit server ids, so both databases hold identical rows
REPEATS = 3
SWEEP_TARGET = 1.5
SWEEP_SECONDS = 3.0
# Live leases among the history whose next deadline is in the future (~300 servers running).
LIVE_HISTORY = 100
WARM_UP = set(range(DUE_ID_BASE + 1, DUE_ID_BASE + 21))
SIZE_APPROVALS = 6

APPROVALS = 160
THREADS = 8
CONTENTION_ROUNDS = 200

# Credit high enough that no approval is refused and no credit alert fires in either database:
# the sweep comparison then measures the same work on both sides.
RICH = Policy(monthly_credit_cents=1_000_000_000)

REVIEWERS = tuple(f"U0REVIEW{n}" for n in range(THREADS))
ADMINS = ("U0ADMIN",)

PROJECTS = [
    "kubernetes",
    "coredns",
    "envoy",
    "prometheus",
    "fluentd",
    "linkerd",
    "grpc",
    "containerd",
    "rkt",
    "cni",
    "notary",
    "tuf",
    "jaeger",
    "opentracing",
    "vitess",
    "nats",
    "helm",
    "rook",
    "harbor",
    "etcd",
    "opa",
    "spiffe",
    "spire",
    "cortex",
    "thanos",
    "falco",
    "argo",
    "flux",
    "dragonfly",
    "tikv",
    "longhorn",
    "cilium",
    "keda",
    "crossplane",
    "backstage",
    "istio",
    "knative",
    "openebs",
    "kubevirt",
    "chaos-mesh",
]
PLANS = {p.slug: p for p in SEED_PLANS}
PLAN_WEIGHTS = {
    "t1.small.x86": 30,
    "c1.small.x86": 35,
    "m1.xlarge.x86": 10,
    "c1.large.arm": 15,
    "c1.xlarge.x86": 10,
}
METROS = tuple(SEED_METROS)
COUNTS = (1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 6, 8)
DURATIONS_H = (4, 8, 24, 24, 48, 48, 48, 72, 96, 168, 168, 336)


def _lab(db: Database) -> Lab:
    return make_lab(db, FixedClock(NOW), RICH, frozenset(REVIEWERS), frozenset(ADMINS))


# ------------------------------------------------------------------------------------------
# Building tables in bulk
# ------------------------------------------------------------------------------------------
@dataclass
class Rows:
    """Rows for every table, inserted in bulk with one executemany per table."""

    leases: list[dict] = field(default_factory=list)
    servers: list[dict] = field(default_factory=list)
    audit: list[dict] = field(default_factory=list)
    notices: list[dict] = field(default_factory=list)
    reminders: list[dict] = field(default_factory=list)
    devices: list[dict] = field(default_factory=list)
    kinds: dict[int, str] = field(default_factory=dict)  # lease id -> what makes it due

    def subset(self, lease_ids: set[int]) -> Rows:
        servers = [r for r in self.servers if r["lease_id"] in lease_ids]
        devices = {r["provider_id"] for r in servers}
        return Rows(
            leases=[r for r in self.leases if r["id"] in lease_ids],
            servers=servers,
            audit=[r for r in self.audit if r["lease_id"] in lease_ids],
            notices=[r for r in self.notices if r["lease_id"] in lease_ids],
            reminders=[r for r in self.reminders if r["lease_id"] in lease_ids],
            devices=[r for r in self.devices if r["id"] in devices],
            kinds={i: k for i, k in self.kinds.items() if i in lease_ids},
        )

    def spend(self) -> list[dict]:
        """What each deleted server billed per month, as the engine writes it when it confirms
        a server gone: the books read history from these rows."""
        projects = {lease["id"]: lease["project"] for lease in self.leases}
        return [
            {
                "server_id": server["id"],
                "month": month,
                "lease_id": server["lease_id"],
                "project": projects[server["lease_id"]],
                "cents": cents,
            }
            for server in self.servers
            if "id" in server and server["active_at"] and server["deleted_at"]
            for month, cents in cost_by_month(
                server["active_at"], server["deleted_at"], 1, server["hourly_cents"]
            ).items()
        ]

    def insert_into(self, db: Database) -> None:
        tables = (
            (Lease, self.leases),
            (Server, self.servers),
            (ServerSpend, self.spend()),
            (SentReminder, self.reminders),
            (AuditEvent, self.audit),
            (Notice, self.notices),
            (SimDevice, self.devices),
        )
        with db.engine.begin() as conn:
            for model, rows in tables:
                if rows:
                    _insert(conn, model.__table__, rows)


def _insert(conn, table, rows: list[dict]) -> None:
    """One raw executemany per table: SQLAlchemy's per-value type processing would cost more
    than SQLite's own work on a few hundred thousand rows."""
    columns = list(rows[0])
    dates = [n for n, c in enumerate(columns) if _is_datetime(table.c[c].type)]
    pick = itemgetter(*columns)
    values = []
    for r in rows:
        v = list(pick(r))
        for n in dates:
            if v[n] is not None:
                v[n] = _stored(v[n])
        values.append(tuple(v))
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" * len(columns))
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", values)


def _is_datetime(type_: object) -> bool:
    return isinstance(getattr(type_, "impl", type_), DateTime)


def _stored(at: datetime) -> str:
    """A datetime as SQLAlchemy stores it in SQLite: UTC, 'YYYY-MM-DD HH:MM:SS.ffffff', so
    rows written here compare and load exactly like rows the ORM writes."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    text = str(at)  # 'YYYY-MM-DD HH:MM:SS[.ffffff]+00:00'
    return text[:26] if len(text) == 32 else text[:19] + ".000000"


def _lease(lease_id: int, rng: random.Random, created_at: datetime, **values) -> dict:
    project = rng.choice(PROJECTS)
    plan = rng.choices(list(PLAN_WEIGHTS), weights=list(PLAN_WEIGHTS.values()))[0]
    hours = rng.choice(DURATIONS_H)
    row = {
        "id": lease_id,
        "state": "pending",
        "version": 0,
        "owner": f"U{rng.randrange(1, 3000):07d}",
        "project": project,
        "repo_url": f"https://github.com/{project}/{project}",
        "purpose": "scale and performance tests on bare metal",
        "plan": plan,
        "metro": rng.choice(METROS),
        "os": rng.choice(SEED_OSES),
        "count": rng.choice(COUNTS),
        "duration_s": hours * 3600,
        "extended_s": 0,
        "ssh_key": "",
        "allow_partial": False,
        "hourly_cents": PLANS[plan].hourly_cents,
        "created_at": created_at,
        "decide_by": created_at + RICH.decide_within,
        "decided_by": None,
        "decided_at": None,
        "reason": "",
        "starts_at": None,
        "ends_at": None,
        "ended_at": None,
        "due_at": None,
        "backstop_at": None,
        "writeup_url": None,
        "flagged": "",
    }
    row.update(values)
    return row


def _server(lease: dict, n: int, server_id: int | None = None, **values) -> dict:
    row = {
        "lease_id": lease["id"],
        "hostname": f"{lease['project']}-{lease['id']}-{n}",
        "plan": lease["plan"],
        "metro": lease["metro"],
        "state": "deleted",
        "provider_id": None,
        "ips": "",
        "hourly_cents": lease["hourly_cents"],
        "active_at": None,
        "deleted_at": None,
        "create_attempts": 1,
        "delete_attempts": 0,
        "retry_at": None,
        "last_error": "",
    }
    if server_id is not None:
        row["id"] = server_id
    row.update(values)
    return row


def _audit(lease_id: int, at: datetime, actor: str, action: str, outcome: str = "ok") -> dict:
    return {
        "at": at,
        "actor": actor,
        "action": action,
        "lease_id": lease_id,
        "outcome": outcome,
        "details": "",
    }


def _card(lease: dict) -> dict:
    """The delivered review card (its ref is what a decision updates in place)."""
    return {
        "kind": "review_card",
        "lease_id": lease["id"],
        "audience": "review",
        "payload": json.dumps({"text": f"request #{lease['id']}"}),
        "created_at": lease["created_at"],
        "retry_at": None,
        "attempts": 1,
        "delivered_at": lease["created_at"],
        "ref": f"ts-{lease['id']}",
        "last_error": "",
    }


def _device(server: dict, lease: dict, created_at: datetime) -> dict:
    return {
        "id": server["provider_id"],
        "hostname": server["hostname"],
        "plan": server["plan"],
        "metro": server["metro"],
        "os": lease["os"],
        "tags": json.dumps(["labbot", f"lease-{lease['id']}"]),
        "created_at": created_at,
        "ready_at": created_at + timedelta(seconds=120),
        "termination_time": lease["backstop_at"],
        "fails": False,
        "deleted_at": None,
        "delete_failures_left": 0,
    }


def _device_id(server_id: int, hostname: str) -> str:
    # The simulated provider's format: sim-<HHMMSS>-<n>-<hostname>.
    return f"sim-000000-{server_id}-{hostname}"


def _backstop(ends_at: datetime) -> datetime:
    """Where the provider-side deletion backstop sits: a day past the end plus grace."""
    return ends_at + RICH.grace + DAY


def _running(
    rows: Rows,
    lease: dict,
    starts_at: datetime,
    ends_at: datetime,
    next_server_id: Callable[[], int],
) -> None:
    """An active lease: its servers running since `starts_at`, their devices live."""
    lease.update(
        state="active",
        decided_by=REVIEWERS[0],
        decided_at=starts_at - timedelta(minutes=10),
        starts_at=starts_at,
        ends_at=ends_at,
        duration_s=int((ends_at - starts_at).total_seconds()),
        backstop_at=_backstop(ends_at),
    )
    for n in range(1, lease["count"] + 1):
        server_id = next_server_id()
        hostname = f"{lease['project']}-{lease['id']}-{n}"
        server = _server(
            lease,
            n,
            server_id,
            state="active",
            provider_id=_device_id(server_id, hostname),
            ips=f"147.75.{server_id % 200}.{n}",
            active_at=starts_at,
        )
        rows.servers.append(server)
        rows.devices.append(_device(server, lease, starts_at - timedelta(minutes=3)))
    rows.audit += [
        _audit(lease["id"], lease["created_at"], lease["owner"], "request"),
        _audit(lease["id"], lease["decided_at"], REVIEWERS[0], "approve"),
        _audit(lease["id"], starts_at, "system", "active"),
    ]
    rows.notices.append(_card(lease))


def due_rows() -> tuple[Rows, Counter]:
    """The 1,000 due leases, identical in both databases (fixed seed, explicit ids):
    requests past their decision deadline, active leases whose 24h reminder is due, active
    leases past their end (expire and delete), provisioning leases whose devices are up (poll),
    and approved leases waiting to be provisioned."""
    rng = random.Random(1000)
    kinds = ["expire_request"] * 350 + ["remind"] * 350 + ["expire"] * 150
    kinds += ["poll"] * 100 + ["provision"] * 50
    rng.shuffle(kinds)
    rows = Rows()
    server_ids = iter(range(DUE_SERVER_ID_BASE, DUE_SERVER_ID_BASE + 100_000))
    for offset, kind in enumerate(kinds, start=1):
        lease_id = DUE_ID_BASE + offset
        if kind == "expire_request":
            created = NOW - RICH.decide_within - timedelta(minutes=rng.uniform(1, 240))
            lease = _lease(lease_id, rng, created)
            lease["due_at"] = lease["decide_by"]
            rows.audit.append(_audit(lease_id, created, lease["owner"], "request"))
            rows.notices.append(_card(lease))
        elif kind == "remind":
            starts = NOW - timedelta(hours=rng.uniform(24, 144))
            ends = NOW + timedelta(hours=rng.uniform(1.5, 23.5))
            lease = _lease(lease_id, rng, starts - timedelta(hours=rng.uniform(1, 30)))
            _running(rows, lease, starts, ends, lambda: next(server_ids))
            lease["due_at"] = ends - timedelta(hours=24)
        elif kind == "expire":
            starts = NOW - timedelta(hours=rng.uniform(48, 240))
            ends = NOW - RICH.grace - timedelta(minutes=rng.uniform(1, 300))
            lease = _lease(lease_id, rng, starts - timedelta(hours=rng.uniform(1, 30)))
            _running(rows, lease, starts, ends, lambda: next(server_ids))
            lease["due_at"] = ends + RICH.grace
            for offset_s, before in ((86_400, DAY), (3_600, HOUR)):
                rows.reminders.append(
                    {"lease_id": lease_id, "offset_s": offset_s, "sent_at": ends - before}
                )
        elif kind == "poll":
            decided = NOW - timedelta(minutes=rng.uniform(3, 20))
            lease = _lease(
                lease_id,
                rng,
                decided - timedelta(hours=rng.uniform(1, 30)),
                state="provisioning",
                decided_by=REVIEWERS[1],
                decided_at=decided,
                due_at=NOW - timedelta(seconds=rng.uniform(0, 30)),
            )
            planned_end = decided + RICH.provision_timeout + timedelta(seconds=lease["duration_s"])
            lease["backstop_at"] = _backstop(planned_end)
            for n in range(1, lease["count"] + 1):
                server_id = next(server_ids)
                hostname = f"{lease['project']}-{lease_id}-{n}"
                server = _server(
                    lease,
                    n,
                    server_id,
                    state="provisioning",
                    provider_id=_device_id(server_id, hostname),
                )
                rows.servers.append(server)
                rows.devices.append(_device(server, lease, decided + timedelta(seconds=5)))
            rows.audit.append(_audit(lease_id, decided, REVIEWERS[1], "approve"))
            rows.notices.append(_card(lease))
        else:  # provision
            decided = NOW - timedelta(seconds=rng.uniform(1, 60))
            lease = _lease(
                lease_id,
                rng,
                decided - timedelta(hours=rng.uniform(1, 30)),
                state="approved",
                decided_by=REVIEWERS[2],
                decided_at=decided,
                due_at=decided,
            )
            rows.audit.append(_audit(lease_id, decided, REVIEWERS[2], "approve"))
            rows.notices.append(_card(lease))
        rows.leases.append(lease)
        rows.kinds[lease_id] = kind
    return rows, Counter(kinds)


def history_rows(count: int, live: int = LIVE_HISTORY) -> tuple[Rows, Counter]:
    """Leases that are not due: mostly years of terminal history (with deleted servers,
    audit events and a delivered review card each), plus live leases whose next deadline is
    in the future and pending requests still inside their decision window."""
    rng = random.Random(99)
    waiting = 200
    kinds = ["active"] * live + ["pending"] * waiting
    kinds += rng.choices(
        ["reclaimed", "denied", "expired_request", "cancelled", "failed"],
        weights=[70, 12, 7, 6, 5],
        k=count - live - waiting,
    )
    ages = {
        "active": lambda: timedelta(hours=rng.uniform(2, 96)),
        "pending": lambda: timedelta(hours=rng.uniform(0.1, 70)),
    }
    stamped = []
    for kind in kinds:
        age = ages.get(kind, lambda: timedelta(days=rng.uniform(1, 900)))()
        stamped.append((NOW - age, kind))
    stamped.sort()  # ids grow with time, as they do in a real table
    rows = Rows()
    server_id = 0

    def next_server_id() -> int:
        nonlocal server_id
        server_id += 1
        return server_id

    for lease_id, (created, kind) in enumerate(stamped, start=1):
        lease = _lease(lease_id, rng, created)
        decided = created + timedelta(minutes=rng.uniform(5, 2 * 24 * 60))
        rows.audit.append(_audit(lease_id, created, lease["owner"], "request"))
        rows.notices.append(_card(lease))
        if kind == "pending":
            lease["due_at"] = lease["decide_by"]
        elif kind == "active":
            starts = NOW - (NOW - created) / 2
            ends = NOW + timedelta(hours=rng.uniform(25, 200))
            rows.audit.pop()
            rows.notices.pop()
            _running(rows, lease, starts, ends, next_server_id)
            lease["due_at"] = ends - timedelta(hours=24)
        elif kind == "denied":
            lease.update(
                state="denied", decided_by=REVIEWERS[3], decided_at=decided, reason="not OSS"
            )
            rows.audit.append(_audit(lease_id, decided, REVIEWERS[3], "deny"))
        elif kind == "cancelled":
            lease.update(state="cancelled", decided_at=decided)
            rows.audit.append(_audit(lease_id, decided, lease["owner"], "cancel"))
        elif kind == "expired_request":
            lease.update(state="expired_request", decided_at=lease["decide_by"])
            rows.audit.append(_audit(lease_id, lease["decide_by"], "system", "expire_request"))
        elif kind == "failed":
            gave_up = min(decided + timedelta(hours=2), NOW - HOUR)
            lease.update(
                state="failed",
                decided_by=REVIEWERS[4],
                decided_at=decided,
                ended_at=gave_up,
                reason="the provider could not create the servers",
            )
            for n in range(1, lease["count"] + 1):
                sid = next_server_id()
                rows.servers.append(
                    _server(
                        lease,
                        n,
                        sid,
                        provider_id=_device_id(sid, f"{lease['project']}-{lease_id}-{n}"),
                        deleted_at=gave_up,
                        create_attempts=3,
                        last_error="device failed provisioning",
                    )
                )
            rows.audit.append(_audit(lease_id, gave_up, "system", "failed"))
        else:  # reclaimed
            starts = decided + timedelta(minutes=rng.uniform(3, 15))
            planned = timedelta(seconds=lease["duration_s"])
            early = rng.random() < 0.3
            ended = starts + (planned * rng.uniform(0.2, 0.95) if early else planned + HOUR)
            ended = min(ended, NOW - timedelta(minutes=rng.uniform(10, 600)))
            ended = max(ended, starts + timedelta(minutes=5))
            lease.update(
                state="reclaimed",
                decided_by=REVIEWERS[5],
                decided_at=decided,
                starts_at=starts,
                ends_at=starts + planned,
                ended_at=ended,
                backstop_at=_backstop(starts + planned),
            )
            for n in range(1, lease["count"] + 1):
                sid = next_server_id()
                rows.servers.append(
                    _server(
                        lease,
                        n,
                        sid,
                        provider_id=_device_id(sid, f"{lease['project']}-{lease_id}-{n}"),
                        ips=f"147.75.{sid % 200}.{n}",
                        active_at=starts,
                        deleted_at=ended + timedelta(seconds=rng.uniform(5, 120)),
                    )
                )
            rows.audit.append(_audit(lease_id, decided, REVIEWERS[5], "approve"))
            rows.audit.append(_audit(lease_id, ended, "system", "reclaimed"))
        rows.leases.append(lease)
    if server_id >= DUE_SERVER_ID_BASE:
        raise RuntimeError("history server ids ran into the due leases' explicit ids")
    return rows, Counter(kinds)


def built(path: Path, *rowsets: Rows) -> Database:
    """A database filled in bulk as the previous release (schema 0001) wrote it, then upgraded
    by the migrations (holds computed once) and the holds' exactness noted as the engine does
    when it writes them: what a lab upgraded to this release looks like."""
    path.unlink(missing_ok=True)
    db = Database(f"sqlite:///{path}")
    upgrade(db, to="0001")
    for rows in rowsets:
        rows.insert_into(db)
    upgrade(db, grace=RICH.grace)
    with db.write() as session:
        held = session.scalars(select(CreditHold.lease_id).distinct()).all()
        for lease_id in held:
            refresh_exactness(session, lease_id)
    return db


def table_sizes(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {
            model.__tablename__: conn.execute(select(func.count()).select_from(model)).scalar()
            for model in (Lease, Server, AuditEvent, Notice, SimDevice)
        }


# ------------------------------------------------------------------------------------------
# 1. Sweep: 1k due leases alone vs among 100k
# ------------------------------------------------------------------------------------------
@dataclass
class Drain:
    seconds: float
    calls: int
    stepped: Counter
    phases: dict[str, float] = field(default_factory=dict)


def _kind_of_step(what: str) -> str:
    """What a sweep step did, without the lease number or counts in its sentence."""
    if what.startswith("Lease #") and "provisioning" in what:
        return "provisioned"
    return what.split(" (")[0]


def drain(lab: Lab, now: datetime) -> Drain:
    """Sweep until nothing is due (the sweep takes BATCH leases per call)."""
    stepped: Counter = Counter()
    calls = 0
    start = time.perf_counter()
    while calls < 10:
        report = sweep(lab, now)
        calls += 1
        if report.errors:
            raise RuntimeError(f"the sweep reported errors: {report.errors[:3]}")
        stepped.update(_kind_of_step(what) for _, what in report.stepped)
        if not due_leases(lab, now, limit=1):
            break
    elapsed = time.perf_counter() - start
    if due_leases(lab, now, limit=1):
        raise RuntimeError("leases are still due after 10 sweeps")
    return Drain(elapsed, calls, stepped)


class StatementLog:
    """Every distinct SQL statement a run sent, with its first parameters and how often, from
    the driver's cursor events (cheap enough to leave on during the measured runs)."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()
        self.params: dict[str, object] = {}

    def attach(self, db: Database) -> None:
        event.listen(db.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.calls[statement] += 1
        # An executemany's parameters are one set per row; the statement is re-run with the first.
        self.params.setdefault(statement, parameters[0] if executemany else parameters)


# The phases of one sweep call, timed by wrapping the names `commands.sweep.sweep` calls.
PHASES = ("step_all", "_process", "reconcile_if_due", "credit_alerts", "deliver")


class PhaseClock:
    """Wall time spent in named module-level functions, by wrapping them for the duration of
    a `with` block (one clock read on each side of each call)."""

    def __init__(self, module, names: Iterable[str]) -> None:
        self.module = module
        self.names = [n for n in names if callable(getattr(module, n, None))]
        self.total: dict[str, float] = defaultdict(float)
        self.calls: Counter = Counter()
        self._saved: dict[str, Callable] = {}

    def __enter__(self) -> PhaseClock:
        for name in self.names:
            original = self._saved[name] = getattr(self.module, name)
            setattr(self.module, name, self._timed(name, original))
        return self

    def __exit__(self, *exc) -> None:
        for name, original in self._saved.items():
            setattr(self.module, name, original)

    def _timed(self, name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed_call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total[name] += time.perf_counter() - start
                self.calls[name] += 1

        return timed_call


@contextmanager
def _fresh_lab(source: Path, scratch: Path, log: StatementLog | None = None):
    """A Lab on a byte copy of `source`, removed afterwards."""
    copy_database(source, scratch)
    db = open_database(scratch)
    try:
        if log is not None:
            log.attach(db)
        yield _lab(db)
    finally:
        db.dispose()
        remove_database(scratch)


def _sweep_run(source: Path, scratch: Path, log: StatementLog | None = None) -> Drain:
    with _fresh_lab(source, scratch, log) as lab, PhaseClock(commands.sweep, PHASES) as clock:
        result = drain(lab, NOW)
    result.phases = dict(clock.total)
    return result


@dataclass
class Growth:
    statement: str
    plan: str
    calls: int  # per drain
    small: float  # seconds per call, fetched in full, on the 1k-only table
    big: float  # the same on the 100k table


def _growing_statements(small: Path, big: Path, log: StatementLog) -> list[Growth]:
    """The statements of the drain whose own cost grows with the table. Each SELECT the run
    sent is run again with its first parameters on both databases as built (fetched in full,
    median of 3); an UPDATE or DELETE is flagged when its plan scans a whole table."""
    found = []
    with closing(_read_only(small)) as one, closing(_read_only(big)) as many:
        for statement, calls in log.calls.items():
            verb = statement.lstrip()[:6].upper()
            if verb not in ("SELECT", "UPDATE", "DELETE"):
                continue
            params = log.params[statement]
            explained = many.execute(f"EXPLAIN QUERY PLAN {statement}", params)
            plan = " | ".join(r[-1] for r in explained)
            if verb == "SELECT":
                a, b = _fetch_time(one, statement, params), _fetch_time(many, statement, params)
                grows = b > 3 * a and b - a > 0.001
            else:
                a = b = 0.0
                grows = any(p.startswith("SCAN ") for p in plan.split(" | "))
            if grows:
                found.append(Growth(statement, plan, calls // REPEATS, a, b))
    return sorted(found, key=lambda g: (g.big - g.small) * g.calls, reverse=True)


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _fetch_time(conn: sqlite3.Connection, statement: str, params) -> float:
    def run() -> None:
        conn.execute(statement, params).fetchall()

    run()
    return median([timed(run)[0] for _ in range(3)])


def _outline(statement: str) -> str:
    """The statement on one line, its outermost column list elided."""
    flat = " ".join(statement.split())
    flat = re.sub(r"^SELECT .+? FROM ", "SELECT ... FROM ", flat, count=1)
    return re.sub(r"\((?:\?, ){3,}\?\)", lambda m: f"({m.group(0).count('?')} values)", flat)


def _approve_some(source: Path, scratch: Path, ids: list[int]) -> tuple[float, float]:
    """Approvals per second of the given pending leases (one thread), and the seconds per
    approval spent in the credit check."""
    with (
        _fresh_lab(source, scratch) as lab,
        PhaseClock(commands.review, ["_over_budget"]) as clock,
    ):
        elapsed, failures = timed(lambda: _approve_all(lab, ids, threads=1))
    if failures:
        raise RuntimeError(f"{len(failures)} approvals failed, e.g. {failures[:3]}")
    return len(ids) / elapsed, clock.total.get("_over_budget", 0.0) / len(ids)


def _month_load(path: Path) -> tuple[int, int]:
    """Live leases, and leases whose servers bill in NOW's month: what the books read."""
    start = _stored(NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0))
    with closing(_read_only(path)) as conn:
        live = conn.execute(
            "SELECT count(*) FROM lease WHERE state IN ('approved', 'provisioning', 'active')"
        ).fetchone()[0]
        billed = conn.execute(
            "SELECT count(DISTINCT lease_id) FROM server WHERE active_at IS NOT NULL "
            "AND (deleted_at IS NULL OR deleted_at >= ?)",
            (start,),
        ).fetchone()[0]
    return live, billed


def bench_sweep(work: Path) -> bool:
    heading(f"Sweep: {DUE_LEASES:,} due leases alone vs among {TOTAL_LEASES:,}")
    small, big, tiny = work / "due-only.db", work / "full.db", work / "warm-up.db"

    build_start = time.perf_counter()
    due, due_kinds = due_rows()
    history, history_kinds = history_rows(TOTAL_LEASES - DUE_LEASES)
    db = built(big, history, due)
    big_sizes = table_sizes(db)
    seal(db)
    db = built(small, due)
    small_sizes = table_sizes(db)
    seal(db)
    db = built(tiny, due.subset(WARM_UP))
    seal(db)
    note(f"built the databases in {time.perf_counter() - build_start:.1f} s (bulk inserts)")
    note(
        "due, the same rows in both: "
        + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in due_kinds.most_common())
    )
    note(
        "history, not due: "
        + ", ".join(f"{n:,} {kind.replace('_', ' ')}" for kind, n in history_kinds.most_common())
    )
    for name, sizes in (("1k-only", small_sizes), ("100k", big_sizes)):
        note(f"{name:>7} tables: " + ", ".join(f"{t} {n:,}" for t, n in sizes.items()))
    note(
        f"now {NOW:%Y-%m-%d %H:%M} UTC; sweep() called until nothing is due (BATCH={BATCH}); "
        f"reconcile ENABLED in both (reconcile_every={RICH.reconcile_every}: the first call "
        "lists the provider's devices); credit set high so no credit alert fires in either"
    )
    scratch = work / "run.db"
    _sweep_run(tiny, scratch)  # warm-up: imports, mappers, first statements; not counted
    runs: dict[str, list[Drain]] = {"small": [], "big": []}
    log = StatementLog()
    for _ in range(REPEATS):
        runs["small"].append(_sweep_run(small, scratch))
        runs["big"].append(_sweep_run(big, scratch, log))
    work_small, work_big = runs["small"][0].stepped, runs["big"][0].stepped
    if any(r.stepped != work_small for r in runs["small"] + runs["big"]):
        raise RuntimeError(f"the sweeps did different work: {work_small} vs {work_big}")
    note(
        f"work per drain, identical in every run: {sum(work_small.values()):,} steps ("
        + ", ".join(f"{n} {what}" for what, n in work_small.most_common())
        + ")"
    )
    t_small = median([r.seconds for r in runs["small"]])
    t_big = median([r.seconds for r in runs["big"]])
    for name, size in (("small", DUE_LEASES), ("big", TOTAL_LEASES)):
        row(
            f"sweep, {size:,}-lease table ({runs[name][0].calls} calls)",
            seconds(median([r.seconds for r in runs[name]])),
            "runs: " + " / ".join(seconds(r.seconds) for r in runs[name]),
        )
    met = target_row("ratio 100k / 1k (median of 3)", t_big / t_small, SWEEP_TARGET)
    met &= target_row("100k drain, seconds (median of 3)", t_big, SWEEP_SECONDS)

    note("where a drain's time goes, by phase of sweep() (median; 1k-only -> 100k):")
    for phase in PHASES:
        a = median([r.phases.get(phase, 0.0) for r in runs["small"]])
        b = median([r.phases.get(phase, 0.0) for r in runs["big"]])
        row(f"  {phase}", f"{seconds(a)} -> {seconds(b)}", f"({b - a:+.3f} s)")
    growth = _growing_statements(small, big, log)
    note(f"SQL whose cost grows with the table ({len(growth)}; per call 1k -> 100k, per drain):")
    for g in growth:
        note(f"  {seconds(g.small)} -> {seconds(g.big)} per call, {g.calls} calls per drain:")
        for line in textwrap.wrap(_outline(g.statement), 96):
            note(f"      {line}")
        for line in textwrap.wrap(f"plan: {g.plan}", 96):
            note(f"      {line}")

    heading("Approval cost vs table size (the credit check reads the month's books)")
    pending = [lid for lid, kind in sorted(due.kinds.items()) if kind == "expire_request"]
    sample = pending[:SIZE_APPROVALS]
    rate_small, check_small = _approve_some(small, scratch, sample)
    rate_big, check_big = _approve_some(big, scratch, sample)
    note(f"the same {len(sample)} pending requests approved, one thread, on a fresh copy of each")
    for name, path, rate, check in (
        ("1k-only", small, rate_small, check_small),
        ("100k", big, rate_big, check_big),
    ):
        live, billed = _month_load(path)
        row(
            f"approvals/s, {name} table",
            f"{rate:,.1f}/s",
            f"credit check {seconds(check)} each; {live} live leases, {billed:,} billed this month",
        )
    row("slowdown 100k / 1k", f"x{rate_small / rate_big:.2f}")

    return met


# ------------------------------------------------------------------------------------------
# 2. Approvals per second: 1 thread vs 8 threads; 3. contention on one lease
# ------------------------------------------------------------------------------------------
def pending_rows(count: int, first_id: int = 1) -> Rows:
    """Cheap requests (one t1.small.x86 for a few hours) waiting for a reviewer."""
    rng = random.Random(7)
    rows = Rows()
    for lease_id in range(first_id, first_id + count):
        created = NOW - timedelta(hours=rng.uniform(0.1, 48))
        lease = _lease(
            lease_id,
            rng,
            created,
            plan="t1.small.x86",
            hourly_cents=PLANS["t1.small.x86"].hourly_cents,
            count=1,
            duration_s=rng.choice((4, 8, 24)) * 3600,
        )
        lease["due_at"] = lease["decide_by"]
        rows.leases.append(lease)
        rows.audit.append(_audit(lease_id, created, lease["owner"], "request"))
        rows.notices.append(_card(lease))
    return rows


def _approve_all(lab: Lab, ids: list[int], threads: int) -> list[str]:
    """Approve every lease in `ids` from `threads` threads; returns the failures."""
    queue: Queue[tuple[int, str]] = Queue()
    for n, lease_id in enumerate(ids):
        queue.put((lease_id, REVIEWERS[n % len(REVIEWERS)]))
    failures: list[str] = []

    def worker() -> None:
        while True:
            try:
                lease_id, reviewer = queue.get_nowait()
            except Empty:
                return
            try:
                outcome = approve(lab, reviewer, lease_id, NOW)
            except Exception as error:  # recorded and reported as an error below
                failures.append(f"#{lease_id}: {type(error).__name__}: {error}")
                continue
            if not outcome.ok:
                failures.append(f"#{lease_id}: {outcome.message}")

    if threads == 1:
        worker()
    else:
        pool = [threading.Thread(target=worker, name=f"approver-{n}") for n in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    return failures


def _check_provisioning(db: Database, ids: list[int]) -> None:
    with db.engine.connect() as conn:
        states = Counter(
            dict(
                conn.execute(
                    select(Lease.state, func.count())
                    .where(Lease.id.in_(ids))  # type: ignore[union-attr]
                    .group_by(Lease.state)
                ).all()
            )
        )
        devices = conn.execute(select(func.count()).select_from(SimDevice)).scalar()
    if states != Counter({"provisioning": len(ids)}) or devices != len(ids):
        raise RuntimeError(f"after approval: lease states {dict(states)}, {devices} devices")


class LockClock:
    """Time spent waiting to write: from entering `Database.write()` until its
    `BEGIN IMMEDIATE` has returned, which covers both the process's own writer queue and
    SQLite's busy wait (summed over threads), and how many write transactions ran."""

    def __init__(self, db: Database) -> None:
        self.waited = 0.0
        self.begins = 0
        self._lock = threading.Lock()
        self._entered = threading.local()
        write = db.write

        @contextmanager
        def timed_write():
            self._entered.at = time.perf_counter()
            with write() as session:
                yield session

        db.write = timed_write  # type: ignore[method-assign]
        event.listen(db.engine, "after_cursor_execute", self._after)

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if statement != "BEGIN IMMEDIATE":
            return
        entered = getattr(self._entered, "at", None)
        self._entered.at = None
        with self._lock:
            self.begins += 1
            if entered is not None:
                self.waited += time.perf_counter() - entered


@dataclass
class ApprovalRun:
    seconds: float
    lock_wait: float
    begins: int
    claims: int
    halves: tuple[float, float] = (0.0, 0.0)  # rate over the first and second half (1 thread)


def _approval_run(source: Path, scratch: Path, ids: list[int], threads: int) -> ApprovalRun:
    copy_database(source, scratch)
    db = open_database(scratch)
    try:
        lab = _lab(db)
        locks = LockClock(db)
        claims = PhaseClock(commands.notices, ["_claim"])
        with claims:
            elapsed, failures, halves = _approve_timed(lab, ids, threads)
        if failures:
            raise RuntimeError(f"{len(failures)} approvals failed, e.g. {failures[:3]}")
        _check_provisioning(db, ids)
        return ApprovalRun(elapsed, locks.waited, locks.begins, claims.calls["_claim"], halves)
    finally:
        db.dispose()
        remove_database(scratch)


def _approve_timed(
    lab: Lab, ids: list[int], threads: int
) -> tuple[float, list[str], tuple[float, float]]:
    if threads == 1:
        half = len(ids) // 2
        first, failures = timed(lambda: _approve_all(lab, ids[:half], 1))
        second, more = timed(lambda: _approve_all(lab, ids[half:], 1))
        failures += more
        elapsed = first + second
        halves = (half / first, (len(ids) - half) / second)
    else:
        elapsed, failures = timed(lambda: _approve_all(lab, ids, threads))
        halves = (0.0, 0.0)
    return elapsed, failures, halves


def _contention_run(source: Path, scratch: Path, ids: list[int]) -> float:
    copy_database(source, scratch)
    db = open_database(scratch)
    try:
        lab = _lab(db)
        barrier = threading.Barrier(THREADS)
        wins: list[list[str]] = [[] for _ in ids]
        errors: list[str] = []

        def worker(reviewer: str) -> None:
            for round_no, lease_id in enumerate(ids):
                barrier.wait()
                try:
                    if approve(lab, reviewer, lease_id, NOW).ok:
                        wins[round_no].append(reviewer)
                except Exception as error:
                    errors.append(f"{reviewer} on #{lease_id}: {type(error).__name__}: {error}")

        pool = [threading.Thread(target=worker, args=(r,)) for r in REVIEWERS]
        start = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - start
        if errors:
            raise RuntimeError(f"{len(errors)} approvals raised, e.g. {errors[:3]}")
        bad = [(ids[n], w) for n, w in enumerate(wins) if len(w) != 1]
        if bad:
            raise RuntimeError(f"{len(bad)} rounds without exactly one winner, e.g. {bad[:3]}")
        # The database agrees: decided by the winner, 7 polite refusals audited per lease.
        with db.engine.connect() as conn:
            decided = dict(
                conn.execute(select(Lease.id, Lease.decided_by).where(Lease.id.in_(ids))).all()  # type: ignore[union-attr]
            )
            refused = conn.execute(
                text(
                    "SELECT count(*) FROM auditevent WHERE action = 'approve' "
                    "AND outcome = 'refused'"
                )
            ).scalar()
        if any(decided[lease_id] != wins[n][0] for n, lease_id in enumerate(ids)):
            raise RuntimeError("a lease records a different approver than the one that won")
        if refused != (THREADS - 1) * len(ids):
            raise RuntimeError(f"{refused} refusals audited, expected {(THREADS - 1) * len(ids)}")
        _check_provisioning(db, ids)
        return elapsed
    finally:
        db.dispose()
        remove_database(scratch)


def bench_approvals(work: Path) -> None:
    heading(f"Approvals on SQLite: {APPROVALS:,} pending requests, 1 thread vs {THREADS}")
    source, contended = work / "pending.db", work / "contended.db"
    db = new_database(source)
    pending_rows(APPROVALS).insert_into(db)
    seal(db)
    db = new_database(contended)
    pending_rows(CONTENTION_ROUNDS).insert_into(db)
    seal(db)
    note(
        "each approve() is the real path: credit check + conditional UPDATE in BEGIN IMMEDIATE, "
        "notices, then provisioning through the simulated provider (server row, device create, "
        "first poll) and notice delivery; 1 x t1.small.x86 each, credit high"
    )
    ids = list(range(1, APPROVALS + 1))
    scratch = work / "run.db"
    single = _approval_run(source, scratch, ids, threads=1)
    multi = _approval_run(source, scratch, ids, threads=THREADS)
    row(
        "approvals/s, 1 thread",
        f"{APPROVALS / single.seconds:,.1f}/s",
        f"{seconds(single.seconds)} total; first half {single.halves[0]:.1f}/s, "
        f"second {single.halves[1]:.1f}/s",
    )
    row(
        f"approvals/s, {THREADS} threads",
        f"{APPROVALS / multi.seconds:,.1f}/s",
        f"{seconds(multi.seconds)} total",
    )
    row(f"ratio {THREADS} threads / 1 thread", f"{single.seconds / multi.seconds:.2f}")
    row(
        "waiting to write (queue + BEGIN IMMEDIATE)",
        seconds(multi.lock_wait),
        f"summed over {THREADS} threads; 1 thread: {seconds(single.lock_wait)}",
    )
    row(
        "write transactions per approval",
        f"{multi.begins / APPROVALS:.1f}",
        f"{THREADS} threads; 1 thread: {single.begins / APPROVALS:.1f}",
    )
    row(
        "notice-delivery claims per approval",
        f"{multi.claims / APPROVALS:.1f}",
        f"{THREADS} threads; 1 thread: {single.claims / APPROVALS:.1f} (3 notices each)",
    )
    note(
        "writes run one at a time (the process's writer queue, then SQLite's lock) and the rest "
        "is Python under one GIL, so threads add waiting, not throughput"
    )

    heading(f"Contention: {THREADS} threads approve the same lease, {CONTENTION_ROUNDS} rounds")
    note(
        "each round: a barrier releases 8 reviewers onto one pending lease; one approves it "
        "(and provisions), 7 are told who did (refusals audited); checked in the database too"
    )
    rounds = list(range(1, CONTENTION_ROUNDS + 1))
    elapsed = _contention_run(contended, scratch, rounds)
    row("exactly one winner per round", "yes", f"{CONTENTION_ROUNDS} of {CONTENTION_ROUNDS}")
    row(
        "contended rounds/s",
        f"{CONTENTION_ROUNDS / elapsed:,.1f}/s",
        f"{CONTENTION_ROUNDS * THREADS / elapsed:,.0f} attempts/s, {seconds(elapsed)} total",
    )


# ------------------------------------------------------------------------------------------
# 4. The books with 10 and with 1,000 live leases (and 100,000 leases of history)
# ------------------------------------------------------------------------------------------
BOOKS_LIVE = (10, 1_000)
BOOKS_APPROVALS = 60
BOOKS_READS = 21
BOOKS_RATE = 200.0
BOOKS_RATIO = 1.2


@dataclass
class BooksRun:
    decisions: float  # seconds per approval spent on the books: check, overrides, holds
    approve: float  # seconds per approve() end to end (provisioning and notices included)
    report: float  # seconds per credit_report()
    home: float  # seconds per App Home view (leases, credit report, blocks)
    reference: float  # seconds per reference computation of the same month's books


def _books_runs(sources: dict[int, Path], work: Path, ids: list[int]) -> dict[int, BooksRun]:
    """Both labs open at once and measured in turns (approvals ten at a time, reads one at a
    time), so a machine whose load changes during the run colours both sides alike."""
    from bot.blocks.home import home_view
    from commands.credit_report import credit_report
    from commands.queue import queue
    from commands.views import leases
    from tests.commands.credit_reference import reference_books

    with ExitStack() as stack:
        labs = {
            live: stack.enter_context(_fresh_lab(path, work / f"run-{live}.db"))
            for live, path in sources.items()
        }
        spent = {live: [0.0, 0.0] for live in labs}  # approve() seconds, books' part seconds
        for start in range(0, len(ids), 10):
            turn = ids[start : start + 10]
            for live, lab in labs.items():
                with PhaseClock(commands.review, ["_over_budget", "hold_approved"]) as clock:
                    elapsed, failures = timed(
                        lambda lab=lab, turn=turn: _approve_all(lab, turn, threads=1)
                    )
                if failures:
                    raise RuntimeError(f"{len(failures)} approvals failed, e.g. {failures[:3]}")
                spent[live][0] += elapsed
                spent[live][1] += sum(clock.total.values())

        def home(lab: Lab) -> None:
            mine = leases(lab, owner=REVIEWERS[0], limit=20)
            home_view(mine, credit_report(lab, NOW), queue(lab, NOW), NOW)  # as a reviewer sees it

        def reference(lab: Lab) -> None:
            with lab.db.write() as session:
                reference_books(session, [month_key(NOW)], lab.policy, NOW)

        reads: dict[int, dict[str, list[float]]] = {live: defaultdict(list) for live in labs}
        for n in range(BOOKS_READS):
            for live, lab in labs.items():
                reads[live]["report"].append(timed(lambda lab=lab: credit_report(lab, NOW))[0])
                reads[live]["home"].append(timed(lambda lab=lab: home(lab))[0])
                if n < 3:
                    reads[live]["reference"].append(timed(lambda lab=lab: reference(lab))[0])
    return {
        live: BooksRun(
            spent[live][1] / len(ids),
            spent[live][0] / len(ids),
            median(reads[live]["report"]),
            median(reads[live]["home"]),
            median(reads[live]["reference"]),
        )
        for live in labs
    }


def bench_books(work: Path) -> bool:
    heading(f"The books with {BOOKS_LIVE[0]} and {BOOKS_LIVE[1]:,} live leases, 100k history")
    pending = pending_rows(BOOKS_APPROVALS, first_id=TOTAL_LEASES + 1)
    ids = [lease["id"] for lease in pending.leases]
    sources = {}
    for live in BOOKS_LIVE:
        sources[live] = work / f"books-{live}.db"
        history, _ = history_rows(TOTAL_LEASES, live=live)
        seal(built(sources[live], history, pending))
        running, _ = _month_load(sources[live])
        note(f"{live:,} live leases ({running:,} counted), {len(ids)} approvals, one thread")
    runs = _books_runs(sources, work, ids)
    small, big = runs[BOOKS_LIVE[0]], runs[BOOKS_LIVE[1]]
    for name, get in (
        ("books' part of an approval", lambda r: r.decisions),
        ("approve() end to end", lambda r: r.approve),
        ("credit_report()", lambda r: r.report),
        ("App Home view", lambda r: r.home),
        ("reference books (every live lease)", lambda r: r.reference),
    ):
        row(f"  {name}", f"{seconds(get(small))} -> {seconds(get(big))}", "10 -> 1,000 live")
    rate = 1 / big.decisions
    met = rate >= BOOKS_RATE
    row(
        "approvals/s on the books, 1,000 live",
        f"{rate:,.0f}/s",
        f"target >= {BOOKS_RATE:.0f}/s  {'PASS' if met else 'MISS'}",
    )
    row(
        "approve() end to end, 1,000 live",
        f"{1 / big.approve:,.1f}/s",
        f"target >= {BOOKS_RATE:.0f}/s  {'PASS' if 1 / big.approve >= BOOKS_RATE else 'MISS'}"
        " (provisioning and notices included)",
    )
    met &= target_row("approval cost 1,000 / 10 live", big.decisions / small.decisions, BOOKS_RATIO)
    met &= target_row("credit_report 1,000 / 10 live", big.report / small.report, BOOKS_RATIO)
    met &= target_row("App Home view 1,000 / 10 live", big.home / small.home, BOOKS_RATIO)
    row(
        "reference books / new credit_report, 1,000",
        f"x{big.reference / big.report:,.0f}",
        f"{seconds(big.reference)} vs {seconds(big.report)}",
    )
    return met


def main() -> int:
    section("engine: sweep cost vs table size; the books; approvals on SQLite")
    with workdir() as work:
        met = bench_sweep(work)
        books_met = bench_books(work)
        bench_approvals(work)
    print()
    note(
        f"sweep targets (<= {SWEEP_SECONDS:.0f} s, ratio <= {SWEEP_TARGET}): "
        + ("PASS" if met else "MISS")
    )
    note(f"books targets: {'PASS' if books_met else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
