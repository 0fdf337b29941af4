"""Log lines as an operator's log shipper receives them: JSON when asked, the lease id where
there is one, and never a secret, even from a library's debug lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.blocks import cards
from bot.demo import on_fake_packet
from bot.logs import REDACTED, configure, secrets_in
from commands.log_context import about_lease
from commands.sweep import sweep
from fakes.packet import FakePacket
from fakes.slack import FakeSlack
from storage.db import Database
from tests.bot.conftest import SECRET, TOKEN, Slack, file_request, serve, settings_for
from tests.conftest import OWNER, REVIEWER, Clock

APP_TOKEN = "xapp-1-A0TEST-socket-mode-token"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GITHUB_TOKEN = "ghp_0123456789abcdefghijklmnopqrstuvwxyz"
DB_PASSWORD = "s3cret-db-pw"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Whatever the one root handler writes; the root logger is put back afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    yield buffer
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_lines_carry_the_lease_being_worked_on(captured: io.StringIO) -> None:
    configure("json", env={}, stream=captured)
    log = logging.getLogger("labbot.test")
    with about_lease(42):
        log.warning("deleting %s", "server-1")
    log.info("between leases")
    log.info("named at the call site", extra={"lease_id": 7})

    first, second, third = lines(captured)
    assert (first["message"], first["lease_id"], first["level"]) == (
        "deleting server-1",
        42,
        "WARNING",
    )
    assert "lease_id" not in second
    assert third["lease_id"] == 7


def test_secrets_are_taken_out_of_messages_arguments_and_tracebacks(
    captured: io.StringIO,
) -> None:
    env = {
        "SLACK_BOT_TOKEN": TOKEN,
        "DATABASE_URL": f"postgresql://labbot:{DB_PASSWORD}@db.internal/labbot",
        "GITHUB_TOKEN": GITHUB_TOKEN,
    }
    configure("json", env=env, stream=captured)
    log = logging.getLogger("labbot.test")
    log.info("connecting with %s", env["DATABASE_URL"])
    try:
        raise RuntimeError(f"forge refused {GITHUB_TOKEN}")
    except RuntimeError:
        log.exception("token %s failed", TOKEN)

    written = captured.getvalue()
    assert TOKEN not in written and DB_PASSWORD not in written and GITHUB_TOKEN not in written
    first, second = lines(captured)
    assert first["message"] == f"connecting with postgresql://labbot:{REDACTED}@db.internal/labbot"
    assert second["message"] == f"token {REDACTED} failed"
    assert f"forge refused {REDACTED}" in second["exception"]


def test_short_or_empty_settings_are_not_treated_as_secrets() -> None:
    env = {"SLACK_BOT_TOKEN": "", "GITHUB_TOKEN": "ab", "DATABASE_URL": "sqlite:///labbot.db"}
    assert secrets_in(env) == []


@pytest.fixture
def story(
    fake: FakeSlack, db: Database, clock: Clock, packet: FakePacket, captured: io.StringIO
) -> Iterator[tuple[Slack, list[str]]]:
    settings = on_fake_packet(
        settings_for(fake, slack_app_token=APP_TOKEN), packet, packet_timeout=1.0
    )
    env = {
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "PACKET_AUTH_TOKEN": packet.token,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "GITHUB_TOKEN": GITHUB_TOKEN,
        "DATABASE_URL": f"postgresql://labbot:{DB_PASSWORD}@db.internal/labbot",
    }
    configure("json", env=env, stream=captured, level=logging.DEBUG)
    yield from ((slack, secrets_in(env)) for slack in serve(fake, db, clock, settings))


def test_no_secret_reaches_any_log_line_of_a_whole_lease_story(
    story: tuple[Slack, list[str]], captured: io.StringIO
) -> None:
    slack, secrets = story
    lease_id = file_request(slack)
    assert slack.sender.slash_command(text="list", signature="bad").status_code == 401
    slack.card_click(cards.APPROVE, lease_id, REVIEWER)
    sweep(slack.ctx.lab, slack.clock.advance(minutes=2))
    slack.command(f"release {lease_id}", OWNER)
    assert slack.lease(lease_id).state == "reclaimed"
    # a careless line of our own, as the control: the grep below would see it unredacted
    logging.getLogger("labbot.test").debug("slack token is %s", TOKEN)
    slack.settle()

    written = lines(captured)
    loggers = {line["logger"].split(".")[0] for line in written}
    assert {"slack_bolt", "slack_sdk", "packet", "urllib3"} <= loggers, loggers
    assert any(line.get("lease_id") == lease_id for line in written)
    assert written[-1]["message"] == f"slack token is {REDACTED}"
    text = captured.getvalue()
    assert len(secrets) == 7
    for secret in secrets:
        assert secret not in text


def test_a_database_password_is_known_as_written_and_as_decoded() -> None:
    env = {"DATABASE_URL": "postgresql://labbot:p%40ss%2Fword@db.internal/labbot"}
    assert sorted(secrets_in(env)) == ["p%40ss%2Fword", "p@ss/word"]
