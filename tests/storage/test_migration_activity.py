"""The activity migration upgrades a database the previous release filled: its leases and
servers stay as they were, and samples can be kept for them."""

from __future__ import annotations

from alembic import command
from sqlmodel import select

from storage.db import Database
from storage.models import ActivitySample, Lease, Server
from storage.schema import _config
from tests.conftest import START
from tests.storage.releases import as_before, models_fit
from tests.storage.test_migration_credit_holds import lease_row, server_row


def test_a_database_of_the_previous_release_upgrades(db: Database) -> None:
    as_before(db, "0013_activity")
    with models_fit(db), db.write() as session:
        session.add(lease_row(7, "active", "coredns"))
        session.flush()
        session.add(server_row(1, 7, active_at=START))
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "head")
    with db.write() as session:
        server = session.exec(select(Server)).one()
        assert session.get(Lease, 7).state == "active"
        session.add(
            ActivitySample(
                server_id=server.id, lease_id=7, at=START, source="server", interval_s=300
            )
        )
    with db.read() as session:
        sample = session.exec(select(ActivitySample)).one()
        assert (sample.cpu_busy, sample.net_bytes, sample.sessions) == (None, None, None)
