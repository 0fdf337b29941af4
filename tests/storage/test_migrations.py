"""Upgrading a database filled by the previous release (schema 0001) to this one, on SQLite and
on PostgreSQL: nothing is lost, and what was in flight carries on."""

from __future__ import annotations

import threading

from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlmodel import select

from commands.notices import Kind, enqueue
from commands.sweep import sweep
from storage.db import Database
from storage.models import Lease, Notice
from storage.schema import MIGRATIONS, upgrade
from tests.conftest import START, make_lab

# What release 0001 wrote: a pending request due at its deadline, and a notice never delivered.
PREVIOUS_RELEASE = [
    """INSERT INTO lease (id, state, version, owner, project, repo_url, purpose, plan, metro, os,
        count, duration_s, extended_s, ssh_key, allow_partial, hourly_cents, created_at,
        decide_by, reason, due_at, flagged)
       VALUES (7, 'pending', 0, 'U0OWNER', 'coredns', 'https://github.com/coredns/coredns',
        'tests', 'c1.small.x86', 'ams1', 'ubuntu_18_04', 1, 3600, 0, '', false, 40,
        '2026-11-01 09:00:00+00:00', '2026-11-02 09:00:00+00:00', '',
        '2026-11-02 09:00:00+00:00', '')""",
    """INSERT INTO notice (id, kind, lease_id, audience, payload, created_at, retry_at, attempts,
        last_error)
       VALUES (1, 'request_received', 7, 'user:U0OWNER', '{"text": "Request #7 received."}',
        '2026-11-01 09:00:00+00:00', '2026-11-01 09:00:00+00:00', 0, '')""",
]


def test_a_database_filled_by_the_previous_release_upgrades_and_carries_on(
    blank_database_url, clock
):
    db = Database(blank_database_url)
    upgrade(db, to="0001")
    with db.engine.begin() as connection:
        for statement in PREVIOUS_RELEASE:
            connection.execute(text(statement))
        if not db.is_sqlite:  # ids were given by hand: move the sequences past them
            connection.execute(text("SELECT setval('lease_id_seq', 7)"))
            connection.execute(text("SELECT setval('notice_id_seq', 1)"))
    upgrade(db)

    with db.read() as session:
        lease = session.get(Lease, 7)
        assert (lease.state, lease.claimed_by, lease.claimed_until) == ("pending", None, None)
        assert session.get(Notice, 1).key is None
    with db.write() as session:  # new notices get a key; the old one's NULL does not collide
        assert enqueue(session, Kind.ADMIN_ALERT, "admin", "after the upgrade", START)
        assert not enqueue(session, Kind.ADMIN_ALERT, "admin", "after the upgrade", START)

    lab = make_lab(db, clock)
    report = sweep(lab, START)  # the request's deadline has passed; the old notice is owed
    assert report.errors == []
    assert lab.notifier.texts(Kind.REQUEST_RECEIVED) == ["Request #7 received."]
    with db.read() as session:
        assert session.get(Lease, 7).state == "expired_request"
        assert len(session.exec(select(Notice)).all()) == 4
    db.dispose()


def test_replicas_starting_together_migrate_once(blank_database_url):
    """Four processes' worth of engines upgrade one empty database at the same instant: one
    migrates, the others wait and find nothing to do; nobody dies of a duplicate table."""
    replicas = [Database(blank_database_url) for _ in range(4)]
    barrier = threading.Barrier(len(replicas))
    errors: list[BaseException] = []

    def start(db: Database) -> None:
        barrier.wait()
        try:
            upgrade(db)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start, args=(db,)) for db in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with replicas[0].engine.connect() as connection:
        version = connection.execute(text("select version_num from alembic_version")).all()
    assert version == [(ScriptDirectory(str(MIGRATIONS)).get_current_head(),)]
    for db in replicas:
        db.dispose()
