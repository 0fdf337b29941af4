"""donor books: every total, hold, meter, settlement and ledger row carries its donor

Revision ID: 0010_donor_books
Revises: 0009
Create Date: 2026-12-07 14:40:00

Converts a database written by the previous release, whose lab had one donor: everything its
books hold belongs to that donor, "lab" (commands.donors.FIRST_DONOR), so no figure changes.
The month's totals become the donor's month; each project's totals are split by applicant
class (summed from the holds and settled spend of its leases, whose class never changes, as
0007 did for the classes); the month's lock row (donor '') is what approvals lock; the grants'
keys and the credit alerts' markers name their donor (`grant:lab:MONTH`).
"""

from collections import defaultdict

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010_donor_books"
down_revision = "0009"
branch_labels = None
depends_on = None

FIRST_DONOR = "lab"
TEXT = sqlmodel.sql.sqltypes.AutoString
CARRIERS = ("credithold", "meter", "serverspend", "ledgerentry")

lease = sa.table(
    "lease",
    sa.column("id", sa.Integer),
    sa.column("project", sa.String),
    sa.column("applicant_class", sa.String),
)
parts = [
    sa.table(
        name,
        sa.column("lease_id", sa.Integer),
        sa.column("month", sa.String),
        sa.column("cents", sa.Integer),
    )
    for name in ("serverspend", "credithold")  # settled, held
]


def _totals(name: str, key: list[str]):
    return op.create_table(
        name,
        sa.Column("month", TEXT(), nullable=False),
        sa.Column("donor", TEXT(), nullable=False),
        *[sa.Column(column, TEXT(), nullable=False) for column in key],
        sa.Column("settled", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("month", "donor", *key),
    )


def upgrade() -> None:
    bind = op.get_bind()
    for name in CARRIERS:
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("donor", TEXT(), nullable=False, server_default=FIRST_DONOR)
            )
    op.create_index("ix_serverspend_donor", "serverspend", ["donor"])
    op.create_index("ix_ledgerentry_donor", "ledgerentry", ["donor"])
    op.create_index(
        "ix_meter_donor_billing",
        "meter",
        ["donor", "project", "start_us", "stop_us", "hourly_cents"],
    )
    op.execute(
        "UPDATE ledgerentry SET key = 'grant:lab:' || month "
        "WHERE kind = 'grant' AND key = 'grant:' || month"
    )
    op.execute(  # the credit alerts already sent: the one donor's
        "UPDATE marker SET key = 'credit-alert:lab:' || substr(key, 14) "
        "WHERE key LIKE 'credit-alert:%'"
    )

    months = sa.table(
        "creditmonth",
        sa.column("month", sa.String),
        sa.column("project", sa.String),
        sa.column("settled", sa.Integer),
        sa.column("held", sa.Integer),
    )
    rows = []
    for month, project, settled, held in bind.execute(
        sa.select(months.c.month, months.c.project, months.c.settled, months.c.held).where(
            months.c.project == ""
        )
    ):
        rows.append(_row(month, "", "", "", 0, 0))  # the month's lock row
        rows.append(_row(month, FIRST_DONOR, "", "", settled, held))
    by_class: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for n, table in enumerate(parts):
        for month, project, applicant_class, cents in bind.execute(
            sa.select(table.c.month, lease.c.project, lease.c.applicant_class, sa.func.sum(table.c.cents))
            .join(lease, lease.c.id == table.c.lease_id)
            .group_by(table.c.month, lease.c.project, lease.c.applicant_class)
        ):
            by_class[month, project, applicant_class][n] += int(cents)
    rows += [
        _row(month, FIRST_DONOR, project, applicant_class, settled, held)
        for (month, project, applicant_class), (settled, held) in by_class.items()
    ]
    op.drop_table("creditmonth")
    creditmonth = _totals("creditmonth", ["project", "applicant_class"])
    if rows:
        op.bulk_insert(creditmonth, rows)

    classes = [
        {"month": m, "donor": FIRST_DONOR, "applicant_class": c, "settled": s, "held": h}
        for m, c, s, h in bind.execute(
            sa.text("SELECT month, applicant_class, settled, held FROM classmonth")
        )
    ]
    op.drop_table("classmonth")
    classmonth = _totals("classmonth", ["applicant_class"])
    if classes:
        op.bulk_insert(classmonth, classes)


def _row(month: str, donor: str, project: str, applicant_class: str, settled: int, held: int):
    return {
        "month": month,
        "donor": donor,
        "project": project,
        "applicant_class": applicant_class,
        "settled": settled,
        "held": held,
    }


def downgrade() -> None:
    bind = op.get_bind()
    months = defaultdict(lambda: [0, 0])
    for month, project, settled, held in bind.execute(
        sa.text("SELECT month, project, settled, held FROM creditmonth WHERE donor != ''")
    ):
        months[month, project][0] += settled
        months[month, project][1] += held
    classes = defaultdict(lambda: [0, 0])
    for month, applicant_class, settled, held in bind.execute(
        sa.text("SELECT month, applicant_class, settled, held FROM classmonth")
    ):
        classes[month, applicant_class][0] += settled
        classes[month, applicant_class][1] += held
    op.drop_table("creditmonth")
    op.drop_table("classmonth")
    for name, key, totals in (
        ("creditmonth", "project", months),
        ("classmonth", "applicant_class", classes),
    ):
        table = op.create_table(
            name,
            sa.Column("month", TEXT(), nullable=False),
            sa.Column(key, TEXT(), nullable=False),
            sa.Column("settled", sa.Integer(), nullable=False),
            sa.Column("held", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("month", key),
        )
        rows = [{"month": m, key: k, "settled": s, "held": h} for (m, k), (s, h) in totals.items()]
        if rows:
            op.bulk_insert(table, rows)
    op.execute(
        "UPDATE ledgerentry SET key = 'grant:' || month "
        "WHERE kind = 'grant' AND key = 'grant:lab:' || month"
    )
    op.execute(
        "UPDATE marker SET key = 'credit-alert:' || substr(key, 18) "
        "WHERE key LIKE 'credit-alert:lab:%'"
    )
    op.drop_index("ix_meter_donor_billing", table_name="meter")
    op.drop_index("ix_ledgerentry_donor", table_name="ledgerentry")
    op.drop_index("ix_serverspend_donor", table_name="serverspend")
    for name in CARRIERS:
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_column("donor")
