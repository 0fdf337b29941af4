"""The inbox migration upgrades a database filled by the previous release: its leases survive,
and the inbox starts empty and usable."""

from __future__ import annotations

from datetime import timedelta

from alembic import command
from sqlalchemy import inspect, text

from storage.db import Database
from storage.schema import _config
from tests.conftest import OWNER, START
from tests.storage.releases import as_before


def test_a_database_of_the_previous_release_upgrades(db: Database) -> None:
    as_before(db, "0006")
    assert "inboxitem" not in inspect(db.engine).get_table_names()
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "insert into lease (id, state, version, owner, project, repo_url, purpose, plan,"
                " metro, os, count, duration_s, extended_s, ssh_key, allow_partial,"
                " hourly_cents, created_at, reason, flagged)"
                " values (1, 'pending', 1, :owner, 'coredns', 'https://github.com/coredns/coredns',"
                " 'tests', 'c1.small.x86', 'ams1', 'ubuntu_16_04', 1, 172800, 0, '', :partial,"
                " 40, :at, '', '')"
            ),
            {"owner": OWNER, "at": START, "partial": False},
        )
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "head")
    with db.engine.begin() as connection:
        assert connection.execute(text("select state from lease where id = 1")).scalar() == (
            "pending"
        )
        assert connection.execute(text("select count(*) from inboxitem")).scalar() == 0
        connection.execute(
            text(
                "insert into inboxitem (key, received_at, body, attempts, claimed_by,"
                " claimed_until) values ('trigger:1', :at, '{}', 1, 'replica', :until)"
            ),
            {"at": START, "until": START + timedelta(minutes=2)},
        )
        assert connection.execute(text("select count(*) from inboxitem")).scalar() == 1
