"""Activity samples written straight into the table, as the servers' reports and the providers'
metrics will write them (commands/activity.py), for the idle tests."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import select

from commands.states import ServerState
from storage.db import Database
from storage.models import ActivitySample, Server

FIVE_MINUTES = timedelta(minutes=5)
QUIET = {"cpu_busy": 0.01, "net_bytes": 100_000, "sessions": 0}
BUSY = {"cpu_busy": 0.9, "net_bytes": 100_000, "sessions": 0}


def report(db: Database, lease_id: int, start: datetime, end: datetime, **signals) -> None:
    """Every running server of the lease reports every 5 minutes after `start` until `end`,
    as a server's own timer does (source "server")."""
    with db.write() as session:
        ids = session.exec(
            select(Server.id).where(Server.lease_id == lease_id, Server.state == ServerState.ACTIVE)
        ).all()
        at = start + FIVE_MINUTES
        while at <= end:
            session.add_all(
                ActivitySample(
                    server_id=server_id,
                    lease_id=lease_id,
                    at=at,
                    source="server",
                    interval_s=300,
                    **signals,
                )
                for server_id in ids
            )
            at += FIVE_MINUTES
