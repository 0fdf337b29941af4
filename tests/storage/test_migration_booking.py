"""The booking migration upgrades a database the previous release filled: its leases start when
approved, in their one metro, as before."""

from __future__ import annotations

from alembic import command

from storage.db import Database
from storage.models import Lease
from storage.schema import _config
from tests.storage.releases import as_before, models_fit
from tests.storage.test_migration_credit_holds import lease_row


def test_a_database_of_the_previous_release_upgrades(db: Database) -> None:
    as_before(db, "0014_booking")
    with models_fit(db), db.write() as session:
        session.add(lease_row(7, "pending", "coredns"))
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "head")
    with db.read() as session:
        lease = session.get(Lease, 7)
        assert lease.book_start is None
        assert lease.per_metro() == {"ams1": 2}


def test_a_lease_across_metros_reads_its_counts_in_the_order_asked() -> None:
    lease = lease_row(8, "pending", "coredns", metro="ewr1", metro_counts="ewr1:3,ams1:1")
    assert lease.per_metro() == {"ewr1": 3, "ams1": 1}
