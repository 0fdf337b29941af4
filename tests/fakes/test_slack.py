"""The fake Slack and the request sender are test infrastructure: prove they behave like Slack.

The fake is checked through the real slack_sdk WebClient, and the sender through a real bolt App
served over HTTP, so the tests relying on both exercise the same code paths as production.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.webhook import WebhookClient

from fakes.slack import BOT_USER_ID, TEAM_ID, Call, FakeSlack
from fakes.slack_rates import Limit
from fakes.slack_sender import SlackSender, select, sign
from fakes.slack_sender import field as text_field
from tests.fakes.conftest import TOKEN, error_of

SECRET = "test-signing-secret"
DIVIDER = {"type": "divider"}


# -- the fake Web API ------------------------------------------------------------------------


def test_auth_test_answers_like_slack_and_never_records_the_token(
    fake: FakeSlack, client: WebClient
) -> None:
    answer = client.auth_test()
    assert answer["team"] == "Fake Lab"
    assert answer["user"] == "labbot"
    assert answer["user_id"] == BOT_USER_ID
    assert answer["team_id"] == TEAM_ID
    assert answer["bot_id"]
    assert fake.base_url.endswith("/api/")
    [call] = fake.calls("auth.test")
    assert call.authorized and call.status == 200 and not call.failed
    assert TOKEN not in repr(fake.calls())


def test_a_call_without_a_token_is_refused(fake: FakeSlack) -> None:
    anonymous = WebClient(base_url=fake.base_url)
    assert error_of(anonymous.auth_test) == "not_authed"
    assert not fake.calls("auth.test")[0].authorized


def test_post_then_update_changes_the_current_message(fake: FakeSlack, client: WebClient) -> None:
    first = client.chat_postMessage(channel="C1", text="pending", blocks=[_section("pending")])
    second = client.chat_postMessage(channel="C1", text="other")
    assert float(second["ts"]) > float(first["ts"])
    assert first["message"]["text"] == "pending"

    client.chat_update(channel="C1", ts=first["ts"], text="approved")

    current = fake.current_message("C1", first["ts"])
    assert current["text"] == "approved"
    assert current["blocks"] == [_section("pending")], "Slack keeps blocks an update leaves out"
    assert [m["text"] for m in fake.messages("C1")] == ["pending", "other"]


def test_update_needs_the_channel_the_message_was_posted_in(
    fake: FakeSlack, client: WebClient
) -> None:
    posted = client.chat_postMessage(channel="U1", text="hello")
    dm = fake.dm_channel("U1")
    assert posted["channel"] == dm
    assert fake.messages(dm) == fake.messages("U1") == [{"channel": "U1", "text": "hello"}]

    def update_by_user_id() -> object:
        return client.chat_update(channel="U1", ts=posted["ts"], text="x")

    assert error_of(update_by_user_id) == "message_not_found"
    assert client.chat_update(channel=dm, ts=posted["ts"], text="x")["ok"]


def test_conversations_open_gives_a_stable_dm_per_user(client: WebClient) -> None:
    first = client.conversations_open(users="U123")["channel"]["id"]
    again = client.conversations_open(users="U123")["channel"]["id"]
    other = client.conversations_open(users="U456")["channel"]["id"]
    assert first == again != other
    assert first.startswith("D")


def test_form_encoded_calls_are_parsed_including_json_fields(
    fake: FakeSlack, client: WebClient
) -> None:
    client.api_call(
        "chat.postMessage", data={"channel": "C9", "blocks": json.dumps([_section("hi")])}
    )
    [params] = fake.messages("C9")
    assert params["blocks"] == [_section("hi")]


def test_users_and_usergroups(fake: FakeSlack, client: WebClient) -> None:
    user = client.users_info(user="U42")["user"]
    assert user["tz"] == "UTC"
    assert "U42" in user["real_name"]
    fake.set_usergroup("S1", ["U1", "U2"])
    assert client.usergroups_users_list(usergroup="S1")["users"] == ["U1", "U2"]
    assert error_of(lambda: client.usergroups_users_list(usergroup="S2")) == "no_such_subteam"


def test_views_open_update_and_publish(fake: FakeSlack, client: WebClient) -> None:
    opened = client.views_open(trigger_id="t1", view=_modal(1))["view"]
    assert opened["id"].startswith("V")
    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view=_modal(2))
    assert updated["view"]["id"] == opened["id"]
    stale = error_of(
        lambda: client.views_update(view_id=opened["id"], hash=opened["hash"], view=_modal(3))
    )
    assert stale == "hash_conflict"

    home = {"type": "home", "blocks": [_section("home")]}
    first = client.views_publish(user_id="U1", view=home)["view"]["id"]
    assert client.views_publish(user_id="U1", view=home)["view"]["id"] == first


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
@pytest.mark.parametrize(
    ("method", "kwargs", "error"),
    [
        ("chat.postMessage", {"text": "no channel"}, "channel_not_found"),
        ("chat_postMessage", {"channel": "C1"}, "no_text"),
        ("chat_postMessage", {"channel": "C1", "text": "x" * 40_001}, "msg_too_long"),
        ("chat_postMessage", {"channel": "C1", "blocks": [DIVIDER] * 51}, "invalid_blocks"),
        ("chat_postMessage", {"channel": "C1", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]}, "invalid_blocks"),  # noqa: E501
        ("chat_update", {"channel": "C1", "ts": "1.2", "text": "x"}, "message_not_found"),
        ("views_open", {"trigger_id": "t", "view": {"type": "modal", "blocks": [DIVIDER] * 101}}, "invalid_arguments"),  # noqa: E501
        ("views_update", {"view_id": "V9999", "view": {"type": "modal"}}, "not_found"),
        ("no.such.method", {}, "unknown_method"),
    ],
)  # fmt: skip
def test_validation_errors_match_slack(
    fake: FakeSlack, client: WebClient, method: str, kwargs: dict, error: str
) -> None:
    if "." in method:
        assert error_of(lambda: client.api_call(method, json=kwargs)) == error
    else:
        assert error_of(lambda: getattr(client, method)(**kwargs)) == error
    assert all(call.status == 200 and not call.ok for call in fake.calls())


# -- Block Kit's sizes, checked in every test ---------------------------------------------------


def _text(text: str, kind: str = "mrkdwn") -> dict:
    return {"type": kind, "text": text}


def _button(text: str = "Go", value: str = "v") -> dict:
    return {"type": "button", "action_id": "go", "text": _text(text, "plain_text"), "value": value}


def _option(text: str = "o", value: str = "v") -> dict:
    return {"text": _text(text, "plain_text"), "value": value}


def _with(element: dict) -> list[dict]:
    return [{"type": "actions", "elements": [element]}]


def _select(options: list[dict]) -> dict:
    return {"type": "static_select", "action_id": "pick", "options": options}


# (what, the message with n of it, Slack's most, the error, where Slack points)
MESSAGE_LIMITS = [
    ("blocks", lambda n: {"blocks": [DIVIDER] * n}, 50, "invalid_blocks", "/blocks"),
    ("section text", lambda n: {"blocks": [_section("x" * n)]}, 3_000, "invalid_blocks", "/blocks/0/text/text"),  # noqa: E501
    ("section fields", lambda n: {"blocks": [{"type": "section", "fields": [_text("f")] * n}]}, 10, "invalid_blocks", "/blocks/0/fields"),  # noqa: E501
    ("field text", lambda n: {"blocks": [{"type": "section", "fields": [_text("f" * n)]}]}, 2_000, "invalid_blocks", "/blocks/0/fields/0/text"),  # noqa: E501
    ("header", lambda n: {"blocks": [{"type": "header", "text": _text("h" * n, "plain_text")}]}, 150, "invalid_blocks", "/blocks/0/text/text"),  # noqa: E501
    ("context elements", lambda n: {"blocks": [{"type": "context", "elements": [_text("c")] * n}]}, 10, "invalid_blocks", "/blocks/0/elements"),  # noqa: E501
    ("context text", lambda n: {"blocks": [{"type": "context", "elements": [_text("c" * n)]}]}, 3_000, "invalid_blocks", "/blocks/0/elements/0/text"),  # noqa: E501
    ("actions elements", lambda n: {"blocks": [{"type": "actions", "elements": [_button()] * n}]}, 25, "invalid_blocks", "/blocks/0/elements"),  # noqa: E501
    ("button text", lambda n: {"blocks": _with(_button(text="b" * n))}, 75, "invalid_blocks", "/blocks/0/elements/0/text/text"),  # noqa: E501
    ("button value", lambda n: {"blocks": _with(_button(value="v" * n))}, 2_000, "invalid_blocks", "/blocks/0/elements/0/value"),  # noqa: E501
    ("select options", lambda n: {"blocks": _with(_select([_option()] * n))}, 100, "invalid_blocks", "/blocks/0/elements/0/options"),  # noqa: E501
    ("option text", lambda n: {"blocks": _with(_select([_option(text="o" * n)]))}, 75, "invalid_blocks", "/blocks/0/elements/0/options/0/text/text"),  # noqa: E501
    ("option value", lambda n: {"blocks": _with(_select([_option(value="v" * n)]))}, 150, "invalid_blocks", "/blocks/0/elements/0/options/0/value"),  # noqa: E501
    ("accessory button", lambda n: {"blocks": [{**_section("s"), "accessory": _button(text="b" * n)}]}, 75, "invalid_blocks", "/blocks/0/accessory/text/text"),  # noqa: E501
    ("message text", lambda n: {"text": "t" * n}, 40_000, "msg_too_long", "/text"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "most", "error", "where"),
    [case[1:] for case in MESSAGE_LIMITS],
    ids=[case[0] for case in MESSAGE_LIMITS],
)
def test_each_block_kit_limit_of_a_message_is_refused_as_slack_refuses_it(
    fake: FakeSlack, client: WebClient, build, most: int, error: str, where: str
) -> None:
    at_most = {"text": "fallback", **build(most)}
    posted = client.chat_postMessage(channel="C1", **at_most)
    assert posted["ok"]
    assert client.chat_update(channel="C1", ts=posted["ts"], **at_most)["ok"]
    assert client.chat_postEphemeral(channel="C1", user="U1", **at_most)["ok"]

    over = {"text": "fallback", **build(most + 1)}
    for call in (
        lambda: client.chat_postMessage(channel="C1", **over),
        lambda: client.chat_update(channel="C1", ts=posted["ts"], **over),
        lambda: client.chat_postEphemeral(channel="C1", user="U1", **over),
    ):
        with pytest.raises(SlackApiError) as caught:
            call()
        assert caught.value.response["error"] == error
        [message] = caught.value.response["response_metadata"]["messages"]
        assert f"[json-pointer:{where}]" in message and str(most) in message
    assert fake.current_message("C1", posted["ts"])["text"] == at_most["text"], "kept as it was"


def _modal_with(**changes: object) -> dict:
    return {**_modal(1), "submit": _text("Send", "plain_text"), **changes}


def _choices(kind: str, n: int) -> dict:
    element = {"type": kind, "action_id": "c", "options": [_option(value=str(i)) for i in range(n)]}
    return {"type": "input", "block_id": "c", "label": _text("C", "plain_text"), "element": element}


VIEW_LIMITS = [
    ("blocks", lambda n: {"blocks": [DIVIDER] * n}, 100),
    ("title", lambda n: {"title": _text("t" * n, "plain_text")}, 24),
    ("submit", lambda n: {"submit": _text("s" * n, "plain_text")}, 24),
    ("close", lambda n: {"close": _text("c" * n, "plain_text")}, 24),
    ("private_metadata", lambda n: {"private_metadata": "m" * n}, 3_000),
    ("checkboxes", lambda n: {"blocks": [_choices("checkboxes", n)]}, 10),
    ("radio buttons", lambda n: {"blocks": [_choices("radio_buttons", n)]}, 10),
    ("a section in a view", lambda n: {"blocks": [_section("x" * n)]}, 3_000),
]


@pytest.mark.parametrize(
    ("build", "most"), [case[1:] for case in VIEW_LIMITS], ids=[case[0] for case in VIEW_LIMITS]
)
def test_each_block_kit_limit_of_a_view_is_refused_as_slack_refuses_it(
    client: WebClient, build, most: int
) -> None:
    assert client.views_open(trigger_id="t", view=_modal_with(**build(most)))["ok"]
    home = {"type": "home", "blocks": [], **build(most)}
    assert client.views_publish(user_id="U1", view=home)["ok"]

    over = _modal_with(**build(most + 1))
    assert error_of(lambda: client.views_open(trigger_id="t", view=over)) == "invalid_arguments"
    opened = client.views_open(trigger_id="t", view=_modal(1))["view"]
    assert (
        error_of(lambda: client.views_update(view_id=opened["id"], view=over))
        == "invalid_arguments"
    )
    if "blocks" in build(0) or "private_metadata" in build(0):
        too_big_home = {"type": "home", "blocks": [], **build(most + 1)}
        refused = error_of(lambda: client.views_publish(user_id="U1", view=too_big_home))
        assert refused == "invalid_arguments"


def test_checkboxes_initial_options_must_be_among_their_options(client: WebClient) -> None:
    block = _choices("checkboxes", 2)
    block["element"]["initial_options"] = [_option(value="elsewhere")]
    refused = error_of(lambda: client.views_open(trigger_id="t", view=_modal_with(blocks=[block])))
    assert refused == "invalid_arguments"


def test_a_response_url_refuses_what_chat_post_message_refuses(fake: FakeSlack) -> None:
    hook = WebhookClient(fake.response_url("big"))
    answer = hook.send(text="many", blocks=[DIVIDER] * 51)
    assert (answer.status_code, answer.body) == (400, "invalid_blocks")
    assert hook.send(text="fits", blocks=[DIVIDER] * 50).status_code == 200
    assert [c.ok for c in fake.calls("response_url")] == [False, True]


# -- Slack's rates, where a test turns them on ------------------------------------------------


class Tick:
    """The fake's clock, stepped by the test."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tick() -> Tick:
    return Tick()


@pytest.fixture
def limited(tick: Tick) -> Iterator[FakeSlack]:
    with FakeSlack(clock=tick) as server:
        server.limit_rates()
        yield server


def _status(call: object) -> int:
    try:
        call()  # type: ignore[operator]
    except SlackApiError as error:
        assert error.response["error"] == "ratelimited"
        return error.response.status_code
    return 200


def test_posts_are_limited_per_channel_with_a_short_burst(limited: FakeSlack, tick: Tick) -> None:
    client = WebClient(token=TOKEN, base_url=limited.base_url)

    def post(channel: str) -> int:
        return _status(lambda: client.chat_postMessage(channel=channel, text="x"))

    assert [post("C1") for _ in range(5)] == [200, 200, 200, 200, 429]
    [refused] = [c for c in limited.calls() if c.status == 429]
    assert refused.failed and refused.response["error"] == "ratelimited"
    assert post("C2") == 200, "another channel has its own budget"
    assert post("U1") == 200 and post(limited.dm_channel("U1")) == 200, "a user id posts to the DM"
    tick.now += 0.5
    assert post("C1") == 429
    tick.now += 0.5
    assert [post("C1"), post("C1")] == [200, 429], "then one a second"
    tick.now += 10
    assert [post("C1") for _ in range(5)] == [200, 200, 200, 200, 429], "the burst comes back"
    assert len(limited.messages("C1")) == 9


def test_a_429_says_when_to_come_back(limited: FakeSlack, tick: Tick) -> None:
    client = WebClient(token=TOKEN, base_url=limited.base_url)
    posted = client.chat_postMessage(channel="C1", text="x")
    updates = [
        _status(lambda: client.chat_update(channel="C1", ts=posted["ts"], text="y"))
        for _ in range(6)
    ]
    assert updates == [200] * 5 + [429]
    with pytest.raises(SlackApiError) as caught:
        client.chat_update(channel="C1", ts=posted["ts"], text="y")
    assert caught.value.response.headers["Retry-After"] == "2", "1.2 s, in whole seconds"
    assert _status(lambda: client.conversations_open(users="U1")) == 200, "another method"
    tick.now += 1.2
    assert _status(lambda: client.chat_update(channel="C1", ts=posted["ts"], text="z")) == 200


def test_views_publish_is_limited_per_user(limited: FakeSlack) -> None:
    client = WebClient(token=TOKEN, base_url=limited.base_url)
    home = {"type": "home", "blocks": []}
    statuses = [_status(lambda: client.views_publish(user_id="U1", view=home)) for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    assert _status(lambda: client.views_publish(user_id="U2", view=home)) == 200


def test_a_test_may_set_a_limit_of_its_own(tick: Tick) -> None:
    with FakeSlack(clock=tick) as strict:
        strict.limit_rates(chat_postMessage=Limit(2.0, 1, per="channel"))
        client = WebClient(token=TOKEN, base_url=strict.base_url)
        assert _status(lambda: client.chat_postMessage(channel="C1", text="x")) == 200
        with pytest.raises(SlackApiError) as caught:
            client.chat_postMessage(channel="C1", text="x")
        assert caught.value.response.headers["Retry-After"] == "2"
        assert [c.at for c in strict.calls()] == [tick.now, tick.now], "timed on the fake's clock"


def test_rates_are_off_unless_a_test_turns_them_on(fake: FakeSlack, client: WebClient) -> None:
    assert all(client.chat_postMessage(channel="C1", text="x")["ok"] for _ in range(20))


def test_rate_limit_is_retried_by_the_sdk_retry_handler(fake: FakeSlack) -> None:
    plain = WebClient(token=TOKEN, base_url=fake.base_url)
    fake.fail_next("chat.postMessage", status=429, retry_after=1)
    with pytest.raises(SlackApiError) as caught:
        plain.chat_postMessage(channel="C1", text="hi")
    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "1"

    patient = WebClient(
        token=TOKEN,
        base_url=fake.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    fake.reset()
    fake.fail_next("chat.postMessage", status=429, retry_after=1)
    assert patient.chat_postMessage(channel="C1", text="hi")["ok"]
    limited, accepted = fake.calls("chat.postMessage")
    assert (limited.failed, limited.status) == (True, 429)
    assert (accepted.failed, accepted.status) == (False, 200)
    assert accepted.at - limited.at >= 1.0


def test_server_errors_with_and_without_a_body(fake: FakeSlack, client: WebClient) -> None:
    fake.fail_next("chat.postMessage", status=500)
    fake.fail_next("chat.postMessage", status=503, empty_body=True)
    with pytest.raises(SlackApiError) as first:
        client.chat_postMessage(channel="C1", text="a")
    with pytest.raises(SlackApiError) as second:
        client.chat_postMessage(channel="C1", text="b")
    assert first.value.response.status_code == 500
    assert first.value.response["error"] == "internal_error"
    assert second.value.response.status_code == 503
    assert client.chat_postMessage(channel="C1", text="c")["ok"]
    assert [c.failed for c in fake.calls()] == [True, True, False]
    assert fake.messages() == [{"channel": "C1", "text": "c"}]


def test_delay_slows_only_that_method(fake: FakeSlack, client: WebClient) -> None:
    fake.delay("users.info", 0.05)
    client.users_info(user="U1")
    client.auth_test()
    slow, quick = fake.calls()
    assert slow.method == "users.info" and quick.at - slow.at >= 0.05


def test_concurrent_posts_get_unique_timestamps(client: WebClient) -> None:
    stamps: list[str] = []

    def post() -> None:
        stamps.append(client.chat_postMessage(channel="C1", text="x")["ts"])

    threads = [threading.Thread(target=post) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(stamps)) == 20


def test_response_urls_are_recorded(fake: FakeSlack) -> None:
    WebhookClient(fake.response_url("abc")).send(text="done", replace_original=True)
    call = fake.wait_for("response_url")
    assert call.path.endswith("/abc")
    assert call.params == {"text": "done", "replace_original": True}


def test_wait_for_explains_what_was_recorded(fake: FakeSlack, client: WebClient) -> None:
    client.auth_test()
    with pytest.raises(AssertionError, match=r"auth\.test status=200"):
        fake.wait_for("chat.postMessage", timeout=0.05)


# -- the sender against a real bolt App --------------------------------------------------------


class _FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Silenced: only failures belong in test output."""


@dataclass
class Bolt:
    sender: SlackSender
    seen: dict[str, dict] = field(default_factory=dict)


def _build_app(fake: FakeSlack, seen: dict[str, dict]) -> App:
    app = App(signing_secret=SECRET, client=WebClient(token=TOKEN, base_url=fake.base_url))

    @app.command("/lab")
    def lab(ack, command, respond, client) -> None:
        ack("on it")
        seen["command"] = command
        respond(f"done: {command['text']}")
        client.chat_postMessage(channel=command["channel_id"], text="posted")

    @app.action("approve")
    def approve(ack, body, client) -> None:
        ack()
        seen["action"] = body
        client.chat_update(channel=body["channel"]["id"], ts=body["message"]["ts"], text="ok")

    @app.action("home_button")
    def home_button(ack, body) -> None:
        ack()
        seen["home"] = body

    @app.view("request")
    def request(ack, view, body, client) -> None:
        values = view["state"]["values"]
        if not values["title"]["input"]["value"]:
            ack(response_action="errors", errors={"title": "required"})
            return
        ack()
        plan = values["plan"]["choice"]["selected_option"]["value"]
        client.chat_postMessage(channel=body["user"]["id"], text=f"requested {plan}")

    @app.event("app_mention")
    def mention(event, say) -> None:
        say(f"hi <@{event['user']}>")

    return app


@pytest.fixture
def bolt(fake: FakeSlack) -> Iterator[Bolt]:
    seen: dict[str, dict] = {}
    handler = SlackRequestHandler(_build_app(fake, seen))
    server = make_server(
        "127.0.0.1", 0, handler, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/slack/events"
    try:
        yield Bolt(SlackSender(url, SECRET, response_url_base=fake), seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_sign_is_accepted_by_slack_sdk_verifier() -> None:
    body = b"command=%2Flab&text=hello"
    headers = sign(SECRET, body, timestamp=1_700_000_000)
    verifier = SignatureVerifier(SECRET, clock=_FixedClock(1_700_000_100))
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b"x", headers)


def test_signed_slash_command_is_acked_and_runs(fake: FakeSlack, bolt: Bolt) -> None:
    response = bolt.sender.slash_command(text="request c1.small.x86", user_id="U7")
    assert response.status_code == 200
    assert response.text == "on it"
    assert response.elapsed.total_seconds() < 3

    reply = fake.wait_for("response_url")
    assert reply.params["text"] == "done: request c1.small.x86"
    assert reply.path.endswith("/commands-1")
    fake.wait_for(lambda c: c.method == "chat.postMessage" and c.params["channel"] == "C1")
    command = bolt.seen["command"]
    assert (command["user_id"], command["team_id"]) == ("U7", TEAM_ID)
    assert command["trigger_id"]


@pytest.mark.parametrize("signature", ["bad", "none", "stale"])
def test_unverified_requests_are_refused(fake: FakeSlack, bolt: Bolt, signature: str) -> None:
    response = bolt.sender.slash_command(text="x", signature=signature)  # type: ignore[arg-type]
    assert response.status_code == 401
    assert "command" not in bolt.seen
    assert not fake.calls("response_url")


def test_block_action_reaches_its_listener(fake: FakeSlack, client: WebClient, bolt: Bolt) -> None:
    posted = client.chat_postMessage(channel="C5", text="approve?")
    response = bolt.sender.block_action(
        "approve", "lease-1", "U2", channel_id="C5", message=posted["message"]
    )
    assert response.status_code == 200
    fake.wait_for("chat.update")
    assert fake.current_message("C5", posted["ts"])["text"] == "ok"
    action = bolt.seen["action"]
    assert action["actions"][0]["value"] == "lease-1"
    assert action["response_url"].startswith(fake.root_url)


def test_home_tab_button_carries_the_view(bolt: Bolt) -> None:
    view = {"id": "V42", "type": "home", "blocks": []}
    assert bolt.sender.block_action("home_button", "x", "U3", view=view).status_code == 200
    body = bolt.seen["home"]
    assert body["view"]["type"] == "home"
    assert body["container"] == {"type": "view", "view_id": "V42"}
    assert "response_url" not in body


def test_view_submission_reaches_its_listener(fake: FakeSlack, bolt: Bolt) -> None:
    missing = {"title": {"input": text_field(None)}, "plan": {"choice": select("t1")}}
    refused = bolt.sender.view_submission("request", missing, "U4")
    assert refused.json() == {"response_action": "errors", "errors": {"title": "required"}}

    values = {"title": {"input": text_field("CI")}, "plan": {"choice": select("c1.small.x86")}}
    assert bolt.sender.view_submission("request", values, "U4").status_code == 200
    call = fake.wait_for("chat.postMessage")
    assert call.params["text"] == "requested c1.small.x86"
    assert call.response["channel"] == fake.dm_channel("U4")


def test_events_and_url_verification(fake: FakeSlack, bolt: Bolt) -> None:
    assert bolt.sender.url_verification("c-123").json() == {"challenge": "c-123"}
    event = {"type": "app_mention", "user": "U5", "text": "hi", "channel": "C2", "ts": "1.1"}
    assert bolt.sender.event(event, event_id="Ev1", retry_num=1).status_code == 200
    call: Call = fake.wait_for("chat.postMessage")
    assert call.params["text"] == "hi <@U5>"


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _modal(n: int) -> dict:
    return {
        "type": "modal",
        "callback_id": "request",
        "title": {"type": "plain_text", "text": f"Step {n}"},
        "blocks": [_section(f"step {n}")],
    }
