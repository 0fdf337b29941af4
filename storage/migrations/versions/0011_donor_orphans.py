"""donor orphans: an orphaned device is found in, and deleted through, one donor's account

Revision ID: 0011_donor_orphans
Revises: 0010_donor_books (re-chained after 0010 so the merged branches have one head)
Create Date: 2026-12-07 15:00:00

Before donors, the lab had one provider account: every orphan it recorded was found in the one
donor's, named "lab" (commands.donors.FIRST_DONOR).
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011_donor_orphans"
down_revision = "0010_donor_books"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orphan", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "donor",
                sqlmodel.sql.sqltypes.AutoString(),
                nullable=False,
                server_default="lab",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("orphan", schema=None) as batch_op:
        batch_op.drop_column("donor")
