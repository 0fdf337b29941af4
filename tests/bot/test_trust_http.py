"""The HTTP trust boundary, attacked as a hostile sender would: headers bolt's verifier cannot
read, bodies bolt cannot parse, and hypothesis throwing everything else. Nothing unverified is
read or answered (401, no outbound call, no row); a signed but malformed request gets 400 and
nothing is done; nothing is ever a 5xx."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_bolt import BoltRequest
from sqlmodel import func, select

from bot.app import create_app
from bot.blocks import cards
from fakes.slack_sender import sign
from storage.models import AuditEvent, Lease
from tests.bot.conftest import SECRET, Slack
from tests.conftest import OWNER, OWNER_KEY, REVIEWER

FORM = "application/x-www-form-urlencoded"
# A timestamp of the moment the request is sent, so it is never stale; a placeholder in the
# parameters keeps the tests' ids the same in every process that collects them (xdist).
CURRENT = "current"


def rows(slack: Slack) -> tuple[int, int]:
    with slack.db.read() as session:
        leases = session.exec(select(func.count()).select_from(Lease)).one()
        return leases, session.exec(select(func.count()).select_from(AuditEvent)).one()


def outbound(slack: Slack) -> list[str]:
    """Every call labbot made to Slack, except the auth.test bolt makes at start-up."""
    return [c.method for c in slack.fake.calls() if c.method != "auth.test"]


def hostile_click(slack: Slack) -> bytes:
    """An Approve click naming a victim and a response_url the sender controls."""
    payload = {
        "type": "block_actions",
        "user": {"id": REVIEWER},
        "actions": [{"action_id": f"{cards.APPROVE}:1", "value": "1"}],
        "response_url": slack.fake.response_url("hostile"),
        "channel": {"id": "C0VICTIM"},
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def post_raw(slack: Slack, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(slack.sender.url, data=body, headers=headers, timeout=10)


@pytest.mark.parametrize(
    "timestamp, signature",
    [
        ("abc", "v0=00"),
        ("", "v0=00"),
        (None, "v0=00"),
        ("now", None),
        ("1e9", "v0=00"),
        ("-5", "v0=00"),
        ("99999999999999999999", "v0=00"),
        (CURRENT, "v0=\u00e9\u00e9\u00e9"),
        (CURRENT, ""),
    ],
)
def test_a_request_whose_signature_cannot_even_be_read_gets_401_and_nothing_else(
    slack: Slack, timestamp: str | None, signature: str | None
) -> None:
    before = rows(slack)
    headers = {"Content-Type": FORM}
    if timestamp == CURRENT:
        timestamp = str(int(time.time()))
    if timestamp is not None:
        headers["X-Slack-Request-Timestamp"] = timestamp
    if signature is not None:
        headers["X-Slack-Signature"] = signature
    answer = post_raw(slack, hostile_click(slack), headers)
    slack.settle()
    assert answer.status_code == 401
    assert outbound(slack) == []
    assert rows(slack) == before


def test_bolt_alone_never_answers_a_body_it_could_not_verify(slack: Slack) -> None:
    """Behind the gate bolt never sees such a request; should it, through another adapter,
    its error handler still tells nobody."""
    app = create_app(slack.ctx)
    answer = app.dispatch(
        BoltRequest(
            body=hostile_click(slack).decode(),
            headers={
                "content-type": FORM,
                "x-slack-request-timestamp": "abc",
                "x-slack-signature": "v0=00",
            },
        )
    )
    slack.settle()
    assert answer.status == 401
    assert outbound(slack) == []


def _payload(doc: object) -> bytes:
    return urlencode({"payload": json.dumps(doc)}).encode()


def _click(**changes: object) -> dict:
    return {"type": "block_actions", "user": {"id": OWNER}, **changes}


MALFORMED = {
    "payload not JSON": b"payload=%7Bnot+json",
    "payload truncated": _payload(_click(actions=[]))[:-9],
    "payload null": _payload(None),
    "payload a list": _payload([1, 2]),
    "payload a string": _payload("hello"),
    "payload a number": _payload(42),
    "two payload fields": _payload(_click()) + b"&" + _payload(_click()),
    "not UTF-8": b"payload=\xff\xfe\xfa",
    "actions empty": _payload(_click(actions=[])),
    "actions an object": _payload(_click(actions={})),
    "actions without action_id": _payload(_click(actions=[{"value": "1"}])),
    "view without type": _payload(
        {"type": "view_submission", "user": {"id": OWNER}, "view": {"callback_id": "lab_request"}}
    ),
    "view state a list": _payload(
        {
            "type": "view_submission",
            "user": {"id": OWNER},
            "view": {"type": "modal", "callback_id": "lab_request", "state": []},
        }
    ),
    "type a number": _payload({"type": 7}),
    "user a list": _payload(_click(user=[1], actions=[{"action_id": "x"}])),
    "event without type": json.dumps({"type": "event_callback", "event": {}}).encode(),
    "JSON body a list": b"[1, 2, 3]",
}


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_body_changes_nothing_and_is_never_a_500(
    slack: Slack, body: bytes, signed: bool
) -> None:
    before = rows(slack)
    content_type = "application/json" if body[:1] in b"[{" else FORM
    headers = {"Content-Type": content_type, **(sign(SECRET, body) if signed else {})}
    answer = post_raw(slack, body, headers)
    slack.settle()
    assert answer.status_code == (400 if signed else 401)
    assert outbound(slack) == []
    assert rows(slack) == before


HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40).map(
    str.strip
)
JSON_LEAF = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=12,
)
SHAPED = st.fixed_dictionaries(
    {"type": st.sampled_from(["block_actions", "view_submission", "event_callback", "shortcut"])},
    optional={
        "user": JSON | st.fixed_dictionaries({"id": st.just(OWNER)}),
        "actions": JSON | st.lists(st.dictionaries(st.sampled_from(["action_id", "value"]), JSON)),
        "view": JSON,
        "event": JSON,
        "callback_id": JSON,
        "command": JSON,
    },
)
BODIES = st.one_of(
    st.binary(max_size=300),
    JSON.map(lambda doc: json.dumps(doc).encode()),
    (JSON | SHAPED).map(_payload),
    st.dictionaries(
        st.sampled_from(["command", "text", "user_id", "payload", "type", "ssl_check"]),
        st.text(max_size=30),
    ).map(lambda fields: urlencode(fields).encode()),
)
CONTENT_TYPES = st.sampled_from([FORM, "application/json", "text/plain", "", "multipart/form-data"])
SIGNATURES = st.sampled_from(["good", "bad", "stale", "none", "garbage"])


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=BODIES, content_type=CONTENT_TYPES, signature=SIGNATURES, junk=HEADER_TEXT)
def test_fuzzed_requests_are_never_a_5xx_and_unverified_ones_leave_no_trace(
    slack: Slack, body: bytes, content_type: str, signature: str, junk: str
) -> None:
    leases_before, _ = rows(slack)
    slack.fake.reset()
    headers = {"Content-Type": content_type}
    now = int(time.time())
    match signature:
        case "good":
            headers |= sign(SECRET, body)
        case "bad":
            headers |= sign("not-" + SECRET, body)
        case "stale":
            headers |= sign(SECRET, body, now - 600)
        case "garbage":
            headers |= {"X-Slack-Request-Timestamp": junk, "X-Slack-Signature": junk}
    audits_before = rows(slack)[1]
    answer = post_raw(slack, body, headers)
    slack.settle()
    assert answer.status_code < 500
    assert rows(slack)[0] == leases_before
    if signature != "good":
        assert answer.status_code == 401
        assert outbound(slack) == []
        assert rows(slack)[1] == audits_before


def test_a_command_that_says_payload_is_read_as_the_command_it_is(slack: Slack) -> None:
    slack.command(
        'request 1 c1.small.x86 ams1 24h project=p repo=https://github.com/p/p "payload tests" '
        f'key="{OWNER_KEY}"',
        OWNER,
    )
    assert slack.replies()[-1].startswith("Request #")
