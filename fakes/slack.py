"""A fake Slack Web API on 127.0.0.1 that answers like Slack and records every call.

Tests, the demo and the benchmarks point slack_sdk's ``WebClient`` (and bolt's ``respond()``) at
it, so labbot's real HTTP path runs without a network or a workspace. It validates what Slack
validates, because a fake that accepts anything hides the bugs Slack would reject in production:
Block Kit's sizes always (fakes.block_kit), Slack's rate limits when a test turns them on
(`limit_rates`, fakes.slack_rates), on the clock the fake was given.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

from fakes.block_kit import message_error, view_problems
from fakes.served import Served
from fakes.slack_rates import LIMITS, Limit, RateModel

JsonDict = dict[str, Any]

TEAM_ID = "T0FAKELAB"
TEAM_NAME = "Fake Lab"
BOT_USER_ID = "U0LABBOT"
BOT_ID = "B0LABBOT"
APP_ID = "A0LABBOT"

_API_PREFIX = "/api/"
_RESPONSE_PREFIX = "/response/"
_UPLOAD_PREFIX = "/upload/v1/"
_JSON_FIELDS = ("blocks", "attachments", "view", "metadata")
_POLL_INTERVAL = 0.01


@dataclass(frozen=True)
class Call:
    """One request the fake answered; the token itself is never kept, only whether one came.
    `at` is when it arrived, on the fake's clock; `failed` says the fake refused it (a fault a
    test queued, or Slack's rate limit) instead of handling it."""

    method: str
    params: JsonDict = field(hash=False)
    at: float
    failed: bool
    status: int
    authorized: bool
    response: JsonDict = field(hash=False)
    path: str

    @property
    def ok(self) -> bool:
        """Whether the fake answered ``ok: true``; validation errors come back as HTTP 200 too."""
        return bool(self.response.get("ok"))


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    response: JsonDict = field(default_factory=dict, hash=False)


@dataclass
class _Fault:
    status: int
    retry_after: int
    remaining: int
    empty_body: bool


def _json_reply(
    payload: JsonDict, status: int = 200, headers: tuple[tuple[str, str], ...] = ()
) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), headers=headers, response=payload)


def _error(code: str, messages: list[str] | None = None) -> JsonDict:
    """Slack reports API errors as HTTP 200 with ``ok: false``; slack_sdk raises on them."""
    error: JsonDict = {"ok": False, "error": code}
    if messages:
        error["response_metadata"] = {"messages": messages}
    return error


def _rate_limited(retry_after: int) -> _Reply:
    return _json_reply(_error("ratelimited"), 429, (("Retry-After", str(retry_after)),))


def _decode_json_fields(params: JsonDict) -> JsonDict:
    """Form-encoded calls carry blocks and views as JSON strings; decode them like Slack does."""
    for key in _JSON_FIELDS:
        value = params.get(key)
        if isinstance(value, str):
            # Undecodable values stay strings, so validation rejects them the way Slack would.
            with contextlib.suppress(ValueError):
                params[key] = json.loads(value)
    return params


def _parse_params(content_type: str, body: bytes, query: str) -> JsonDict:
    params: JsonDict = dict(parse_qsl(query, keep_blank_values=True))
    if content_type.startswith("application/json"):
        parsed = json.loads(body or b"{}")
        params.update(parsed if isinstance(parsed, dict) else {})
    else:
        params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    return _decode_json_fields(params)


def _pop_token(headers: Any, params: JsonDict) -> str:
    """Read and drop the token so it can never leak into recorded calls."""
    form_token = str(params.pop("token", None) or "")
    auth = headers.get("Authorization", "")
    bearer = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
    return form_token or bearer


def _message_error(params: JsonDict) -> JsonDict | None:
    problem = message_error(params)
    return _error(*problem) if problem else None


def _view_error(view: Any) -> JsonDict | None:
    problems = view_problems(view)
    return _error("invalid_arguments", problems) if problems else None


def _short(params: JsonDict, limit: int = 120) -> str:
    text = json.dumps(params, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 makes bursts of concurrent clients wait a second for SYN retries.
    request_queue_size = 128

    def __init__(self, fake: FakeSlack) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self.server.fake._serve(self)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: test output should show failures, not one line per request."""


class FakeSlack(Served):
    """Slack's Web API, served locally: realistic answers, Slack's validation, faults on demand."""

    name = "fakeslack"
    poll_interval = 0.02

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        """`clock` (seconds) times the calls and Slack's rate limits: a test that turns the
        limits on passes its own, and steps it instead of sleeping."""
        self._clock = clock
        self._rates: RateModel | None = None
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._calls: list[Call] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._delays: dict[str, float] = {}
        self._usergroups: dict[str, list[str]] = {}
        self._zones: dict[str, str] = {}  # user id -> IANA time zone users.info gives (UTC)
        self.socket_mode_url: str | None = None  # where apps.connections.open sends clients
        self.refused_app_tokens: set[str] = set()
        self._messages: dict[tuple[str, str], JsonDict] = {}
        self._views: dict[str, JsonDict] = {}
        self._home_views: dict[str, str] = {}
        self._ts_counter = itertools.count(1)
        self._view_counter = itertools.count(1)
        self._handlers: dict[str, Callable[[JsonDict], JsonDict]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update_message,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.delete": self._delete_message,
            "views.open": self._open_view,
            "views.push": self._open_view,
            "views.update": self._update_view,
            "views.publish": self._publish_view,
            "conversations.open": self._open_conversation,
            "users.info": self._user_info,
            "usergroups.users.list": self._usergroup_users,
        }
        self._handlers.update(self._file_handlers())
        self._uploads: dict[str, _Upload] = {}
        self._file_counter = itertools.count(1)
        self._open_dms: set[str] = set()  # DM channels conversations.open gave the bot
        # How many of the next files.completeUploadExternal calls share the files and then
        # answer with an error, as when Slack did the work and its answer was lost.
        self.lost_completions = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        self._serve_on(_Server(self))
        return self

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self._port()}"

    @property
    def base_url(self) -> str:
        """Ends with a slash because WebClient urljoins the method onto it."""
        return self.root_url + _API_PREFIX

    def response_url(self, key: str) -> str:
        """A ``response_url`` that lands here, recorded as method ``"response_url"``."""
        return self.root_url + _RESPONSE_PREFIX + key

    # -- configuration -------------------------------------------------------------------------

    def set_usergroup(self, usergroup_id: str, user_ids: list[str]) -> None:
        with self._lock:
            self._usergroups[usergroup_id] = list(user_ids)

    def set_zone(self, user_id: str, zone: str) -> None:
        """The time zone a person set in Slack, as users.info gives it (`tz`, `tz_offset`)."""
        with self._lock:
            self._zones[user_id] = zone

    def fail_next(
        self,
        method: str,
        status: int = 429,
        retry_after: int = 1,
        times: int = 1,
        *,
        empty_body: bool = False,
    ) -> None:
        """Queue ``times`` failures for ``method``, to exercise retry and error paths."""
        with self._lock:
            self._faults.setdefault(method, []).append(
                _Fault(status, retry_after, times, empty_body)
            )

    def limit_rates(self, **changes: Limit) -> None:
        """Answer as Slack does beyond its rate limits from now on: HTTP 429 with Retry-After.
        `changes` replace a method's limit, its dots as underscores (`chat_postMessage=...`)."""
        limits = {**LIMITS, **{name.replace("_", "."): limit for name, limit in changes.items()}}
        with self._lock:
            self._rates = RateModel(self._clock, limits)

    def delay(self, method: str, seconds: float) -> None:
        """Answer ``method`` ``seconds`` late, to exercise Slack's 3-second ack deadline."""
        with self._lock:
            self._delays[method] = seconds

    def reset(self) -> None:
        """Forget recorded calls; posted messages, views and configuration stay."""
        with self._lock:
            self._calls.clear()

    # -- inspection ----------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def messages(self, channel: str | None = None) -> list[JsonDict]:
        """Params of accepted chat.postMessage calls; ``channel`` matches as sent or as resolved."""
        return [
            c.params
            for c in self.calls("chat.postMessage")
            if c.ok and channel in (None, c.params.get("channel"), c.response.get("channel"))
        ]

    def current_message(self, channel: str, ts: str) -> JsonDict:
        """``{"text", "blocks"}`` of a posted message after every chat.update applied to it."""
        with self._lock:
            message = self._messages.get((channel, ts))
            if message is None:
                raise KeyError(f"no message {ts} in {channel}; known: {sorted(self._messages)}")
            return copy.deepcopy(message)

    def wait_for(self, predicate: Callable[[Call], bool] | str, timeout: float = 5.0) -> Call:
        """First recorded call matching ``predicate`` (a method name or a test on the Call).

        Listeners run on bolt's executor after the ack, so tests must wait for their effects.
        """
        matches = (lambda c: c.method == predicate) if isinstance(predicate, str) else predicate
        deadline = time.monotonic() + timeout
        while True:
            for call in self.calls():
                if matches(call):
                    return call
            if time.monotonic() >= deadline:
                raise AssertionError(self._describe_miss(predicate, timeout))
            time.sleep(_POLL_INTERVAL)

    def _describe_miss(self, predicate: object, timeout: float) -> str:
        lines = [
            f"  {c.method} status={c.status} ok={c.ok} failed={c.failed} {_short(c.params)}"
            for c in self.calls()
        ]
        recorded = "\n".join(lines) or "  (nothing)"
        return f"no call matched {predicate!r} within {timeout}s; recorded:\n{recorded}"

    def dm_channel(self, user_id: str) -> str:
        """The DM channel id conversations.open gives for a user: stable but not derivable."""
        return "D" + hashlib.sha1(user_id.encode()).hexdigest()[:8].upper()

    # -- HTTP ----------------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        arrived = self._clock()
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        if url.path.startswith(_UPLOAD_PREFIX):
            self._serve_upload(handler, url.path, body, arrived)
            return
        params = _parse_params(handler.headers.get("Content-Type", ""), body, url.query)
        token = _pop_token(handler.headers, params)
        authorized = bool(token)
        method = self._method_of(url.path)
        with self._lock:
            delay = self._delays.get(method, 0.0)
        time.sleep(delay)
        with self._lock:
            fault = self._take_fault(method) or self._over_rate(method, params)
            reply = fault or self._answer(method, url.path, params, token)
            self._calls.append(
                Call(
                    method=method,
                    params=params,
                    at=arrived,
                    failed=fault is not None,
                    status=reply.status,
                    authorized=authorized,
                    response=reply.response,
                    path=url.path,
                )
            )
        handler.send_response(reply.status)
        handler.send_header("Content-Type", reply.content_type)
        handler.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(reply.body)

    @staticmethod
    def _method_of(path: str) -> str:
        if path.startswith(_API_PREFIX):
            return path.removeprefix(_API_PREFIX)
        if path.startswith(_RESPONSE_PREFIX):
            return "response_url"
        return path

    def _take_fault(self, method: str) -> _Reply | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.pop(0)
        if fault.status == 429:
            return _rate_limited(fault.retry_after)
        if fault.empty_body:
            return _Reply(fault.status, b"", content_type="text/plain")
        return _json_reply(_error("internal_error"), fault.status)

    def _over_rate(self, method: str, params: JsonDict) -> _Reply | None:
        if self._rates is None:
            return None
        scope = self._rates.scope(method)
        key = str(params.get(scope) or "") if scope else ""
        if scope == "channel":
            key = self._resolve_channel(key)  # a post to a user id lands in the DM
        retry_after = self._rates.admit(method, key)
        return None if retry_after is None else _rate_limited(retry_after)

    def _answer(self, method: str, path: str, params: JsonDict, token: str) -> _Reply:
        if method == "response_url":
            return self._respond(params)
        if not path.startswith(_API_PREFIX):
            return _Reply(404, b"Not Found", content_type="text/plain")
        if method == "apps.connections.open":
            return _json_reply(self._open_connection(token))
        handle = self._handlers.get(method)
        if handle is None:
            return _json_reply(_error("unknown_method"))
        if not token:
            return _json_reply(_error("not_authed"))
        return _json_reply(handle(params))

    @staticmethod
    def _respond(params: JsonDict) -> _Reply:
        """A response_url takes a message as chat.postMessage does; a refusal is HTTP 400 with
        the error code as its body, as Slack's webhooks answer."""
        error = _message_error(params) if "delete_original" not in params else None
        if error is None:
            return _Reply(200, b"ok", content_type="text/html", response={"ok": True})
        return _Reply(400, error["error"].encode(), content_type="text/plain", response=error)

    def _open_connection(self, token: str) -> JsonDict:
        """Socket Mode's apps.connections.open: only an app-level token (xapp-) may open a
        connection, and only one this workspace knows; the answer is the WebSocket URL."""
        if not token:
            return _error("not_authed")
        if not token.startswith("xapp-"):
            return _error("not_allowed_token_type")
        if token in self.refused_app_tokens or self.socket_mode_url is None:
            return _error("invalid_auth")
        return {"ok": True, "url": self.socket_mode_url}

    # -- Web API methods (called with the lock held) -------------------------------------------

    def _auth_test(self, params: JsonDict) -> JsonDict:
        return {
            "ok": True,
            "url": "https://fakelab.slack.com/",
            "team": TEAM_NAME,
            "user": "labbot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _next_ts(self) -> str:
        n = next(self._ts_counter)
        return f"{1_700_000_000 + n // 10_000}.{n % 10_000 * 100:06d}"

    def _resolve_channel(self, channel: str) -> str:
        """Posting to a user id lands in the DM with that user, as on Slack."""
        return self.dm_channel(channel) if channel[:1] in ("U", "W") else channel

    def _post_message(self, params: JsonDict) -> JsonDict:
        if not params.get("channel"):
            return _error("channel_not_found")
        if error := _message_error(params):
            return error
        channel = self._resolve_channel(params["channel"])
        ts = self._next_ts()
        stored = {"text": params.get("text") or "", "blocks": params.get("blocks") or []}
        self._messages[(channel, ts)] = stored
        message = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": ts, **stored}
        return {"ok": True, "channel": channel, "ts": ts, "message": copy.deepcopy(message)}

    def _update_message(self, params: JsonDict) -> JsonDict:
        channel, ts = params.get("channel"), params.get("ts")
        if not channel:
            return _error("channel_not_found")
        stored = self._messages.get((channel, ts or ""))
        if stored is None:
            return _error("message_not_found")
        if error := _message_error(params):
            return error
        # Slack keeps the previous blocks when an update leaves them out.
        stored.update({key: params[key] for key in ("text", "blocks") if key in params})
        return {"ok": True, "channel": channel, "ts": ts, "text": stored["text"]}

    def _post_ephemeral(self, params: JsonDict) -> JsonDict:
        if not params.get("channel"):
            return _error("channel_not_found")
        if not params.get("user"):
            return _error("user_not_in_channel")
        if error := _message_error(params):
            return error
        return {"ok": True, "message_ts": self._next_ts()}

    def _delete_message(self, params: JsonDict) -> JsonDict:
        channel, ts = params.get("channel") or "", params.get("ts") or ""
        if self._messages.pop((channel, ts), None) is None:
            return _error("message_not_found")
        return {"ok": True, "channel": channel, "ts": ts}

    def _store_view(self, view: JsonDict, view_id: str | None = None) -> JsonDict:
        view_id = view_id or f"V{next(self._view_counter):04d}"
        stored = {
            "type": "modal",
            "callback_id": "",
            "private_metadata": "",
            "external_id": "",
            "blocks": [],
            **copy.deepcopy(view),
            "id": view_id,
            "team_id": TEAM_ID,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "root_view_id": view_id,
            "state": {"values": {}},
            "hash": f"{time.time():.6f}.{view_id}",
        }
        self._views[view_id] = stored
        return {"ok": True, "view": copy.deepcopy(stored)}

    def _open_view(self, params: JsonDict) -> JsonDict:
        if not params.get("trigger_id"):
            return _error("invalid_arguments")
        return _view_error(params.get("view")) or self._store_view(params["view"])

    def _find_view(self, params: JsonDict) -> JsonDict | None:
        if params.get("view_id"):
            return self._views.get(params["view_id"])
        external_id = params.get("external_id")
        return next(
            (v for v in self._views.values() if external_id and v["external_id"] == external_id),
            None,
        )

    def _update_view(self, params: JsonDict) -> JsonDict:
        if error := _view_error(params.get("view")):
            return error
        current = self._find_view(params)
        if current is None:
            return _error("not_found")
        if params.get("hash") and params["hash"] != current["hash"]:
            return _error("hash_conflict")
        return self._store_view(params["view"], current["id"])

    def _publish_view(self, params: JsonDict) -> JsonDict:
        user_id, view = params.get("user_id"), params.get("view")
        if error := _view_error(view):
            return error
        if not user_id or view.get("type") != "home":
            return _error("invalid_arguments")
        answer = self._store_view(view, self._home_views.get(user_id))
        self._home_views[user_id] = answer["view"]["id"]
        return answer

    def _open_conversation(self, params: JsonDict) -> JsonDict:
        if params.get("channel"):
            return {"ok": True, "channel": {"id": params["channel"]}}
        users = params.get("users") or ""
        user_ids = users if isinstance(users, list) else [u for u in users.split(",") if u]
        if not user_ids:
            return _error("users_list_not_supplied")
        if len(user_ids) == 1:
            channel = self.dm_channel(user_ids[0])
            self._open_dms.add(channel)
        else:
            channel = "G" + hashlib.sha1(",".join(sorted(user_ids)).encode()).hexdigest()[:8]
        return {"ok": True, "no_op": False, "already_open": False, "channel": {"id": channel}}

    def _user_info(self, params: JsonDict) -> JsonDict:
        user_id = params.get("user")
        if not user_id:
            return _error("user_not_found")
        real_name = f"User {user_id}"
        zone = self._zones.get(user_id, "UTC")  # answered under the fake's lock already
        offset = datetime.now(ZoneInfo(zone)).utcoffset() or timedelta(0)
        return {
            "ok": True,
            "user": {
                "id": user_id,
                "team_id": TEAM_ID,
                "name": user_id.lower(),
                "real_name": real_name,
                "deleted": False,
                "is_bot": user_id == BOT_USER_ID,
                "is_admin": False,
                "tz": zone,
                "tz_label": zone,
                "tz_offset": int(offset.total_seconds()),
                "profile": {
                    "real_name": real_name,
                    "display_name": user_id.lower(),
                    "email": f"{user_id.lower()}@fakelab.example",
                },
            },
        }

    def _usergroup_users(self, params: JsonDict) -> JsonDict:
        users = self._usergroups.get(params.get("usergroup") or "")
        if users is None:
            return _error("no_such_subteam")
        return {"ok": True, "users": list(users)}

    # -- files: Slack's upload API (files.getUploadURLExternal, the upload URL, ------------------
    # -- files.completeUploadExternal, files.info) ------------------------------------------------

    def files(self, channel: str | None = None) -> list[SharedFile]:
        """Every file shared so far (one entry per share), oldest first: what people received."""
        with self._lock:
            return [
                SharedFile(u.id, u.filename, u.title, u.content.decode(), c, comment, ts)
                for u in sorted(self._uploads.values(), key=lambda u: u.number)
                for c, ts, comment in u.shares
                if channel in (None, c)
            ]

    def _file_handlers(self) -> dict[str, Callable[[JsonDict], JsonDict]]:
        return {
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "files.info": self._file_info,
        }

    def _get_upload_url(self, params: JsonDict) -> JsonDict:
        """A file id and the URL to POST its bytes to; `length` is what the POST must carry."""
        filename = str(params.get("filename") or "")
        length = str(params.get("length") or "")
        if not filename or not length.isascii() or not length.isdigit():
            return _error("invalid_arguments")
        if int(length) == 0:
            return _error("missing_argument")  # Slack's answer to a length of 0
        number = next(self._file_counter)
        file_id = f"F{number:08d}"
        self._uploads[file_id] = _Upload(file_id, number, filename, int(length))
        return {
            "ok": True,
            "file_id": file_id,
            "upload_url": self.root_url + _UPLOAD_PREFIX + file_id,
        }

    def _serve_upload(self, handler: _Handler, path: str, body: bytes, arrived: float) -> None:
        """The upload URL: stores the bytes if they are as long as announced. Slack answers a
        good upload with 200 and `OK - LENGTH`."""
        file_id = path.removeprefix(_UPLOAD_PREFIX)
        with self._lock:
            upload = self._uploads.get(file_id)
            if upload is None:
                status, text = 404, "not found"
            elif len(body) != upload.length:
                status, text = 400, f"length mismatch: announced {upload.length}, got {len(body)}"
            else:
                upload.content = body
                status, text = 200, f"OK - {len(body)}"
            self._calls.append(
                Call(
                    method="upload",
                    params={"file_id": file_id, "length": len(body)},
                    at=arrived,
                    failed=False,
                    status=status,
                    authorized=True,
                    response={"ok": status == 200},
                    path=path,
                )
            )
        reply = text.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/plain; charset=utf-8")
        handler.send_header("Content-Length", str(len(reply)))
        handler.end_headers()
        handler.wfile.write(reply)

    def _complete_upload(self, params: JsonDict) -> JsonDict:
        """Shares uploaded files in a channel, with the comment as the message that carries
        them. Each file must have been announced and its bytes received; the channel must be
        one the bot may post to (a DM it opened, or a channel it has posted in)."""
        files = params.get("files")
        if isinstance(files, str):
            try:
                files = json.loads(files)
            except ValueError:
                return _error("invalid_arguments")
        if not isinstance(files, list) or not files:
            return _error("invalid_arguments")
        if not all(isinstance(f, dict) and isinstance(f.get("id"), str) for f in files):
            return _error("invalid_arguments")
        uploads = [self._uploads.get(f["id"]) for f in files]
        if any(u is None or u.content is None for u in uploads):
            return _error("file_not_found")
        channel = str(params.get("channel_id") or "")
        if channel and not self._may_post_in(channel):
            return _error("channel_not_found")
        ts = self._next_ts() if channel else ""
        comment = str(params.get("initial_comment") or "")
        for upload, named in zip(uploads, files, strict=True):
            upload.title = str(named.get("title") or upload.filename)
            if channel:
                upload.shares.append((channel, ts, comment))
        if channel:
            self._messages[(channel, ts)] = {
                "text": comment,
                "blocks": [],
                "files": [f["id"] for f in files],
            }
        if self.lost_completions:
            self.lost_completions -= 1
            return _error("internal_error")
        return {"ok": True, "files": [u.described() for u in uploads if u is not None]}

    def _file_info(self, params: JsonDict) -> JsonDict:
        upload = self._uploads.get(str(params.get("file") or ""))
        if upload is None or upload.content is None:
            return _error("file_not_found")
        return {"ok": True, "file": upload.described()}

    def _may_post_in(self, channel: str) -> bool:
        return channel in self._open_dms or any(c == channel for c, _ in self._messages)


@dataclass
class _Upload:
    """A file from the moment files.getUploadURLExternal names it."""

    id: str
    number: int
    filename: str
    length: int
    content: bytes | None = None
    title: str = ""
    shares: list[tuple[str, str, str]] = field(default_factory=list)  # channel, ts, comment

    def described(self) -> JsonDict:
        """The file object Slack answers with: where it is shared, by kind of channel."""
        where = [c for c, _, _ in self.shares]
        return {
            "id": self.id,
            "name": self.filename,
            "title": self.title or self.filename,
            "size": self.length,
            "channels": [c for c in where if c.startswith("C")],
            "groups": [c for c in where if c.startswith("G")],
            "ims": [c for c in where if c.startswith("D")],
        }


@dataclass(frozen=True)
class SharedFile:
    """A file as the people in `channel` received it."""

    id: str
    filename: str
    title: str
    content: str
    channel: str
    comment: str
    ts: str
