"""The keys migration (saved SSH keys, co-owners, the keys each server was created with) upgrades a
database filled by the previous release: its leases and servers survive, and the servers read as
created with no recorded keys."""

from __future__ import annotations

from datetime import timedelta

from alembic import command
from sqlalchemy import inspect, text
from sqlmodel import select

from storage.db import Database
from storage.models import CoOwner, Lease, Server, ServerKeys, SshKey
from storage.schema import _config
from tests.conftest import OWNER, START
from tests.storage.releases import as_before


def test_a_database_of_the_previous_release_upgrades(db: Database) -> None:
    as_before(db, "0004")
    assert "sshkey" not in inspect(db.engine).get_table_names()
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "insert into lease (id, state, version, owner, project, repo_url, purpose, plan,"
                " metro, os, count, duration_s, extended_s, ssh_key, allow_partial,"
                " hourly_cents, created_at, decided_at, starts_at, ends_at, reason, flagged)"
                " values (1, 'active', 3, :owner, 'coredns', 'https://github.com/coredns/coredns',"
                " 'tests', 'c1.small.x86', 'ams1', 'ubuntu_16_04', 1, 172800, 0, '', :partial,"
                " 40, :at, :at, :at, :end, '', '')"
            ),
            {"owner": OWNER, "at": START, "end": START + timedelta(hours=48), "partial": False},
        )
        connection.execute(
            text(
                "insert into server (id, lease_id, hostname, plan, metro, state, ips,"
                " hourly_cents, create_attempts, delete_attempts, last_error) values"
                " (1, 1, 'coredns-1-1', 'c1.small.x86', 'ams1', 'active', '10.0.0.1', 40,"
                " 1, 0, '')"
            )
        )
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "head")
    assert {"sshkey", "coowner", "serverkeys"} <= set(inspect(db.engine).get_table_names())
    with db.read() as session:
        assert session.get(Lease, 1).owner == OWNER
        server = session.get(Server, 1)
        assert server.hostname == "coredns-1-1"
        assert session.exec(select(ServerKeys)).all() == []
        assert session.exec(select(SshKey)).all() == []
        assert session.exec(select(CoOwner)).all() == []
