"""The door Slack's HTTP requests come through: nothing unverified gets past it.

bolt parses a request (form fields, the `payload` JSON, the context it extracts) before its own
signature middleware runs, and a parse error or a header its verifier cannot read raises into
the error handlers with the unverified body in hand. So the signature is checked here, on the
raw bytes, before bolt sees anything: a request that fails gets 401 and a log line, nothing
else. A verified request that is not something Slack sends (not UTF-8, a payload that is not a
JSON object, a click without actions, a view without a type) gets 400 and nothing is done.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse
from slack_bolt.context import BoltContext
from slack_bolt.request.internals import build_context

log = logging.getLogger(__name__)

MAX_AGE = 300  # seconds a signature stays good, as Slack and bolt use it
MAX_BODY = 1 << 20  # Slack's payloads are a few KB; a view with 100 blocks stays far below this
VERIFIED = "labbot_verified"  # set in the context of every request that passed this gate

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class Signed:
    """The verdict on a request's signature: `ok`, or why not (for the log, never for data)."""

    ok: bool
    why: str = ""


def check_signature(
    secret: str, body: bytes, timestamp: str | None, signature: str | None, now: float
) -> Signed:
    """Slack's scheme (`v0=` + HMAC-SHA256 over `v0:{timestamp}:{body}`, five minutes of
    validity), written so that no header of any shape can make it raise."""
    if not timestamp or not signature:
        return Signed(False, "no signature")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return Signed(False, "timestamp is not a number")
    if abs(now - int(timestamp)) > MAX_AGE:
        return Signed(False, "timestamp is stale")
    if not signature.isascii():
        return Signed(False, "signature is not ASCII")
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return Signed(False, "signature does not match")
    return Signed(True)


def malformed(body: Any) -> str | None:
    """Why a verified, parsed body is not something Slack sends to labbot; None when it is."""
    if not isinstance(body, dict):
        return "the body is not an object"
    kind = body.get("type")
    if "type" in body and not isinstance(kind, str):
        return "type is not a string"
    if kind == "block_actions":
        actions = body.get("actions")
        if not (isinstance(actions, list) and actions and all(map(_names_action, actions))):
            return "a click without actions"
    if kind in ("view_submission", "view_closed"):
        view = body.get("view")
        if not (isinstance(view, dict) and _strings(view, "type", "callback_id")):
            return "a view without a type or callback_id"
        if not isinstance(view.get("state", {}), dict):
            return "a view whose state is not an object"
    if kind == "event_callback":
        event = body.get("event")
        if not (isinstance(event, dict) and _strings(event, "type")):
            return "an event without a type"
    for part in ("user", "team", "channel", "container", "message"):
        if part in body and not isinstance(body[part], dict | str | None):
            return f"{part} is neither an object nor an id"
    return None


def _names_action(action: Any) -> bool:
    return isinstance(action, dict) and _strings(action, "action_id")


def _strings(doc: dict[str, Any], *keys: str) -> bool:
    return all(isinstance(doc.get(key), str) for key in keys)


def slack_endpoint(app: App, secret: str | None, path: str) -> Wsgi:
    """The WSGI application for Slack's requests to `path`. Without a secret (Socket Mode,
    where Slack never calls us over HTTP) every HTTP request is refused."""

    def endpoint(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        answer = _answer(app, secret, path, environ)
        response = WsgiHttpResponse(answer.status, answer.headers, answer.body)
        start_response(response.status, response.get_headers())
        return response.get_body()

    return endpoint


def _answer(app: App, secret: str | None, path: str, environ: dict[str, Any]) -> BoltResponse:
    if environ.get("PATH_INFO") != path or environ.get("REQUEST_METHOD") != "POST":
        return _plain(404, "Not Found")
    body = _read(environ)
    if body is None:
        return _plain(413, "Too large")
    http = WsgiHttpRequest(environ)
    headers = http.get_headers()
    verdict = (
        check_signature(
            secret,
            body,
            _header(headers, "x-slack-request-timestamp"),
            _header(headers, "x-slack-signature"),
            time.time(),
        )
        if secret
        else Signed(False, "no signing secret (Socket Mode)")
    )
    if not verdict.ok:
        log.warning("refused a request to %s: %s", path, verdict.why)
        return _plain(401, "")
    try:
        request = _bolt_request(body.decode("utf-8"), http.query_string, headers)
    except Exception as error:  # not UTF-8, not JSON, fields bolt cannot read
        log.warning("signed request not understood: %s", type(error).__name__)
        return _plain(400, "")
    problem = malformed(request.body)
    if problem:
        log.warning("signed request not understood: %s", problem)
        return _plain(400, "")
    try:
        return app.dispatch(request)
    except Exception:
        log.exception("bolt failed on a signed request")
        return _plain(400, "")


def _bolt_request(text: str, query: str, headers: dict[str, Any]) -> BoltRequest:
    """bolt's request, marked verified. bolt reads any form body in which the word "payload"
    appears as an interactive payload, so `/lab request ... "payload tests"` came out empty and
    went unanswered: a form without a payload field is read here as the fields it has."""
    request = BoltRequest(body=text, query=query, headers=headers, context={VERIFIED: True})
    if request.content_type == "application/json" or text.startswith("{"):
        return request
    fields = dict(parse_qsl(text, keep_blank_values=True))
    if "payload" not in fields and request.body != fields:
        request.body = fields
        request.context = build_context(BoltContext({VERIFIED: True}), fields)
    return request


def _read(environ: dict[str, Any]) -> bytes | None:
    """The raw body, or None when it is larger than any request Slack sends."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        return None
    stream = environ.get("wsgi.input")
    return stream.read(length) if stream is not None and length > 0 else b""


def _header(headers: dict[str, Any], name: str) -> str | None:
    value = headers.get(name)
    return value if isinstance(value, str) else None


def _plain(status: int, text: str) -> BoltResponse:
    return BoltResponse(
        status=status, body=text, headers={"content-type": "text/plain;charset=utf-8"}
    )
