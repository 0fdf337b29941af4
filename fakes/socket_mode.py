"""Slack's end of Socket Mode on 127.0.0.1, for labbot's Socket Mode tests.

A lab without a public HTTPS endpoint runs labbot in Socket Mode: labbot asks the Web API
(`apps.connections.open`, answered by fakes.slack.FakeSlack from `socket_mode_url`) where to
connect, opens a WebSocket, gets `hello`, and from then on Slack sends each slash command,
click and form as an envelope that labbot must acknowledge by its envelope_id. This server
plays that part: it says hello to each connection, sends envelopes on the newest one, records
the acks, and can ask the client to reconnect (`disconnect`, as Slack does every few hours).

`SocketModeSender` builds the same payloads as fakes.slack_sender.SlackSender (it is one), but
delivers them as envelopes over the socket and returns labbot's ack instead of an HTTP answer.
"""

from __future__ import annotations

import itertools
import json
import threading
from types import TracebackType
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from fakes.slack import APP_ID
from fakes.slack_sender import JsonDict, SlackSender

TIMEOUT = 10.0


class FakeSocketMode:
    def __init__(self) -> None:
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self._live: list[ServerConnection] = []
        self._acks: dict[str, JsonDict] = {}
        self._ids = itertools.count(1)
        self.connections = 0  # every connection ever opened

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeSocketMode:
        self._server = serve(self._serve, "127.0.0.1", 0)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-socket-mode", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is None:
            return
        with self._changed:
            live = list(self._live)
        for connection in live:
            connection.close()
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(TIMEOUT)
        self._server = self._thread = None

    def __enter__(self) -> FakeSocketMode:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeSocketMode is not started")
        port = self._server.socket.getsockname()[1]
        return f"ws://127.0.0.1:{port}/link/?ticket=fake-ticket"

    # -- what a test does ----------------------------------------------------------------------

    def wait_connected(self, count: int = 1, timeout: float = TIMEOUT) -> None:
        """Until `count` connections have been opened in all and one of them is live."""
        with self._changed:
            if not self._changed.wait_for(
                lambda: self.connections >= count and self._live, timeout
            ):
                raise AssertionError(f"{self.connections} connection(s), wanted {count}")

    def wait_closed(self, timeout: float = TIMEOUT) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: not self._live, timeout):
                raise AssertionError("the client is still connected")

    def send(self, kind: str, payload: JsonDict, accepts_response_payload: bool) -> JsonDict:
        """Send one envelope on the newest connection and wait for labbot's ack of it."""
        envelope_id = f"env-{next(self._ids)}"
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": 0,
            "retry_reason": "",
        }
        self._newest().send(json.dumps(envelope))
        with self._changed:
            if not self._changed.wait_for(lambda: envelope_id in self._acks, TIMEOUT):
                raise AssertionError(f"no ack for {kind} envelope {envelope_id}")
            return self._acks[envelope_id]

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to reconnect, then drop the connection, as Slack does."""
        connection = self._newest()
        connection.send(json.dumps({"type": "disconnect", "reason": reason}))
        connection.close()

    # -- the server side -----------------------------------------------------------------------

    def _newest(self) -> ServerConnection:
        with self._changed:
            if not self._live:
                raise AssertionError("no client is connected")
            return self._live[-1]

    def _serve(self, connection: ServerConnection) -> None:
        with self._changed:
            self._live.append(connection)
            self.connections += 1
            number = self.connections
            self._changed.notify_all()
        try:
            connection.send(json.dumps(_hello(number)))
            for message in connection:
                self._record(message)
        except ConnectionClosed:
            pass
        finally:
            with self._changed:
                self._live.remove(connection)
                self._changed.notify_all()

    def _record(self, message: str | bytes) -> None:
        try:
            ack = json.loads(message)
        except ValueError:
            return
        if isinstance(ack, dict) and "envelope_id" in ack:
            with self._changed:
                self._acks[str(ack["envelope_id"])] = ack
                self._changed.notify_all()


def _hello(number: int) -> JsonDict:
    return {
        "type": "hello",
        "num_connections": 1,
        "debug_info": {"host": f"fake-socket-mode-{number}", "approximate_connection_time": 3600},
        "connection_info": {"app_id": APP_ID},
    }


class SocketModeSender(SlackSender):
    """SlackSender's payloads, delivered over Socket Mode. Each call returns labbot's ack (the
    envelope_id and, for commands and forms, the payload it answered with); Socket Mode
    carries no signature, so `signature` is ignored."""

    def __init__(self, socket: FakeSocketMode, **kwargs: Any) -> None:
        super().__init__("socket-mode", "", **kwargs)
        self.socket = socket

    def _post_form(self, fields: dict[str, str], signature: Any) -> Any:
        return self.socket.send("slash_commands", fields, accepts_response_payload=True)

    def _post_payload(self, payload: JsonDict, signature: Any) -> Any:
        return self.socket.send("interactive", payload, accepts_response_payload=True)

    def _post_json(self, doc: JsonDict, signature: Any, headers: Any = None) -> Any:
        return self.socket.send("events_api", doc, accepts_response_payload=False)
