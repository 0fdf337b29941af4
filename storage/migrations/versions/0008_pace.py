"""pace: the outbox's rate-limited lanes, shared by replicas; notices are claimed by audience

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 11:30:00

The outbox now claims an audience (a row of `claim` named `outbox:<audience>`) rather than
single notices, so one audience's notices are sent in order by one deliverer at a time; the
notices' own claim columns go. Claims a release in flight held on notices are dropped with
them: the notices stay due and are delivered by the next pass.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pace",
        sa.Column("lane", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("booked_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("lane"),
    )
    with op.batch_alter_table("notice", schema=None) as batch_op:
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("claimed_by")


def downgrade() -> None:
    with op.batch_alter_table("notice", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("claimed_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
    op.drop_table("pace")
