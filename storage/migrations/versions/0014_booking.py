"""booking: a lease may ask for a start ahead, and for servers in several metros

Revision ID: 0014_booking
Revises: 0013_activity
Create Date: 2026-12-07 17:05:00

Every lease the previous release wrote started as soon as it was approved, in its one metro: its
`book_start` is NULL and its `metro_counts` empty, which read exactly as before.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0014_booking"
down_revision = "0013_activity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lease", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("book_start", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "metro_counts",
                sqlmodel.sql.sqltypes.AutoString(),
                nullable=False,
                server_default="",
            )
        )
        batch_op.create_index(batch_op.f("ix_lease_book_start"), ["book_start"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lease", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lease_book_start"))
        batch_op.drop_column("metro_counts")
        batch_op.drop_column("book_start")
