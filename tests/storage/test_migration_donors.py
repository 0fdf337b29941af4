"""The donors migration upgrades a database filled by the previous release: every lease it held
is billed to the one donor a lab had then."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from storage.db import Database
from storage.schema import _config
from tests.conftest import OWNER, START
from tests.storage.releases import as_before


def test_every_lease_of_the_previous_release_belongs_to_the_first_donor(db: Database) -> None:
    as_before(db, "0009")
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "insert into lease (id, state, version, owner, project, repo_url, purpose, plan,"
                " metro, os, count, duration_s, extended_s, ssh_key, allow_partial, hourly_cents,"
                " created_at, reason, flagged, applicant_class, claimed_class, member_org,"
                " class_note, repo_check) values (1, 'active', 0, :owner, 'demo',"
                " 'https://github.com/o/r', 'p', 'c3.small.x86', 'sv', 'ubuntu_22_04', 2, 3600,"
                " 0, '', false, 50, :at, '', '', 'other', 'other', '', '', '')"
            ),
            {"owner": OWNER, "at": START},
        )
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "head")
    with db.engine.begin() as connection:
        assert connection.execute(text("select donor from lease")).scalars().all() == ["lab"]
