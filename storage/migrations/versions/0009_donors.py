"""donors: every lease is billed to one donor

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 14:30:00

A lab configured before donors existed had one: everything it holds belongs to that donor,
named "lab" (commands.donors.FIRST_DONOR), so no figure changes.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lease", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "donor",
                sqlmodel.sql.sqltypes.AutoString(),
                nullable=False,
                server_default="lab",
            )
        )
        batch_op.create_index(batch_op.f("ix_lease_donor"), ["donor"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lease", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lease_donor"))
        batch_op.drop_column("donor")
