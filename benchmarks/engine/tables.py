"""What the engine benchmarks' tables hold: the leases due now, years of history that is not due,
and pending requests waiting for a reviewer. Fixed seeds and explicit ids, so every run (and
both databases of a comparison) holds the same rows.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from benchmarks.engine.leases import (
    DAY,
    HOUR,
    NOW,
    PLANS,
    REVIEWERS,
    RICH,
    audit_row,
    backstop,
    card_row,
    device_id,
    device_row,
    lease_row,
    running,
    server_row,
)
from benchmarks.engine.rows import Rows
from benchmarks.engine.sizes import (
    DUE_ID_BASE,
    DUE_KINDS,
    DUE_SERVER_ID_BASE,
    LIVE_HISTORY,
    WAITING,
)
from commands.states import ServerState

NextId = Callable[[], int]


def due_rows() -> tuple[Rows, Counter]:
    """The due leases, identical in both databases: requests past their decision deadline,
    active leases whose 24h reminder is due, active leases past their end (expire and delete),
    provisioning leases whose devices are up (poll), and approved leases waiting to be
    provisioned."""
    rng = random.Random(1000)
    kinds = [kind for kind, count in DUE_KINDS.items() for _ in range(count)]
    rng.shuffle(kinds)
    rows = Rows()
    server_ids = iter(range(DUE_SERVER_ID_BASE, DUE_SERVER_ID_BASE + 100_000))
    for offset, kind in enumerate(kinds, start=1):
        lease = _DUE[kind](rows, DUE_ID_BASE + offset, rng, lambda: next(server_ids))
        rows.leases.append(lease)
        rows.kinds[lease["id"]] = kind
    return rows, Counter(kinds)


def _expire_request(rows: Rows, lease_id: int, rng: random.Random, _: NextId) -> dict:
    created = NOW - RICH.decide_within - timedelta(minutes=rng.uniform(1, 240))
    lease = lease_row(lease_id, rng, created)
    lease["due_at"] = lease["decide_by"]
    rows.audit.append(audit_row(lease_id, created, lease["owner"], "request"))
    rows.notices.append(card_row(lease))
    return lease


def _remind(rows: Rows, lease_id: int, rng: random.Random, next_id: NextId) -> dict:
    starts = NOW - timedelta(hours=rng.uniform(24, 144))
    ends = NOW + timedelta(hours=rng.uniform(1.5, 23.5))
    lease = lease_row(lease_id, rng, starts - timedelta(hours=rng.uniform(1, 30)))
    running(rows, lease, starts, ends, next_id)
    lease["due_at"] = ends - timedelta(hours=24)
    return lease


def _expire(rows: Rows, lease_id: int, rng: random.Random, next_id: NextId) -> dict:
    starts = NOW - timedelta(hours=rng.uniform(48, 240))
    ends = NOW - RICH.grace - timedelta(minutes=rng.uniform(1, 300))
    lease = lease_row(lease_id, rng, starts - timedelta(hours=rng.uniform(1, 30)))
    running(rows, lease, starts, ends, next_id)
    lease["due_at"] = ends + RICH.grace
    for offset_s, before in ((86_400, DAY), (3_600, HOUR)):
        rows.reminders.append(
            {"lease_id": lease_id, "offset_s": offset_s, "sent_at": ends - before}
        )
    return lease


def _poll(rows: Rows, lease_id: int, rng: random.Random, next_id: NextId) -> dict:
    decided = NOW - timedelta(minutes=rng.uniform(3, 20))
    lease = lease_row(
        lease_id,
        rng,
        decided - timedelta(hours=rng.uniform(1, 30)),
        state="provisioning",
        decided_by=REVIEWERS[1],
        decided_at=decided,
        due_at=NOW - timedelta(seconds=rng.uniform(0, 30)),
    )
    planned_end = decided + RICH.provision_timeout + timedelta(seconds=lease["duration_s"])
    lease["backstop_at"] = backstop(planned_end)
    for n in range(1, lease["count"] + 1):
        server_id = next_id()
        hostname = f"{lease['project']}-{lease_id}-{n}"
        server = server_row(
            lease,
            n,
            server_id,
            state=ServerState.PROVISIONING,
            provider_id=device_id(server_id, hostname),
        )
        rows.servers.append(server)
        rows.devices.append(device_row(server, lease, decided + timedelta(seconds=5)))
    rows.audit.append(audit_row(lease_id, decided, REVIEWERS[1], "approve"))
    rows.notices.append(card_row(lease))
    return lease


def _provision(rows: Rows, lease_id: int, rng: random.Random, _: NextId) -> dict:
    decided = NOW - timedelta(seconds=rng.uniform(1, 60))
    lease = lease_row(
        lease_id,
        rng,
        decided - timedelta(hours=rng.uniform(1, 30)),
        state="approved",
        decided_by=REVIEWERS[2],
        decided_at=decided,
        due_at=decided,
    )
    rows.audit.append(audit_row(lease_id, decided, REVIEWERS[2], "approve"))
    rows.notices.append(card_row(lease))
    return lease


_DUE = {
    "expire_request": _expire_request,
    "remind": _remind,
    "expire": _expire,
    "poll": _poll,
    "provision": _provision,
}


def history_rows(count: int, live: int = LIVE_HISTORY) -> tuple[Rows, Counter]:
    """Leases that are not due: mostly years of terminal history (with deleted servers,
    audit events and a delivered review card each), plus live leases whose next deadline is
    in the future and pending requests still inside their decision window."""
    rng = random.Random(99)
    kinds = ["active"] * live + ["pending"] * WAITING
    kinds += rng.choices(
        ["reclaimed", "denied", "expired_request", "cancelled", "failed"],
        weights=[70, 12, 7, 6, 5],
        k=count - live - WAITING,
    )
    rows = Rows()
    server_ids = itertools.count(1)
    for lease_id, (created, kind) in enumerate(_stamped(kinds, rng), start=1):
        lease = lease_row(lease_id, rng, created)
        decided = created + timedelta(minutes=rng.uniform(5, 2 * 24 * 60))
        rows.audit.append(audit_row(lease_id, created, lease["owner"], "request"))
        rows.notices.append(card_row(lease))
        _HISTORY[kind](rows, lease, decided, rng, lambda: next(server_ids))
        rows.leases.append(lease)
    if next(server_ids) > DUE_SERVER_ID_BASE:
        raise RuntimeError("history server ids ran into the due leases' explicit ids")
    return rows, Counter(kinds)


def _stamped(kinds: list[str], rng: random.Random) -> list[tuple[datetime, str]]:
    """Each kind with when it was filed, oldest first: ids grow with time, as in a real table."""
    ages = {
        "active": lambda: timedelta(hours=rng.uniform(2, 96)),
        "pending": lambda: timedelta(hours=rng.uniform(0.1, 70)),
    }
    stamped = []
    for kind in kinds:
        age = ages.get(kind, lambda: timedelta(days=rng.uniform(1, 900)))()
        stamped.append((NOW - age, kind))
    stamped.sort()
    return stamped


def _pending(rows: Rows, lease: dict, decided: datetime, rng: random.Random, _: NextId) -> None:
    lease["due_at"] = lease["decide_by"]


def _active(
    rows: Rows, lease: dict, decided: datetime, rng: random.Random, next_id: NextId
) -> None:
    starts = NOW - (NOW - lease["created_at"]) / 2
    ends = NOW + timedelta(hours=rng.uniform(25, 200))
    rows.audit.pop()  # running() writes the request's audit event and card itself
    rows.notices.pop()
    running(rows, lease, starts, ends, next_id)
    lease["due_at"] = ends - timedelta(hours=24)


def _denied(rows: Rows, lease: dict, decided: datetime, rng: random.Random, _: NextId) -> None:
    lease.update(state="denied", decided_by=REVIEWERS[3], decided_at=decided, reason="not OSS")
    rows.audit.append(audit_row(lease["id"], decided, REVIEWERS[3], "deny"))


def _cancelled(rows: Rows, lease: dict, decided: datetime, rng: random.Random, _: NextId) -> None:
    lease.update(state="cancelled", decided_at=decided)
    rows.audit.append(audit_row(lease["id"], decided, lease["owner"], "cancel"))


def _expired_request(
    rows: Rows, lease: dict, decided: datetime, rng: random.Random, _: NextId
) -> None:
    lease.update(state="expired_request", decided_at=lease["decide_by"])
    rows.audit.append(audit_row(lease["id"], lease["decide_by"], "system", "expire_request"))


def _failed(
    rows: Rows, lease: dict, decided: datetime, rng: random.Random, next_id: NextId
) -> None:
    gave_up = min(decided + timedelta(hours=2), NOW - HOUR)
    lease.update(
        state="failed",
        decided_by=REVIEWERS[4],
        decided_at=decided,
        ended_at=gave_up,
        reason="the provider could not create the servers",
    )
    for n in range(1, lease["count"] + 1):
        sid = next_id()
        rows.servers.append(
            server_row(
                lease,
                n,
                sid,
                provider_id=device_id(sid, f"{lease['project']}-{lease['id']}-{n}"),
                deleted_at=gave_up,
                create_attempts=3,
                last_error="device failed provisioning",
            )
        )
    rows.audit.append(audit_row(lease["id"], gave_up, "system", "failed"))


def _reclaimed(
    rows: Rows, lease: dict, decided: datetime, rng: random.Random, next_id: NextId
) -> None:
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
        backstop_at=backstop(starts + planned),
    )
    for n in range(1, lease["count"] + 1):
        sid = next_id()
        rows.servers.append(
            server_row(
                lease,
                n,
                sid,
                provider_id=device_id(sid, f"{lease['project']}-{lease['id']}-{n}"),
                ips=f"147.75.{sid % 200}.{n}",
                active_at=starts,
                deleted_at=ended + timedelta(seconds=rng.uniform(5, 120)),
            )
        )
    rows.audit.append(audit_row(lease["id"], decided, REVIEWERS[5], "approve"))
    rows.audit.append(audit_row(lease["id"], ended, "system", "reclaimed"))


_HISTORY = {
    "pending": _pending,
    "active": _active,
    "denied": _denied,
    "cancelled": _cancelled,
    "expired_request": _expired_request,
    "failed": _failed,
    "reclaimed": _reclaimed,
}


def pending_rows(count: int, first_id: int = 1) -> Rows:
    """Cheap requests (one t1.small.x86 for a few hours) waiting for a reviewer."""
    rng = random.Random(7)
    rows = Rows()
    for lease_id in range(first_id, first_id + count):
        created = NOW - timedelta(hours=rng.uniform(0.1, 48))
        lease = lease_row(
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
        rows.audit.append(audit_row(lease_id, created, lease["owner"], "request"))
        rows.notices.append(card_row(lease))
    return rows
