"""The rows of one lease as the engine leaves them: the request, its servers and their devices,
its audit events and review card, at a fixed `NOW` and under a policy rich enough that no
approval is refused.

`benchmarks.engine.labs` puts thousands of these together; every random choice comes from the
generator it passes, so the same seed builds the same rows in every run.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from benchmarks.engine.rows import Rows
from commands.policy import Policy
from commands.states import ServerState
from metal.catalog import SEED_METROS, SEED_OSES, SEED_PLANS

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# Credit high enough that no approval is refused and no credit alert fires in either database:
# the sweep comparison then measures the same work on both sides.
RICH = Policy(monthly_credit_cents=1_000_000_000)

REVIEWERS = tuple(f"U0REVIEW{n}" for n in range(8))  # one per approving thread
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


def lease_row(lease_id: int, rng: random.Random, created_at: datetime, **values) -> dict:
    """A pending request of a random project, plan, size and length; `values` override."""
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


def server_row(lease: dict, n: int, server_id: int | None = None, **values) -> dict:
    """The lease's `n`th server, deleted unless `values` say otherwise."""
    row = {
        "lease_id": lease["id"],
        "hostname": f"{lease['project']}-{lease['id']}-{n}",
        "plan": lease["plan"],
        "metro": lease["metro"],
        "state": ServerState.DELETED,
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


def audit_row(lease_id: int, at: datetime, actor: str, action: str, outcome: str = "ok") -> dict:
    return {
        "at": at,
        "actor": actor,
        "action": action,
        "lease_id": lease_id,
        "outcome": outcome,
        "details": "",
    }


def card_row(lease: dict) -> dict:
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


def device_row(server: dict, lease: dict, created_at: datetime) -> dict:
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


def device_id(server_id: int, hostname: str) -> str:
    # The simulated provider's format: sim-<HHMMSS>-<n>-<hostname>.
    return f"sim-000000-{server_id}-{hostname}"


def backstop(ends_at: datetime) -> datetime:
    """Where the provider-side deletion backstop sits: a day past the end plus grace."""
    return ends_at + RICH.grace + DAY


def running(
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
        backstop_at=backstop(ends_at),
    )
    for n in range(1, lease["count"] + 1):
        server_id = next_server_id()
        hostname = f"{lease['project']}-{lease['id']}-{n}"
        server = server_row(
            lease,
            n,
            server_id,
            state=ServerState.ACTIVE,
            provider_id=device_id(server_id, hostname),
            ips=f"147.75.{server_id % 200}.{n}",
            active_at=starts_at,
        )
        rows.servers.append(server)
        rows.devices.append(device_row(server, lease, starts_at - timedelta(minutes=3)))
    rows.audit += [
        audit_row(lease["id"], lease["created_at"], lease["owner"], "request"),
        audit_row(lease["id"], lease["decided_at"], REVIEWERS[0], "approve"),
        audit_row(lease["id"], starts_at, "system", "active"),
    ]
    rows.notices.append(card_row(lease))
