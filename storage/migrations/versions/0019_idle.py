"""idle: where each lease stands on being idle, and the stretches its servers were idle

Revision ID: 0019_idle
Revises: 0018_activity_tokens
Create Date: 2026-12-07 17:30:00

New tables, so a database the previous release filled gains it empty: no lease has been asked
about being idle yet, and the sweep reads every sample already kept on its first pass.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0019_idle"
down_revision = "0018_activity_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idlewatch",
        sa.Column("lease_id", sa.Integer(), nullable=False),
        sa.Column("check_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("idle_since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("asked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("escalated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("snoozed_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("claimed_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("lease_id"),
    )
    op.create_index(op.f("ix_idlewatch_check_at"), "idlewatch", ["check_at"])
    op.create_table(
        "idlespan",
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("start", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("end", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("lease_id", sa.Integer(), nullable=False),
        sa.Column("project", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(["server_id"], ["server.id"]),
        sa.PrimaryKeyConstraint("server_id", "start"),
    )
    op.create_index(op.f("ix_idlespan_lease_id"), "idlespan", ["lease_id"])
    op.create_index(op.f("ix_idlespan_end"), "idlespan", ["end"])


def downgrade() -> None:
    op.drop_index(op.f("ix_idlespan_end"), table_name="idlespan")
    op.drop_index(op.f("ix_idlespan_lease_id"), table_name="idlespan")
    op.drop_table("idlespan")
    op.drop_index(op.f("ix_idlewatch_check_at"), table_name="idlewatch")
    op.drop_table("idlewatch")
