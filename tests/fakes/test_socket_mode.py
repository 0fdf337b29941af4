"""The Socket Mode fake through slack-sdk's own Socket Mode client, as labbot uses it: the Web
API hands out the WebSocket URL only to an app-level token, the server says hello, sends
envelopes, reads the acks, and asks for a reconnect."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from fakes.slack import FakeSlack
from fakes.socket_mode import FakeSocketMode, SocketModeSender


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def test_only_an_app_level_token_gets_a_connection_url(fake: FakeSlack) -> None:
    client = WebClient(base_url=fake.base_url)
    with pytest.raises(SlackApiError, match="invalid_auth"):
        client.apps_connections_open(app_token="xapp-1")  # no server configured yet
    with FakeSocketMode() as socket:
        fake.socket_mode_url = socket.url
        assert client.apps_connections_open(app_token="xapp-1")["url"] == socket.url
        with pytest.raises(SlackApiError, match="not_allowed_token_type"):
            client.apps_connections_open(app_token="xoxb-1")
        fake.refused_app_tokens.add("xapp-1")
        with pytest.raises(SlackApiError, match="invalid_auth"):
            client.apps_connections_open(app_token="xapp-1")


def test_envelopes_are_acked_and_a_disconnect_brings_a_new_connection(fake: FakeSlack) -> None:
    seen: list[str] = []
    lock = threading.Lock()

    def on_request(client: SocketModeClient, request: SocketModeRequest) -> None:
        with lock:
            seen.append(request.type)
        client.send_socket_mode_response(
            SocketModeResponse(envelope_id=request.envelope_id, payload={"text": "ok"})
        )

    with FakeSocketMode() as socket:
        fake.socket_mode_url = socket.url
        client = SocketModeClient(app_token="xapp-1", web_client=WebClient(base_url=fake.base_url))
        client.socket_mode_request_listeners.append(on_request)
        client.connect()
        try:
            socket.wait_connected()
            sender = SocketModeSender(socket)
            assert sender.slash_command(text="help")["payload"] == {"text": "ok"}
            socket.disconnect()
            socket.wait_connected(count=2)
            assert sender.block_action("a", "1")["envelope_id"]
        finally:
            client.close()
    assert seen == ["slash_commands", "interactive"]
