"""Tables filled in bulk: rows built in Python and written with one executemany per table.

A lab of 100,000 leases built through the use cases would take longer than every measurement
of it; written raw, as the previous release's schema (0001) holds them, it takes seconds, and
the migrations then bring it to the current schema as they would bring a real lab.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter

from sqlalchemy import DateTime

from commands.billing import cost_by_month
from storage.db import Database
from storage.models import AuditEvent, Lease, Notice, SentReminder, Server, ServerSpend, SimDevice


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
                v[n] = stored(v[n])
        values.append(tuple(v))
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" * len(columns))
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", values)


def _is_datetime(type_: object) -> bool:
    return isinstance(getattr(type_, "impl", type_), DateTime)


def stored(at: datetime) -> str:
    """A datetime as SQLAlchemy stores it in SQLite: UTC, 'YYYY-MM-DD HH:MM:SS.ffffff', so
    rows written here compare and load exactly like rows the ORM writes."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    text = str(at)  # 'YYYY-MM-DD HH:MM:SS[.ffffff]+00:00'
    return text[:26] if len(text) == 32 else text[:19] + ".000000"
