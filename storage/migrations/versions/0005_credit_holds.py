"""credit holds: monthly totals, per-lease holds and meters of running servers

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 07:00:00

Converts a database written by the previous release: what gone servers billed (serverspend)
becomes the months' settled totals; every running server gets a meter; every live lease
(approved, provisioning, active) gets its holds computed once, as the previous release's books
counted its commitment: its plan (servers x hourly price x started hours of its window plus
grace) less what its gone servers billed, per month. Their `exact_until` is set in the past, so
the books reckon these leases one by one (exactly as before) until a later change (activation,
extension, a server gone, a backstop moved) writes their holds again.

The arithmetic is a frozen copy of commands.billing's: a migration must give the same answer
whatever the application's code later becomes, and storage/ does not import commands/.
"""

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import sqlmodel
from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

HOUR = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LIVE = ("approved", "provisioning", "active")
LAB = ""

when = sqlmodel.sql.sqltypes.UTCDateTime
lease = sa.table(
    "lease",
    sa.column("id", sa.Integer),
    sa.column("state", sa.String),
    sa.column("project", sa.String),
    sa.column("count", sa.Integer),
    sa.column("duration_s", sa.Integer),
    sa.column("extended_s", sa.Integer),
    sa.column("hourly_cents", sa.Integer),
    sa.column("decided_at", when),
    sa.column("starts_at", when),
    sa.column("ends_at", when),
    sa.column("backstop_at", when),
)
server = sa.table(
    "server",
    sa.column("id", sa.Integer),
    sa.column("lease_id", sa.Integer),
    sa.column("hourly_cents", sa.Integer),
    sa.column("active_at", when),
    sa.column("deleted_at", when),
)
spend = sa.table(
    "serverspend",
    sa.column("lease_id", sa.Integer),
    sa.column("project", sa.String),
    sa.column("month", sa.String),
    sa.column("cents", sa.Integer),
)


def upgrade() -> None:
    op.create_table(
        "creditmonth",
        sa.Column("month", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("project", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("settled", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("month", "project"),
    )
    op.create_table(
        "credithold",
        sa.Column("lease_id", sa.Integer(), nullable=False),
        sa.Column("month", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("project", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("cents", sa.Integer(), nullable=False),
        sa.Column("exact_until", when(), nullable=True),
        sa.ForeignKeyConstraint(["lease_id"], ["lease.id"]),
        sa.PrimaryKeyConstraint("lease_id", "month"),
    )
    with op.batch_alter_table("credithold", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credithold_exact_until"), ["exact_until"])
    op.create_table(
        "meter",
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("lease_id", sa.Integer(), nullable=False),
        sa.Column("project", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("hourly_cents", sa.Integer(), nullable=False),
        sa.Column("start_us", sa.BigInteger(), nullable=False),
        sa.Column("stop_us", sa.BigInteger(), nullable=True),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["server_id"], ["server.id"]),
        sa.PrimaryKeyConstraint("server_id"),
    )
    with op.batch_alter_table("meter", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_meter_lease_id"), ["lease_id"])
        batch_op.create_index(batch_op.f("ix_meter_held"), ["held"])
    _convert(op.get_bind(), context.config.attributes.get("grace", HOUR))


def downgrade() -> None:
    op.drop_table("meter")
    op.drop_table("credithold")
    op.drop_table("creditmonth")


def _convert(bind, grace: timedelta) -> None:
    settled: dict[tuple[str, str], int] = defaultdict(int)
    by_lease: dict[tuple[int, str], int] = defaultdict(int)
    for lease_id, project, month, cents in bind.execute(
        sa.select(spend.c.lease_id, spend.c.project, spend.c.month, sa.func.sum(spend.c.cents))
        .group_by(spend.c.lease_id, spend.c.project, spend.c.month)
    ):
        settled[month, project] += cents
        by_lease[lease_id, month] += cents
    held: dict[tuple[str, str], int] = defaultdict(int)
    holds, meters = [], []
    live = bind.execute(sa.select(lease).where(lease.c.state.in_(LIVE))).all()
    for row in live:
        start = row.starts_at or row.decided_at
        end = row.ends_at or start + timedelta(seconds=row.duration_s + row.extended_s)
        for month, hours in _hours_by_month(start, end + grace).items():
            cents = max(0, hours * row.count * row.hourly_cents - by_lease[row.id, month])
            holds.append(
                {
                    "lease_id": row.id,
                    "month": month,
                    "project": row.project,
                    "cents": cents,
                    "exact_until": EPOCH,
                }
            )
            held[month, row.project] += cents
    running = bind.execute(
        sa.select(server, lease.c.project, lease.c.backstop_at, lease.c.state)
        .join(lease, lease.c.id == server.c.lease_id)
        .where(server.c.active_at.is_not(None), server.c.deleted_at.is_(None))
    ).all()
    for row in running:
        meters.append(
            {
                "server_id": row.id,
                "lease_id": row.lease_id,
                "project": row.project,
                "hourly_cents": row.hourly_cents,
                "start_us": _us(row.active_at),
                "stop_us": None if row.backstop_at is None else _us(row.backstop_at),
                "held": row.state in LIVE,
            }
        )
    totals = defaultdict(lambda: {"settled": 0, "held": 0})
    for (month, project), cents in settled.items():
        for key in (LAB, project):
            totals[month, key]["settled"] += cents
    for (month, project), cents in held.items():
        for key in (LAB, project):
            totals[month, key]["held"] += cents
    _insert(bind, "creditmonth", [{"month": m, "project": p, **t} for (m, p), t in totals.items()])
    _insert(bind, "credithold", holds)
    _insert(bind, "meter", meters)


def _insert(bind, name: str, rows: list[dict]) -> None:
    if rows:
        table = sa.Table(name, sa.MetaData(), autoload_with=bind)
        bind.execute(table.insert(), rows)


def _us(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


def _hours_by_month(start: datetime, end: datetime) -> dict[str, int]:
    """Started hours of [start, end), each in the UTC month in which it starts."""
    total = math.ceil((end - start) / HOUR) if end > start else 0
    result: dict[str, int] = {}
    for k in range(total):
        month = (start + k * HOUR).strftime("%Y-%m")
        result[month] = result.get(month, 0) + 1
    return result
