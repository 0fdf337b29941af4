"""The inbox-for-all migration upgrades a database whose inbox holds clicks kept by the previous
release: they stay due, each with a key of its own, and new rows are keyed and marked done."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from storage.db import Database
from storage.schema import _config
from tests.conftest import START
from tests.storage.releases import as_before


def test_a_database_of_the_previous_release_upgrades(db: Database) -> None:
    as_before(db, "0012_inbox_for_all")
    with db.engine.begin() as connection:
        for replica in ("a", "b"):
            connection.execute(
                text(
                    "insert into inboxitem (received_at, body, attempts, claimed_by,"
                    " claimed_until) values (:at, '{}', 1, :replica, :until)"
                ),
                {"at": START, "replica": replica, "until": START + timedelta(minutes=2)},
            )
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "head")
    with db.engine.begin() as connection:
        rows = connection.execute(text("select key, done_at from inboxitem order by id")).all()
        assert [done for _, done in rows] == [None, None]  # still due
        assert len({key for key, _ in rows}) == 2
        connection.execute(
            text(
                "insert into inboxitem (key, received_at, body, attempts, done_at)"
                " values ('trigger:1', :at, '{}', 1, :at)"
            ),
            {"at": START},
        )
    with pytest.raises(IntegrityError), db.engine.begin() as connection:
        connection.execute(
            text(
                "insert into inboxitem (key, received_at, body, attempts)"
                " values ('trigger:1', :at, '{}', 0)"
            ),
            {"at": START},
        )
