"""capacity: the capacity calendar's index of the days each live lease's servers are held

Revision ID: 0016_capacity
Revises: 0014_booking
Create Date: 2026-12-07 17:10:00

Every live lease of the previous release (approved, provisioning or active, in its one metro) is
put on the calendar with the row of a lease whose days are not known yet (`day` ""): such a row
is read by every check of its plan and metro, and the lease's window is taken from the lease
itself, so the calendar is exact at once; the lease's next change (its servers up, an
extension) files it under its days, and its end removes it.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0016_capacity"
down_revision = "0014_booking"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "capacityday",
        sa.Column("plan", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("metro", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("day", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("lease_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["lease_id"], ["lease.id"]),
        sa.PrimaryKeyConstraint("plan", "metro", "day", "lease_id"),
    )
    with op.batch_alter_table("capacityday", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_capacityday_lease_id"), ["lease_id"], unique=False)
    op.execute(
        "INSERT INTO capacityday (plan, metro, day, lease_id) SELECT plan, metro, '', id "
        "FROM lease WHERE state IN ('approved', 'provisioning', 'active')"
    )


def downgrade() -> None:
    with op.batch_alter_table("capacityday", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_capacityday_lease_id"))
    op.drop_table("capacityday")
