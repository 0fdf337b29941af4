"""activity: what each server's own reports and its provider's metrics say about its use

Revision ID: 0013_activity
Revises: 0012_inbox_for_all
Create Date: 2026-12-07 17:00:00

One row per sample and source; a new table, so a database the previous release filled gains it
empty and nothing else changes.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0013_activity"
down_revision = "0012_inbox_for_all"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "activitysample",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("lease_id", sa.Integer(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("cpu_busy", sa.Float(), nullable=True),
        sa.Column("load_1m", sa.Float(), nullable=True),
        sa.Column("net_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sessions", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["server_id"], ["server.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_activitysample_server_at", "activitysample", ["server_id", "at"])
    op.create_index(op.f("ix_activitysample_lease_id"), "activitysample", ["lease_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_activitysample_lease_id"), table_name="activitysample")
    op.drop_index("ix_activitysample_server_at", table_name="activitysample")
    op.drop_table("activitysample")
