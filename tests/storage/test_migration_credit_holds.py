"""The credit-holds migration on a database the previous release filled: its books, read from
the new holds and totals, are the books that release computed (the reference), to the cent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic.script import ScriptDirectory
from sqlalchemy import text

from commands.billing import cost_by_month
from commands.credit import books, month_tally
from commands.holds import renote_lapsed_exactness
from commands.policy import Policy
from commands.states import ServerState
from storage.models import Lease, Server, ServerSpend
from storage.schema import MIGRATIONS, upgrade
from tests.commands.credit_reference import reference_books, reference_tally
from tests.storage.releases import models_fit

NOW = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
MONTHS = ["2026-11", "2026-12"]
POLICY = Policy(grace=timedelta(hours=2))
# The holds migration comes last: the test fills the schema just before it through the models.
HOLDS = "0005"
BEFORE = ScriptDirectory(str(MIGRATIONS)).get_revision(HOLDS).down_revision


def lease_row(lease_id: int, state: str, project: str, **values) -> Lease:
    base = dict(
        id=lease_id,
        state=state,
        owner="U0OWNER",
        project=project,
        repo_url="https://github.com/x/y",
        purpose="tests",
        plan="c1.small.x86",
        metro="ams1",
        os="ubuntu_16_04",
        count=2,
        duration_s=48 * 3600,
        hourly_cents=40,
        created_at=NOW - timedelta(days=3),
        decided_at=NOW - timedelta(days=2, hours=23),
        backstop_at=NOW + timedelta(days=3),
    )
    return Lease(**{**base, **values})


def server_row(server_id: int, lease_id: int, active_at=None, deleted_at=None) -> Server:
    return Server(
        id=server_id,
        lease_id=lease_id,
        hostname=f"h-{server_id}",
        plan="c1.small.x86",
        metro="ams1",
        state=ServerState.DELETED
        if deleted_at
        else (ServerState.ACTIVE if active_at else ServerState.PROVISIONING),
        provider_id=f"sim-{server_id}",
        hourly_cents=40,
        active_at=active_at,
        deleted_at=deleted_at,
    )


def fill_as_the_previous_release(db) -> None:
    """Rows as release 0001's code wrote them: a lease running over the month's end with one
    server already gone (its spend written down), one provisioning, one approved, one being
    released whose server still runs, one over and settled, and a request."""
    started = NOW - timedelta(days=1, minutes=17)
    leases = [
        lease_row(1, "active", "coredns", starts_at=started, ends_at=started + timedelta(hours=48)),
        lease_row(2, "provisioning", "envoy", count=3, decided_at=NOW - timedelta(minutes=20)),
        lease_row(3, "approved", "coredns", decided_at=NOW - timedelta(minutes=1)),
        lease_row(
            4,
            "releasing",
            "envoy",
            starts_at=NOW - timedelta(hours=5),
            ends_at=NOW + timedelta(hours=43),
            ended_at=NOW - timedelta(minutes=3),
        ),
        lease_row(
            5,
            "reclaimed",
            "coredns",
            starts_at=NOW - timedelta(days=9),
            ends_at=NOW - timedelta(days=7),
            ended_at=NOW - timedelta(days=7),
        ),
        lease_row(6, "pending", "envoy", decided_at=None),
    ]
    servers = [
        server_row(1, 1, active_at=started - timedelta(minutes=4)),
        server_row(2, 1, active_at=started, deleted_at=NOW - timedelta(hours=2, minutes=10)),
        server_row(3, 2, active_at=NOW - timedelta(minutes=5)),
        server_row(4, 2),
        server_row(5, 4, active_at=NOW - timedelta(hours=5)),
        server_row(6, 5, active_at=NOW - timedelta(days=9), deleted_at=NOW - timedelta(days=7)),
    ]
    spends = [
        ServerSpend(server_id=s.id, month=month, lease_id=s.lease_id, project=p, cents=cents)
        for s, p in ((servers[1], "coredns"), (servers[5], "coredns"))
        for month, cents in cost_by_month(s.active_at, s.deleted_at, 1, s.hourly_cents).items()
    ]
    with db.write() as session:
        session.add_all(leases)
        session.flush()
        session.add_all(servers)
        session.flush()
        session.add_all(spends)


def _migrated(db_path):
    """A database the previous release filled, upgraded to the holds and every migration since;
    and what that release's books said."""
    from storage.db import Database

    db = Database(f"sqlite:///{db_path}")
    upgrade(db, to=BEFORE)  # every schema change before the holds: the models fill it
    with models_fit(db):
        fill_as_the_previous_release(db)
        with db.write() as session:  # what the previous release's books said
            before = reference_tally(session, MONTHS, POLICY, NOW, None)
    upgrade(db, grace=POLICY.grace)
    return db, before


def _books_match_the_reference(db) -> None:
    for now in (NOW, NOW + timedelta(hours=7, minutes=3), NOW + timedelta(days=2)):
        with db.write() as session:
            assert books(session, MONTHS, POLICY, now) == reference_books(
                session, MONTHS, POLICY, now
            )
            for project in ("coredns", "envoy"):
                assert books(session, MONTHS, POLICY, now, project=project) == (
                    reference_books(session, MONTHS, POLICY, now, project=project)
                )
            tally = month_tally(session, "2026-11", POLICY, now).projects
            spent, committed = reference_tally(session, ["2026-11"], POLICY, now, None)
            assert dict(tally.spent) == {k: v for k, v in spent.items() if v}
            assert {k: v for k, v in tally.committed.items() if v} == {
                k: v for k, v in committed.items() if v
            }


def test_the_holds_migration_converts_a_database_filled_by_the_previous_release(db_path):
    db, before = _migrated(db_path)
    try:
        with db.engine.connect() as connection:
            assert connection.execute(text("select count(*) from credithold")).scalar()
        _books_match_the_reference(db)
        with db.write() as session:
            after = books(session, MONTHS, POLICY, NOW)
        spent, committed = before
        for month in MONTHS:
            assert after[month].spent == sum(c for (_, m), c in spent.items() if m == month)
            assert after[month].committed == sum(c for (_, m), c in committed.items() if m == month)
            assert after[month].committed > 0
    finally:
        db.dispose()


def test_migrated_leases_within_their_holds_are_no_longer_reckoned_one_by_one(db_path):
    db, _ = _migrated(db_path)
    try:
        with db.write() as session:
            looked_at = renote_lapsed_exactness(session, NOW)
        with db.write() as session:
            still = renote_lapsed_exactness(session, NOW)
        assert looked_at  # every migrated live lease starts out reckoned one by one
        assert still == []  # their servers all stay within their holds: exact again
        _books_match_the_reference(db)  # and the books are the same, to the cent
    finally:
        db.dispose()
