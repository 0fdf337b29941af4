"""The `labbot` command line against a real database file named by DATABASE_URL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect
from sqlmodel import select

from bot.cli import main
from commands.lab import Lab
from commands.policy import Policy
from commands.request import request
from fakes.notifier import RecordingNotifier
from metal.simulated import SimulatedProvider
from storage.db import Database
from storage.models import Notice
from storage.schema import upgrade
from tests.conftest import OWNER, ROLES, request_input


@pytest.fixture
def env(database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    for name in ("LABBOT_CONFIG", "PACKET_AUTH_TOKEN", "LABBOT_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    return database_url


@pytest.fixture
def filed(env) -> int:
    db = Database(env)
    upgrade(db)
    lab = Lab(db, SimulatedProvider(db), RecordingNotifier(), Policy(), ROLES)
    outcome = request(lab, OWNER, request_input(), datetime.now(UTC))
    db.dispose()
    return outcome.lease_id


def test_db_upgrade(env, capsys):
    assert main(["db", "upgrade"]) == 0
    assert "is up to date" in capsys.readouterr().out
    db = Database(env)
    assert "lease" in inspect(db.engine).get_table_names()
    db.dispose()


def test_leases_and_show(filed, capsys):
    assert main(["leases"]) == 0
    assert f"#{filed} coredns: 3 x c1.small.x86 in ams1 for 2d — pending" in capsys.readouterr().out
    assert main(["leases", "--state", "active"]) == 0
    assert "no leases match" in capsys.readouterr().err
    assert main(["show", str(filed)]) == 0
    assert f"Lease #{filed} for coredns" in capsys.readouterr().out
    assert main(["show", "999"]) == 1
    captured = capsys.readouterr()
    assert "There is no lease #999" in captured.err and captured.out == ""


def test_credit(filed, capsys):
    assert main(["credit", "--month", "2026-11"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Credit for 2026-11:") and "granted $25,000.00" in out
    assert main(["credit", "--month", "2026-13"]) == 2
    assert "--month takes YYYY-MM" in capsys.readouterr().err
    assert main(["credit", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lab"]["granted"] == 2_500_000


def test_sweep_dry_run_does_nothing(filed, capsys):
    assert main(["sweep", "--once", "--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == "nothing is due"
    assert main(["audit", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["action"] for r in rows] == ["request"]
    assert main(["audit"]) == 0
    assert capsys.readouterr().out.startswith("id,at,actor,action,lease_id,outcome,details")


def test_errors_go_to_stderr_with_a_non_zero_exit(env, capsys, monkeypatch):
    monkeypatch.setenv("LABBOT_MAX_SERVERS", "lots")
    assert main(["leases"]) == 2
    captured = capsys.readouterr()
    assert "LABBOT_MAX_SERVERS must be a whole number" in captured.err
    assert captured.out == ""
    monkeypatch.delenv("LABBOT_MAX_SERVERS")
    assert main(["resolve", "5"]) == 1
    assert "There is no lease #5" in capsys.readouterr().err
    assert main([]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["no-such-command"])
    assert exit_.value.code == 2


def test_the_demo_tells_a_whole_story(env, capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out.lower()
    assert "reclaim" in out
    assert "credit for" in out


def test_operator_commands_leave_their_notices_for_the_running_bot(env):
    """An operator's command has no Slack connection: what it causes people to be told waits in
    the outbox, untouched, for the bot (no failed attempts that would delay it)."""
    db = Database(env)
    upgrade(db)
    lab = Lab(db, SimulatedProvider(db), None, Policy(), ROLES)
    filed = request(lab, OWNER, request_input(), datetime.now(UTC))
    assert main(["sweep", "--once"]) == 0
    with db.read() as session:
        waiting = session.exec(select(Notice).where(Notice.lease_id == filed.lease_id)).all()
    db.dispose()
    assert {n.kind for n in waiting} == {"request_received", "review_card"}
    assert all(n.attempts == 0 and n.delivered_at is None for n in waiting)
