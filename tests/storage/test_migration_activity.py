"""The activity migration upgrades a database the previous release filled: its leases and
servers stay as they were, and samples can be kept for them."""

from __future__ import annotations

from sqlmodel import select

from storage.db import Database
from storage.models import ActivitySample, Lease
from tests.conftest import START
from tests.storage.releases import upgraded_with_one_active_server


def test_a_database_of_the_previous_release_upgrades(db: Database) -> None:
    server_id = upgraded_with_one_active_server(db, "0013_activity")
    with db.write() as session:
        assert session.get(Lease, 7).state == "active"
        session.add(
            ActivitySample(
                server_id=server_id, lease_id=7, at=START, source="server", interval_s=300
            )
        )
    with db.read() as session:
        sample = session.exec(select(ActivitySample)).one()
        assert (sample.cpu_busy, sample.net_bytes, sample.sessions) == (None, None, None)
