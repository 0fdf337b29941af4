"""activity tokens: the hash of each server's token for reporting its activity

Revision ID: 0018_activity_tokens
Revises: 0016_capacity
Create Date: 2026-12-07 17:00:00

A new table: the servers the previous release created were given no token, so they send no
reports (their provider's metrics still count), and nothing else changes.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0018_activity_tokens"
down_revision = "0016_capacity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "activitytoken",
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("issued_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["server_id"], ["server.id"]),
        sa.PrimaryKeyConstraint("server_id"),
    )
    op.create_index(
        op.f("ix_activitytoken_token_hash"), "activitytoken", ["token_hash"], unique=True
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_activitytoken_token_hash"), table_name="activitytoken")
    op.drop_table("activitytoken")
