"""The activity tokens migration upgrades a database the previous release filled: its servers
stay as they were (with no token: they send no reports), and tokens can be kept for new ones."""

from __future__ import annotations

from alembic import command
from sqlmodel import select

from storage.db import Database
from storage.models import ActivityToken, Lease, Server
from storage.schema import _config
from tests.conftest import START
from tests.storage.releases import as_before, models_fit
from tests.storage.test_migration_credit_holds import lease_row, server_row


def test_a_database_of_the_previous_release_upgrades(db: Database) -> None:
    as_before(db, "0018_activity_tokens")
    with models_fit(db), db.write() as session:
        session.add(lease_row(7, "active", "coredns"))
        session.flush()
        session.add(server_row(1, 7, active_at=START))
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "head")
    with db.write() as session:
        server = session.exec(select(Server)).one()
        assert session.get(Lease, 7).state == "active"
        assert session.exec(select(ActivityToken)).all() == []
        session.add(ActivityToken(server_id=server.id, token_hash="ab" * 32, issued_at=START))
    with db.read() as session:
        assert session.exec(select(ActivityToken.token_hash)).one() == "ab" * 32
