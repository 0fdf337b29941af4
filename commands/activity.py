"""Lease life: what a server's own reports say of its use (issue 23), and its token.

Each server labbot creates carries, in its user data, a reporter (metal.reporter) and a token of
its own: random, 256 bits, given to the provider in the create and kept here only as its SHA-256
(`ActivityToken`), so neither the database, a log nor a message ever holds it. A token is issued
again with every attempt to create the server, in the transaction that claims the attempt, so
the token of an attempt given up is dead. A report is good while its server is up or coming up
and its lease lives; anything else (a forged token, a reclaimed server) is refused with nothing
written.

A report is read here (`ActivityReport`: every number bounded, an unknown number null, never 0)
and written with others in one insert (`record`). Where a report arrives, how often a server
may send one and how the writes are batched is the web process's business (bot.activity).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, insert
from sqlmodel import Session, col, select

from commands.lab import Lab
from commands.states import ServerState, State
from metal.reporter import Reporting
from storage.models import ActivitySample, ActivityToken, Lease, Server

SERVER = "server"  # ActivitySample.source of a server's own report
DAY_S = 86_400
# Servers that report: up, or on their way up (the reporter starts at boot, before the poll
# that sees the device active); leases that live: not yet being taken back.
REPORTING_SERVERS = (ServerState.PROVISIONING, ServerState.ACTIVE)
LIVE_LEASES = (State.PROVISIONING, State.ACTIVE)


class ActivityReport(BaseModel):
    """What the reporter sends (metal/reporter/report-activity.sh), as JSON. Strict: a number
    must be a number, and nothing else may come along."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    interval_s: int = Field(ge=1, le=DAY_S)  # since the last report, or the timer's period
    load_1m: float | None = Field(default=None, ge=0, le=100_000)
    cpu_busy: float | None = Field(default=None, ge=0, le=1)
    net_bytes: int | None = Field(default=None, ge=0, le=10**15)  # 1 PB: beyond any interval
    sessions: int | None = Field(default=None, ge=0, le=100_000)


@dataclass(frozen=True)
class Reporter:
    """The server a good token names, and its lease."""

    server_id: int
    lease_id: int


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_tokens(session: Session, server_ids: Sequence[int], now: datetime) -> dict[int, str]:
    """A fresh token for each server, its hash replacing the one before (in the caller's
    transaction); the tokens themselves are returned to go into the creates, and nowhere else."""
    if not server_ids:
        return {}
    tokens = {server_id: new_token() for server_id in server_ids}
    session.exec(delete(ActivityToken).where(col(ActivityToken.server_id).in_(server_ids)))
    session.execute(
        insert(ActivityToken),
        [
            {"server_id": server_id, "token_hash": token_hash(token), "issued_at": now}
            for server_id, token in tokens.items()
        ],
    )
    return tokens


def reporting(lab: Lab, token: str | None) -> Reporting | None:
    """What a server's create carries to install the reporter, or None where servers do not
    report (no public URL, Socket Mode, or turned off: `Policy.activity_url` empty)."""
    if not lab.policy.activity_url or token is None:
        return None
    return Reporting(lab.policy.activity_url, token)


def reporter_of(lab: Lab, token: str) -> Reporter | None:
    """The server `token` belongs to, while it is up and its lease lives; None otherwise (one
    indexed read, no lock)."""
    with lab.db.read() as session:
        found = session.exec(
            select(Server.id, Server.lease_id)
            .join(ActivityToken, col(ActivityToken.server_id) == col(Server.id))
            .join(Lease, col(Lease.id) == col(Server.lease_id))
            .where(
                col(ActivityToken.token_hash) == token_hash(token),
                col(Server.state).in_(REPORTING_SERVERS),
                col(Lease.state).in_(LIVE_LEASES),
            )
        ).first()
    return None if found is None else Reporter(found[0], found[1])


def sample(reporter: Reporter, report: ActivityReport, at: datetime) -> dict[str, object]:
    """The report as one ActivitySample row, as `record` takes it."""
    return {
        "server_id": reporter.server_id,
        "lease_id": reporter.lease_id,
        "at": at,
        "source": SERVER,
        **report.model_dump(),
    }


def record(lab: Lab, samples: Iterable[dict[str, object]], wait: float | None = None) -> int:
    """Write the samples in one transaction (one INSERT however many); returns how many.
    `wait` bounds the wait for the write lock (storage.db.Busy past it)."""
    rows = list(samples)
    if rows:
        with lab.db.write(wait=wait) as session:
            session.execute(insert(ActivitySample), rows)
    return len(rows)
