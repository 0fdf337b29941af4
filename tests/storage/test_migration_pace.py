"""The pace migration upgrades a database filled by the previous release: a notice a replica of
that release had claimed is not held up by the claim (claims are now an audience's), and the
pace table starts empty and usable."""

from __future__ import annotations

from datetime import timedelta

from alembic import command
from sqlalchemy import inspect, text

from commands.notices import deliver
from fakes.notifier import RecordingNotifier
from storage.db import Database
from storage.schema import _config
from tests.conftest import OWNER, START
from tests.storage.releases import as_before


def test_a_database_of_the_previous_release_upgrades(db: Database) -> None:
    as_before(db, "0008")
    assert "pace" not in inspect(db.engine).get_table_names()
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "insert into notice (id, kind, audience, payload, created_at, retry_at, attempts,"
                " last_error, claimed_by, claimed_until) values (1, 'shared', :audience,"
                " '{\"text\": \"Lease #1 was shared with you.\"}', :at, :at, 1, '', 'old:1:abc',"
                " :until)"
            ),
            {"audience": f"user:{OWNER}", "at": START, "until": START + timedelta(minutes=1)},
        )
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "head")
    columns = {c["name"] for c in inspect(db.engine).get_columns("notice")}
    assert "claimed_by" not in columns and "claimed_until" not in columns
    with db.engine.begin() as connection:
        assert connection.execute(text("select count(*) from pace")).scalar() == 0

    notifier = RecordingNotifier()
    assert deliver(db, notifier, START + timedelta(seconds=1), owner="new:1:def") == 1
    assert notifier.texts() == ["Lease #1 was shared with you."]
