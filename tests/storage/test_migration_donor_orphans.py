"""The donor-orphans migration upgrades a database filled by the previous release: every orphan
it recorded was found in the one provider account a lab had then."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from storage.db import Database
from storage.schema import _config
from tests.conftest import START
from tests.storage.releases import as_before


def test_every_orphan_of_the_previous_release_belongs_to_the_first_donor(db: Database) -> None:
    as_before(db, "0011_donor_orphans")
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "insert into orphan (provider_id, hostname, first_seen) values ('dev-1', 'h1', :at)"
            ),
            {"at": START},
        )
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "head")
    with db.engine.begin() as connection:
        rows = connection.execute(text("select provider_id, donor from orphan")).all()
    assert [tuple(row) for row in rows] == [("dev-1", "lab")]
