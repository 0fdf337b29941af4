"""`labbot serve` in Socket Mode, as a lab without a public endpoint runs it: the process
connects out to a local stand-in for Slack (a Web API that answers apps.connections.open, a
WebSocket server that sends envelopes), and a request, an approval click, a reconnect Slack asks
for and SIGTERM all behave."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.blocks import cards
from fakes.slack import FakeSlack
from fakes.socket_mode import FakeSocketMode, SocketModeSender
from tests.bot.conftest import INLINE, REVIEW_CHANNEL, lease_id_in
from tests.bot.test_serve import DEADLINE, free_port, labbot, serve_env
from tests.conftest import OWNER, REVIEWER

APP_TOKEN = "xapp-1-A0LABBOT-fake"


@pytest.fixture
def socket(fake: FakeSlack) -> Iterator[FakeSocketMode]:
    with FakeSocketMode() as server:
        fake.socket_mode_url = server.url
        yield server


def socket_env(fake: FakeSlack, tmp_path: Path, app_token: str = APP_TOKEN) -> dict[str, str]:
    env = serve_env(
        fake,
        tmp_path,
        free_port(),
        SLACK_SIGNING_SECRET="",
        LABBOT_REVIEWERS=REVIEWER,
        LABBOT_REVIEW_CHANNEL=REVIEW_CHANNEL,
        LABBOT_SWEEP_INTERVAL="1h",
    )
    return {**env, "SLACK_APP_TOKEN": app_token}


def stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=DEADLINE)
    return err


def test_a_request_an_approval_a_reconnect_and_sigterm_over_socket_mode(
    fake: FakeSlack, socket: FakeSocketMode, tmp_path: Path
) -> None:
    process = labbot("serve", env=socket_env(fake, tmp_path))
    try:
        socket.wait_connected(timeout=DEADLINE)
        sender = SocketModeSender(socket, response_url_base=fake)

        ack = sender.slash_command(text=INLINE, user_id=OWNER)
        assert ack["envelope_id"]
        reply = fake.wait_for("response_url", timeout=DEADLINE)
        lease_id = lease_id_in(reply.params["text"])
        card = fake.wait_for(
            lambda c: c.method == "chat.postMessage" and c.params.get("channel") == REVIEW_CHANNEL
        )

        sender.block_action(
            f"{cards.APPROVE}:{lease_id}",
            str(lease_id),
            REVIEWER,
            channel_id=card.response["channel"],
            message_ts=card.response["ts"],
        )
        fake.wait_for(lambda c: c.method == "chat.update" and "approved by" in str(c.params))

        socket.disconnect()
        socket.wait_connected(count=2)
        sender.slash_command(text="list", user_id=OWNER)
        fake.wait_for(
            lambda c: (
                c.method == "response_url"
                and f"#{lease_id}" in c.params.get("text", "")
                and "Your leases" in c.params.get("text", "")
            )
        )
    finally:
        err = stop(process)
    assert process.returncode == 0, err
    socket.wait_closed()
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "app_token, error",
    [("xoxb-pasted-bot-token", "not_allowed_token_type"), ("xapp-revoked", "invalid_auth")],
)
def test_a_refused_app_token_is_named_and_exits_2(
    fake: FakeSlack, socket: FakeSocketMode, tmp_path: Path, app_token: str, error: str
) -> None:
    fake.refused_app_tokens.add("xapp-revoked")
    process = labbot("serve", env=socket_env(fake, tmp_path, app_token))
    _, err = process.communicate(timeout=DEADLINE)
    assert process.returncode == 2, err
    assert f"SLACK_APP_TOKEN was refused by Slack ({error})" in err
    assert "Traceback" not in err
    assert socket.connections == 0
