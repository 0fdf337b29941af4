"""The donor-books migration on a database the previous release filled (one donor, holds,
meters, settled spend, the months' totals by project and by class, grants, overrides, an alert
already sent): after the upgrade everything belongs to the one donor, "lab", and every month's
books, the lab's and that donor's, each project's and each class's, are what that release's
books said, to the cent."""

from __future__ import annotations

from collections import defaultdict

from alembic import command
from sqlalchemy import func, text
from sqlmodel import Session, col, select

from commands.credit import GRANT, OVERRIDE, MonthBooks, books, month_tally
from commands.credit_report import credit_report
from commands.holds import refresh_exactness_all
from commands.reserve import RESERVE_OVERRIDE, class_usage
from storage.db import Database
from storage.models import ClassMonth, CreditHold, Lease, LedgerEntry, Marker, ServerSpend
from storage.schema import _config
from tests.commands.credit_reference import reference_class_usage, reference_tally
from tests.conftest import make_lab
from tests.storage.releases import as_before, models_fit
from tests.storage.test_migration_class_totals import (
    CLASSES,
    LEFT_OUT,
    TIMES,
    fill_as_the_previous_release,
)
from tests.storage.test_migration_credit_holds import MONTHS, NOW, POLICY

PROJECTS = ["coredns", "envoy", "linkerd"]


def fill_as_release_0009(session: Session) -> None:
    """The class-totals release's rows, with what that release added since: the classes'
    totals, an admin's override of the month and one of the reserve, a credit alert sent."""
    fill_as_the_previous_release(session)
    session.flush()
    # Lease 1's first server came up before its window began: note when it may bill past its
    # holds, as that release did whenever it wrote them (lease 3 already bills past them).
    refresh_exactness_all(session, [1, 2])
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for n, table in enumerate((ServerSpend, CreditHold)):
        for month, applicant_class, cents in session.exec(
            select(table.month, Lease.applicant_class, func.sum(table.cents))
            .join(Lease, col(Lease.id) == table.lease_id)
            .group_by(table.month, Lease.applicant_class)
        ).all():
            totals[month, applicant_class][n] += int(cents)
    session.add_all(
        ClassMonth(month=m, applicant_class=c, settled=s, held=h)
        for (m, c), (s, h) in totals.items()
    )
    for kind, cents in ((OVERRIDE, 1_234), (RESERVE_OVERRIDE, 567)):
        session.add(
            LedgerEntry(
                month=MONTHS[0],
                kind=kind,
                amount_cents=cents,
                actor="U0ADMIN",
                reason="the release is this week",
                lease_id=1,
                created_at=NOW,
            )
        )
    session.add(Marker(key=f"credit-alert:{MONTHS[0]}:80", at=NOW))


def the_books(session: Session) -> dict:
    """Every month's books at several times from scratch (the reference) and the ledger: the
    lab's, each project's, what each class uses (with a lease left out, as a check does)."""
    found = {}
    for at in TIMES:
        spent, committed = reference_tally(session, MONTHS, POLICY, at, None)
        for month in MONTHS:
            ledger = dict(
                session.exec(
                    select(LedgerEntry.kind, func.sum(LedgerEntry.amount_cents))
                    .where(LedgerEntry.month == month, col(LedgerEntry.project).is_(None))
                    .group_by(LedgerEntry.kind)
                ).all()
            )
            found[at, month] = MonthBooks(
                month,
                ledger[GRANT],
                ledger.get(OVERRIDE, 0),
                sum(c for (_, m), c in spent.items() if m == month),
                sum(c for (_, m), c in committed.items() if m == month),
            )
            for project in PROJECTS:
                found[at, month, project] = (spent[project, month], committed[project, month])
        for classes in CLASSES:
            for left_out in LEFT_OUT:
                found[at, tuple(classes), left_out] = reference_class_usage(
                    session, MONTHS, at, classes, left_out
                )
    return found


def test_a_database_of_the_previous_release_is_all_the_first_donors_to_the_cent(
    db: Database, clock
) -> None:
    as_before(db, "0010_donor_books")
    with models_fit(db):
        with db.write() as session:
            fill_as_release_0009(session)
        with db.write() as session:
            before = the_books(session)
    assert any(b.committed for k, b in before.items() if len(k) == 2)
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "head")
    with db.write() as session:
        assert the_books(session) == before  # nothing written twice: grants, totals
        for at in TIMES:
            for donor in (None, "lab"):
                assert books(session, MONTHS, POLICY, at, donor=donor) == {
                    m: before[at, m] for m in MONTHS
                }
            for project in PROJECTS:
                assert {
                    m: (b.spent, b.committed)
                    for m, b in books(session, MONTHS, POLICY, at, project=project).items()
                } == {m: before[at, m, project] for m in MONTHS}
            for month in MONTHS:
                tally = month_tally(session, month, POLICY, at)
                assert tally.books == tally.donors["lab"] == before[at, month]
            for classes in CLASSES:
                for left_out in LEFT_OUT:
                    for donor in (None, "lab"):
                        assert (
                            class_usage(session, MONTHS, at, classes, left_out, donor)
                            == before[at, tuple(classes), left_out]
                        )
    with db.engine.connect() as connection:
        assert connection.execute(
            text("select key from ledgerentry where kind = 'grant' order by month")
        ).scalars().all() == [f"grant:lab:{m}" for m in MONTHS]
        assert set(
            connection.execute(text("select distinct donor from ledgerentry")).scalars()
        ) == {"lab"}
        assert connection.execute(text("select key from marker")).scalars().all() == [
            f"credit-alert:lab:{MONTHS[0]}:80"
        ]
    report = credit_report(make_lab(db, clock, POLICY), NOW, MONTHS[0])
    assert report.donors == [] and "By donor" not in report.text()  # one donor: as before
