"""Migration 0004 upgrades a database filled by the previous release (schema 0001)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from storage.db import Database
from storage.models import Lease
from storage.schema import _config, upgrade


def test_a_database_of_the_previous_release_upgrades_and_keeps_its_leases(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "0001")
        connection.execute(
            text(
                "INSERT INTO lease (state, version, owner, project, repo_url, purpose, plan, "
                "metro, os, count, duration_s, extended_s, ssh_key, allow_partial, hourly_cents, "
                "created_at, reason, flagged) VALUES ('reclaimed', 3, 'U0OLD', 'coredns', "
                "'https://github.com/coredns/coredns', 'scale tests', 'c1.small.x86', 'ams1', "
                "'ubuntu_16_04', 2, 7200, 0, '', 0, 40, '2026-10-01 09:00:00.000000', '', '')"
            )
        )
    upgrade(db)
    with db.read() as session:
        lease = session.get(Lease, 1)
    assert (lease.project, lease.state, lease.count) == ("coredns", "reclaimed", 2)
    assert (lease.applicant_class, lease.claimed_class, lease.class_note) == ("other", "other", "")
    assert lease.repo_check.startswith("not checked") and lease.repo_ok is None
    assert lease.repo_check_at is None and lease.writeup_remind_at is None
    db.dispose()
