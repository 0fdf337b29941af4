"""class totals: each month's settled spend and holds per applicant class; the meters' billing
columns indexed by project

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 12:30:00

Converts a database written by the previous release: the month's holds and what gone servers
billed, summed by the applicant class of their lease (which never changes after the request),
become the classes' running totals, as `CreditMonth` keeps them per project. The books' sum
over the running servers reads a covering index of the meters instead of every meter's row.
"""

from collections import defaultdict

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

lease = sa.table("lease", sa.column("id", sa.Integer), sa.column("applicant_class", sa.String))
hold = sa.table(
    "credithold",
    sa.column("lease_id", sa.Integer),
    sa.column("month", sa.String),
    sa.column("cents", sa.Integer),
)
spend = sa.table(
    "serverspend",
    sa.column("lease_id", sa.Integer),
    sa.column("month", sa.String),
    sa.column("cents", sa.Integer),
)


def upgrade() -> None:
    classmonth = op.create_table(
        "classmonth",
        sa.Column("month", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("applicant_class", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("settled", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("month", "applicant_class"),
    )
    op.create_index(
        "ix_meter_project_billing", "meter", ["project", "start_us", "stop_us", "hourly_cents"]
    )
    bind = op.get_bind()
    totals = defaultdict(lambda: {"settled": 0, "held": 0})
    for column, table in (("held", hold), ("settled", spend)):
        for month, applicant_class, cents in bind.execute(
            sa.select(table.c.month, lease.c.applicant_class, sa.func.sum(table.c.cents))
            .join(lease, lease.c.id == table.c.lease_id)
            .group_by(table.c.month, lease.c.applicant_class)
        ):
            totals[month, applicant_class][column] += int(cents)
    rows = [{"month": m, "applicant_class": c, **t} for (m, c), t in totals.items()]
    if rows:
        op.bulk_insert(classmonth, rows)


def downgrade() -> None:
    op.drop_index("ix_meter_project_billing", table_name="meter")
    op.drop_table("classmonth")
