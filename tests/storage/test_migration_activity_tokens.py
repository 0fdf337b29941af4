"""The activity tokens migration upgrades a database the previous release filled: its servers
stay as they were (with no token: they send no reports), and tokens can be kept for new ones."""

from __future__ import annotations

from sqlmodel import select

from storage.db import Database
from storage.models import ActivityToken, Lease
from tests.conftest import START
from tests.storage.releases import upgraded_with_one_active_server


def test_a_database_of_the_previous_release_upgrades(db: Database) -> None:
    server_id = upgraded_with_one_active_server(db, "0018_activity_tokens")
    with db.write() as session:
        assert session.get(Lease, 7).state == "active"
        assert session.exec(select(ActivityToken)).all() == []
        session.add(ActivityToken(server_id=server_id, token_hash="ab" * 32, issued_at=START))
    with db.read() as session:
        assert session.exec(select(ActivityToken.token_hash)).one() == "ab" * 32
