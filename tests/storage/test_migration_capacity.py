"""The capacity migration upgrades a database the previous release filled: its live leases are
on the calendar at once (under the row of a lease whose days are not filed yet), its ended ones
are not, and a check reads them exactly."""

from __future__ import annotations

from datetime import timedelta

from alembic import command
from sqlmodel import select

from commands.capacity import UNKNOWN_DAY, held
from commands.policy import Policy
from storage.db import Database
from storage.models import CapacityDay
from storage.schema import _config
from tests.storage.releases import as_before, models_fit
from tests.storage.test_migration_credit_holds import NOW, lease_row


def test_a_database_of_the_previous_release_upgrades(db: Database) -> None:
    as_before(db, "0016_capacity")
    with models_fit(db), db.write() as session:
        session.add(lease_row(1, "active", "coredns", starts_at=NOW, ends_at=NOW + timedelta(2)))
        session.add(lease_row(2, "approved", "envoy"))
        session.add(lease_row(3, "reclaimed", "linkerd"))
        session.add(lease_row(4, "pending", "vitess"))
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "head")
    with db.read() as session:
        rows = session.exec(select(CapacityDay).order_by(CapacityDay.lease_id)).all()
        found = held(session, Policy(), "c1.small.x86", "ams1", NOW, NOW + timedelta(1), NOW)
    assert [(r.lease_id, r.day) for r in rows] == [(1, UNKNOWN_DAY), (2, UNKNOWN_DAY)]
    assert sorted(h.lease_id for h in found) == [1, 2]
    assert found[0].count == 2
