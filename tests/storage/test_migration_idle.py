"""The idle migration upgrades a database the previous release filled: its leases stay as they
were, none has been asked about being idle, and a watch can be kept for each."""

from __future__ import annotations

from alembic import command
from sqlmodel import select

from storage.db import Database
from storage.models import IdleWatch, Lease
from storage.schema import _config
from tests.conftest import START
from tests.storage.releases import as_before, models_fit
from tests.storage.test_migration_credit_holds import lease_row


def test_a_database_of_the_previous_release_upgrades(db: Database) -> None:
    as_before(db, "0019_idle")
    with models_fit(db), db.write() as session:
        session.add(lease_row(7, "active", "coredns"))
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "head")
    with db.write() as session:
        assert session.get(Lease, 7).state == "active"
        assert session.exec(select(IdleWatch)).all() == []
        session.add(IdleWatch(lease_id=7, check_at=START, asked_at=START, round=1))
    with db.read() as session:
        watch = session.get(IdleWatch, 7)
        assert (watch.round, watch.escalated_at, watch.snoozed_until) == (1, None, None)
