"""The class-totals migration on a database the previous release filled: what each applicant
class uses (the reserve kept for other open-source projects, a favoured approval's check) is
what that release computed, to the cent, and stays so as the books change after the upgrade."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from alembic import command
from sqlalchemy import inspect
from sqlmodel import Session

from commands.billing import cost_by_month, to_us
from commands.credit import ensure_grant
from commands.holds import planned_cost, release_holds
from commands.process import FAVOURED, FOUNDATION, MEMBER, OTHER, reserve
from commands.reserve import class_usage, month_reserves
from storage.db import Database
from storage.models import CreditHold, CreditMonth, Lease, Meter, ServerSpend
from storage.schema import _config
from tests.commands.credit_reference import reference_class_usage
from tests.storage.releases import as_before, models_fit
from tests.storage.test_migration_credit_holds import MONTHS, NOW, POLICY, lease_row, server_row

CLASSES = [[FOUNDATION], [MEMBER], [OTHER], sorted(FAVOURED)]
TIMES = [NOW, NOW + timedelta(hours=7, minutes=3), NOW + timedelta(days=2)]
LEFT_OUT = [None, 1, 2, 7]  # as an approval's check leaves out the lease it decides


def fill_as_the_previous_release(session: Session) -> None:
    """Leases of every class as release 0006 left them: a foundation lease running over the
    month's end with one server gone (settled), an approved member lease, an active lease of
    another project that may bill past its holds (reckoned one by one), one being released
    whose server still bills, a foundation lease long over and settled, a request, and a
    favoured request waiting for its check. Holds, meters and the months' totals as that
    release wrote them."""
    started = NOW - timedelta(days=1, minutes=17)
    leases = [
        lease_row(1, "active", "coredns", starts_at=started, ends_at=started + timedelta(days=2)),
        lease_row(2, "approved", "envoy", decided_at=NOW - timedelta(minutes=1)),
        lease_row(3, "active", "linkerd", starts_at=NOW - timedelta(hours=3), ends_at=NOW),
        lease_row(4, "releasing", "linkerd", starts_at=NOW - timedelta(hours=5), ends_at=NOW),
        lease_row(5, "reclaimed", "coredns", starts_at=NOW - timedelta(days=9), ends_at=NOW),
        lease_row(6, "pending", "envoy", decided_at=None),
        lease_row(7, "pending", "coredns", decided_at=None),
    ]
    classes = (FOUNDATION, MEMBER, OTHER, OTHER, FOUNDATION, OTHER, FOUNDATION)
    for lease, applicant_class in zip(leases, classes, strict=True):
        lease.applicant_class = lease.claimed_class = applicant_class
    servers = [
        server_row(1, 1, active_at=started - timedelta(minutes=4)),
        server_row(2, 1, active_at=started, deleted_at=NOW - timedelta(hours=2, minutes=10)),
        server_row(3, 3, active_at=NOW - timedelta(hours=3)),
        server_row(4, 4, active_at=NOW - timedelta(hours=5)),
        server_row(5, 5, active_at=NOW - timedelta(days=9), deleted_at=NOW - timedelta(days=7)),
    ]
    session.add_all(leases)
    session.flush()
    session.add_all(servers)
    session.flush()
    by_id = {lease.id: lease for lease in leases}
    settled: dict[int, dict[str, int]] = defaultdict(dict)
    for server in (servers[1], servers[4]):
        billed = cost_by_month(server.active_at, server.deleted_at, 1, server.hourly_cents)
        for month, cents in billed.items():
            settled[server.lease_id][month] = cents
            lease = by_id[server.lease_id]
            session.add(
                ServerSpend(
                    server_id=server.id,
                    month=month,
                    lease_id=lease.id,
                    project=lease.project,
                    cents=cents,
                )
            )
    holds = [
        CreditHold(
            lease_id=lease.id,
            month=month,
            project=lease.project,
            cents=max(0, cents - settled[lease.id].get(month, 0)),
            exact_until=NOW - timedelta(hours=1) if lease.id == 3 else None,
        )
        for lease in leases[:3]
        for month, cents in planned_cost(lease, POLICY, NOW).items()
    ]
    session.add_all(holds)
    for server in (servers[0], servers[2], servers[3]):
        session.add(
            Meter(
                server_id=server.id,
                lease_id=server.lease_id,
                project=by_id[server.lease_id].project,
                hourly_cents=server.hourly_cents,
                start_us=to_us(server.active_at),
                held=server.lease_id != 4,
            )
        )
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for lease_id, months in settled.items():
        for month, cents in months.items():
            for key in ("", by_id[lease_id].project):
                totals[month, key][0] += cents
    for row in holds:
        for key in ("", row.project):
            totals[row.month, key][1] += row.cents
    session.add_all(
        CreditMonth(month=m, project=p, settled=s, held=h) for (m, p), (s, h) in totals.items()
    )
    for month in MONTHS:
        ensure_grant(session, month, POLICY, NOW)


def _as_the_previous_release_computed(session: Session) -> dict[tuple, dict[str, int]]:
    return {
        (at, tuple(classes), left_out): reference_class_usage(
            session, MONTHS, at, classes, left_out
        )
        for at in TIMES
        for classes in CLASSES
        for left_out in LEFT_OUT
    }


def test_a_database_of_the_previous_release_upgrades_to_class_totals(db: Database) -> None:
    as_before(db, "0007")
    assert "classmonth" not in inspect(db.engine).get_table_names()
    with models_fit(db):
        with db.write() as session:
            fill_as_the_previous_release(session)
        with db.write() as session:
            before = _as_the_previous_release_computed(session)
    assert any(used[MONTHS[0]] for used in before.values())
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "head")
    indexes = {index["name"] for index in inspect(db.engine).get_indexes("meter")}
    assert "ix_meter_project_billing" in indexes  # the books' sum over running servers
    with db.write() as session:
        for (at, classes, left_out), used in before.items():
            assert class_usage(session, MONTHS, at, list(classes), left_out) == used
        for at in TIMES:
            others = before[at, (OTHER,), None]
            assert month_reserves(session, MONTHS, POLICY, at) == {
                m: reserve(POLICY.monthly_credit_cents, POLICY.reserved_share, others[m], 0)
                for m in MONTHS
            }
    with db.write() as session:  # the foundation lease is released: its holds go back
        released = session.get(Lease, 1)
        released.state = "releasing"
        release_holds(session, released)
    with db.write() as session:
        assert _as_the_previous_release_computed(session) == {
            key: class_usage(session, MONTHS, key[0], list(key[1]), key[2]) for key in before
        }
