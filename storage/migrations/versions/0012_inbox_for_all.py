"""inbox for all: every acknowledged request is kept, keyed by what Slack sent, and marked done

Revision ID: 0012_inbox_for_all
Revises: 0011_donor_orphans
Create Date: 2026-12-07 14:30:00

The web process now keeps every request whose work it hands to the workers, not only the clicks
that are safe to repeat. `key` names the delivery (a repeat of it is kept once) and `done_at`
marks the work done in the transaction of its first write. Rows a release in flight kept get a
key of their own id and stay due.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0012_inbox_for_all"
down_revision = "0011_donor_orphans"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inboxitem", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(
            sa.Column("done_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
    op.execute("UPDATE inboxitem SET key = 'kept:' || CAST(id AS VARCHAR)")
    with op.batch_alter_table("inboxitem", schema=None) as batch_op:
        batch_op.alter_column("key", existing_type=sqlmodel.sql.sqltypes.AutoString(), nullable=False)
        batch_op.create_index(batch_op.f("ix_inboxitem_key"), ["key"], unique=True)
        batch_op.create_index(batch_op.f("ix_inboxitem_done_at"), ["done_at"], unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM inboxitem WHERE done_at IS NOT NULL")
    with op.batch_alter_table("inboxitem", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inboxitem_done_at"))
        batch_op.drop_index(batch_op.f("ix_inboxitem_key"))
        batch_op.drop_column("done_at")
        batch_op.drop_column("key")
