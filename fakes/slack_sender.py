"""Send requests to a bolt App exactly as Slack does: same bodies, same signatures, same headers.

Tests and benchmarks drive labbot over real HTTP with this, so bolt's signature check, payload
parsing and ack timing are exercised as in production instead of being bypassed.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

import requests

from fakes.slack import APP_ID, BOT_USER_ID, TEAM_ID

if TYPE_CHECKING:
    from fakes.slack import FakeSlack

Signature = Literal["good", "bad", "none", "stale"]
JsonDict = dict[str, Any]

VERIFICATION_TOKEN = "fake-verification-token"
TEAM_DOMAIN = "fakelab"
STALE_AGE = 600  # seconds: well past the 300 s bolt accepts
TIMEOUT = 10.0
_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"


def sign(signing_secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The two headers Slack adds so the app can prove a request came from Slack."""
    ts = int(time.time()) if timestamp is None else timestamp
    base = f"v0:{ts}:".encode() + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


_SPECIALS = ("here", "channel", "everyone")
_RECOGNISED = re.compile(
    r"(?P<url>https?://[^\s\"'|]+)"
    r"|(?P<email>(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
    r"|(?P<domain>(?<![\w@/.:-])(?:[a-z0-9-]+\.)+(?:com|org|net|io|dev)(?:/[^\s\"'|]*)?)"
    r"|(?<![\w&])@(?P<name>[\w.-]*\w)"
    r"|(?<![\w&;])#(?P<channel>[\w-]+)"
)


def as_slack_sends(
    typed: str, members: Mapping[str, str] = {}, channels: Mapping[str, str] = {}
) -> str:
    """The `text` of a slash command whose manifest says `should_escape: true`, for what a
    person typed: `&`, `<` and `>` as entities, then what Slack recognises wrapped: a link as
    `<https://...>` (typed without its scheme, `<http://coredns.io|coredns.io>`), an address as
    `<mailto:a@b.org|a@b.org>`, `@here` as `<!here>`, a member picked as `@alice` as
    `<@U123|alice>` and a channel as `<#C123|general>`. ``members`` and ``channels`` map the
    workspace's names to their ids; a name that is in neither stays as it was typed."""
    text = typed.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _RECOGNISED.sub(lambda m: _wrapped(m, members, channels), text)


def _wrapped(match: re.Match[str], members: Mapping[str, str], channels: Mapping[str, str]) -> str:
    word = match[0]
    if match["url"]:
        return f"<{word}>"
    if match["email"]:
        return f"<mailto:{word}|{word}>"
    if match["domain"]:
        return f"<http://{word}|{word}>"
    name = match["name"]
    if name in _SPECIALS:
        return f"<!{name}>"
    if name in members:
        return f"<@{members[name]}|{name}>"
    if match["channel"] in channels:
        return f"<#{channels[match['channel']]}|{match['channel']}>"
    return word


def field(value: str | None) -> JsonDict:
    """A plain_text_input's state entry; Slack sends ``None`` for an empty input."""
    return {"type": "plain_text_input", "value": value}


def checkboxes(values: list[str]) -> JsonDict:
    """A checkboxes element's state entry: the options left checked (Slack sends [] for none)."""
    chosen = [{"text": {"type": "plain_text", "text": v}, "value": v} for v in values]
    return {"type": "checkboxes", "selected_options": chosen}


def select(value: str | None) -> JsonDict:
    """A static_select's state entry; Slack sends ``None`` when nothing is chosen."""
    option = None
    if value is not None:
        option = {"text": {"type": "plain_text", "text": value, "emoji": True}, "value": value}
    return {"type": "static_select", "selected_option": option}


def multi_select(values: list[str]) -> JsonDict:
    """A multi_static_select's state entry: the options chosen, in order ([] for none)."""
    chosen = [{"text": {"type": "plain_text", "text": v}, "value": v} for v in values]
    return {"type": "multi_static_select", "selected_options": chosen}


class SlackSender:
    """Plays Slack's side of the HTTP conversation against one bolt endpoint."""

    def __init__(
        self,
        url: str,
        signing_secret: str,
        *,
        team_id: str = TEAM_ID,
        response_url_base: FakeSlack | str | None = None,
        members: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.members = dict(members or {})  # the workspace's people: name -> member id
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.response_url_base = response_url_base
        self._response_urls = itertools.count(1)
        self._triggers = itertools.count(1)

    # -- low level -----------------------------------------------------------------------------

    def post(
        self,
        body: bytes,
        content_type: str,
        *,
        signature: Signature = "good",
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """POST ``body``; ``signature`` picks a valid, forged, missing or expired signature."""
        all_headers = {
            "Content-Type": content_type,
            **self._signature_headers(body, signature),
            **(headers or {}),
        }
        return requests.post(self.url, data=body, headers=all_headers, timeout=TIMEOUT)

    def _signature_headers(self, body: bytes, signature: Signature) -> dict[str, str]:
        match signature:
            case "good":
                return sign(self.signing_secret, body)
            case "bad":
                return sign("not-" + self.signing_secret, body)
            case "stale":
                return sign(self.signing_secret, body, int(time.time()) - STALE_AGE)
            case "none":
                return {}
        raise ValueError(f"unknown signature mode {signature!r}")

    def _post_form(self, fields: dict[str, str], signature: Signature) -> requests.Response:
        return self.post(urlencode(fields).encode(), _FORM, signature=signature)

    def _post_payload(self, payload: JsonDict, signature: Signature) -> requests.Response:
        """Interactive payloads travel as JSON inside a ``payload`` form field."""
        return self._post_form({"payload": json.dumps(payload)}, signature)

    def _post_json(
        self, doc: JsonDict, signature: Signature, headers: dict[str, str] | None = None
    ) -> requests.Response:
        return self.post(json.dumps(doc).encode(), _JSON, signature=signature, headers=headers)

    # -- payload parts -------------------------------------------------------------------------

    def _response_url(self, kind: str) -> str:
        """Keys are ``<kind>-<n>``, n counting this sender's response URLs: tests predict them."""
        n = next(self._response_urls)
        base = self.response_url_base
        if base is None:
            return f"https://hooks.slack.com/{kind}/{self.team_id}/{n}/{secrets.token_hex(12)}"
        if isinstance(base, str):
            return f"{base.rstrip('/')}/{kind}-{n}"
        return base.response_url(f"{kind}-{n}")

    def _trigger_id(self) -> str:
        return f"{next(self._triggers)}.{int(time.time())}.{secrets.token_hex(10)}"

    def _team(self) -> JsonDict:
        return {"id": self.team_id, "domain": TEAM_DOMAIN}

    def _name(self, user_id: str) -> str:
        return next((n for n, u in self.members.items() if u == user_id), user_id.lower())

    def _user(self, user_id: str) -> JsonDict:
        name = self._name(user_id)
        return {"id": user_id, "username": name, "name": name, "team_id": self.team_id}

    @staticmethod
    def _channel_name(channel_id: str) -> str:
        return "directmessage" if channel_id.startswith("D") else "general"

    # -- what Slack sends ----------------------------------------------------------------------

    def slash_command(
        self,
        command: str = "/lab",
        text: str = "",
        user_id: str = "U1",
        user_name: str | None = None,
        channel_id: str = "C1",
        trigger_id: str | None = None,
        *,
        signature: Signature = "good",
        escaped: bool = True,
    ) -> requests.Response:
        """``text`` is what the person typed; Slack escapes it as labbot's manifest asks unless
        ``escaped`` is False (then it goes as given, for a test of what Slack never sends)."""
        fields = {
            "token": VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel_id,
            "channel_name": self._channel_name(channel_id),
            "user_id": user_id,
            "user_name": user_name or self._name(user_id),
            "command": command,
            "text": as_slack_sends(text, self.members) if escaped else text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": self._response_url("commands"),
            "trigger_id": trigger_id or self._trigger_id(),
        }
        return self._post_form(fields, signature)

    def block_action(
        self,
        action_id: str,
        value: str,
        user_id: str = "U1",
        *,
        signature: Signature = "good",
        **where: Any,
    ) -> requests.Response:
        """A button click, sent; ``where`` as for ``click_payload``."""
        return self._post_payload(self.click_payload(action_id, value, user_id, **where), signature)

    def select_action(
        self, action_id: str, value: str, user_id: str = "U1", **where: Any
    ) -> requests.Response:
        """A choice in a static select menu, sent: Slack's body carries the chosen option
        (`selected_option`) where a button's carries its `value`; ``where`` as for
        ``click_payload``."""
        payload = self.click_payload(action_id, value, user_id, **where)
        action = payload["actions"][0]
        text = action.pop("text")
        del action["value"]
        action.update(
            type="static_select",
            selected_option={"text": text, "value": value},
            placeholder={"type": "plain_text", "text": "Bill another donor", "emoji": True},
        )
        return self._post_payload(payload, "good")

    def click_payload(
        self,
        action_id: str,
        value: str,
        user_id: str = "U1",
        *,
        block_id: str = "b",
        channel_id: str | None = None,
        message_ts: str | None = None,
        message: JsonDict | None = None,
        view: JsonDict | None = None,
        container: JsonDict | None = None,
        trigger_id: str | None = None,
    ) -> JsonDict:
        """The body Slack sends for a button click; pass ``view`` for a button in a modal or on
        App Home. Buttons in views come without channel, message and response_url, as on Slack.
        """
        payload: JsonDict = {
            "type": "block_actions",
            "user": self._user(user_id),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": trigger_id or self._trigger_id(),
            "team": self._team(),
            "enterprise": None,
            "is_enterprise_install": False,
            "state": {"values": {}},
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id,
                    "value": value,
                    "type": "button",
                    "text": {"type": "plain_text", "text": value, "emoji": True},
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        if view is not None:
            payload["view"] = view
            payload["container"] = container or {"type": "view", "view_id": view.get("id", "V1")}
        else:
            payload.update(self._message_context(channel_id or "C1", message_ts, message))
            if container is not None:
                payload["container"] = container
        return payload

    def _message_context(
        self, channel_id: str, message_ts: str | None, message: JsonDict | None
    ) -> JsonDict:
        ts = message_ts or (message or {}).get("ts") or "1700000000.000100"
        message = message or {"type": "message", "ts": ts, "text": "", "user": BOT_USER_ID}
        return {
            "container": {
                "type": "message",
                "message_ts": ts,
                "channel_id": channel_id,
                "is_ephemeral": False,
            },
            "channel": {"id": channel_id, "name": self._channel_name(channel_id)},
            "message": {"ts": ts, **message},
            "response_url": self._response_url("actions"),
        }

    def view_submission(
        self,
        callback_id: str,
        values: JsonDict,
        user_id: str = "U1",
        *,
        private_metadata: str = "",
        view_id: str = "V1",
        trigger_id: str | None = None,
        signature: Signature = "good",
    ) -> requests.Response:
        """``values`` is ``{block_id: {action_id: field(...) | select(...)}}`` as Slack nests it."""
        payload = {
            "type": "view_submission",
            "team": self._team(),
            "user": self._user(user_id),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": trigger_id or self._trigger_id(),
            "view": {
                "id": view_id,
                "team_id": self.team_id,
                "type": "modal",
                "callback_id": callback_id,
                "private_metadata": private_metadata,
                "state": {"values": values},
                "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
                "root_view_id": view_id,
                "app_id": APP_ID,
                "blocks": [],
            },
            "response_urls": [],
            "enterprise": None,
            "is_enterprise_install": False,
        }
        return self._post_payload(payload, signature)

    def event(
        self,
        event: JsonDict,
        event_id: str | None = None,
        retry_num: int | None = None,
        *,
        signature: Signature = "good",
    ) -> requests.Response:
        """An Events API delivery; ``retry_num`` marks it as Slack's retry after a slow ack."""
        envelope = {
            "token": VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{secrets.token_hex(5).upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
        }
        headers = None
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return self._post_json(envelope, signature, headers)

    def url_verification(
        self, challenge: str, *, signature: Signature = "good"
    ) -> requests.Response:
        doc = {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
        return self._post_json(doc, signature)
