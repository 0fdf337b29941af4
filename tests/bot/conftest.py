"""The real bolt App served over HTTP on 127.0.0.1, its WebClient pointed at FakeSlack, driven
by correctly signed requests exactly as Slack sends them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
import requests
from sqlmodel import col, select

from bot.app import AppContext, build_context, create_app
from bot.blocks import cards
from bot.serve import local_server
from bot.settings import Settings
from commands.policy import Policy
from commands.sweep import sweep
from fakes.packet import FakePacket
from fakes.slack import FakeSlack
from fakes.slack_sender import SlackSender
from storage.db import Database
from storage.models import AuditEvent, Lease
from tests.conftest import NOWHERE, OWNER, OWNER_KEY, REVIEWER, ROLES, Clock

TOKEN = "xoxb-test-token"
SECRET = "test-signing-secret"
REVIEW_CHANNEL = "C0REVIEW"
ADMIN_CHANNEL = "C0ADMIN"
# The fake workspace's people by name, as Slack's @ menu offers them: a test types `@carol`
# and the sender sends what Slack sends, `<@U0CAROL|carol>`.
MEMBERS = {
    name: f"U0{name.upper()}"
    for name in ("owner", "other", "review", "admin", "carol", "coowner", "victim", "stranger")
}
INLINE = (
    "request 3 c1.small.x86 ams1 48h project=coredns repo=https://github.com/coredns/coredns "
    f'"scale tests of the kubernetes plugin" key="{OWNER_KEY}"'
)


def settings_for(fake: FakeSlack, **changes: Any) -> Settings:
    base = Settings(
        roles=ROLES,
        policy=Policy(),
        review_channel=REVIEW_CHANNEL,
        admin_channel=ADMIN_CHANNEL,
        slack_api_url=fake.base_url,
        slack_bot_token=TOKEN,
        slack_signing_secret=SECRET,
        simulated_provision=timedelta(seconds=120),
        github_api_url=NOWHERE,
        gitlab_api_url=NOWHERE,
    )
    return replace(base, **changes)


@dataclass
class Slack:
    """One served App and the handles a test needs to drive it and look at what people saw."""

    fake: FakeSlack
    ctx: AppContext
    sender: SlackSender
    clock: Clock
    db: Database

    def settle(self, timeout: float = 15.0) -> None:
        """Wait until every listener has finished its after-ack work."""
        assert self.ctx.settle(timeout), "listeners still busy"

    def command(self, text: str, user: str, **kwargs: Any) -> requests.Response:
        answer = self.sender.slash_command(text=text, user_id=user, **kwargs)
        self.settle()
        return answer

    def click(self, action: str, value: str, user: str, **kwargs: Any) -> requests.Response:
        answer = self.sender.block_action(f"{action}:{value}", value, user, **kwargs)
        self.settle()
        return answer

    def card_click(self, action: str, lease_id: int, user: str) -> requests.Response:
        channel, ts = self.card_ref(lease_id)
        return self.click(action, str(lease_id), user, channel_id=channel, message_ts=ts)

    def card_ref(self, lease_id: int) -> tuple[str, str]:
        for call in self.fake.calls("chat.postMessage"):
            blocks = call.params.get("blocks") or []
            ids = {b.get("block_id") for b in blocks}
            if call.ok and f"review:{lease_id}" in ids:
                return call.response["channel"], call.response["ts"]
        raise AssertionError(f"no review card for #{lease_id}")

    def replies(self) -> list[str]:
        """Ephemeral answers through response_urls, in order."""
        return [c.params.get("text", "") for c in self.fake.calls("response_url")]

    def dms(self, user: str) -> list[dict[str, Any]]:
        return self.fake.messages(self.fake.dm_channel(user))

    def lease(self, lease_id: int) -> Lease:
        with self.db.read() as session:
            return session.get(Lease, lease_id)

    def audits(self, action: str) -> list[AuditEvent]:
        with self.db.read() as session:
            return list(
                session.exec(
                    select(AuditEvent)
                    .where(AuditEvent.action == action)
                    .order_by(col(AuditEvent.id))
                ).all()
            )


def file_request(slack: Slack, user: str = OWNER) -> int:
    slack.command(INLINE, user)
    return lease_id_in(slack.replies()[-1])


def active_lease(slack: Slack, user: str = OWNER) -> int:
    """A lease whose servers are up: filed, approved on its card, provisioned by the sweep."""
    lease_id = file_request(slack, user)
    slack.card_click(cards.APPROVE, lease_id, REVIEWER)
    sweep(slack.ctx.lab, slack.clock.advance(minutes=3))
    assert slack.lease(lease_id).state == "active"
    return lease_id


def lease_id_in(text: str) -> int:
    return int(text.split("#", 1)[1].split()[0].rstrip(":.,"))


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture
def packet(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePacket]:
    """The fake Packet API over HTTPS, its throwaway CA trusted by requests."""
    with FakePacket(clock=clock, provision_seconds=60) as fake:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_bundle_path)
        yield fake


@pytest.fixture
def slack(fake: FakeSlack, db: Database, clock: Clock) -> Iterator[Slack]:
    yield from serve(fake, db, clock, settings_for(fake))


def serve(fake: FakeSlack, db: Database, clock: Clock, settings: Settings) -> Iterator[Slack]:
    ctx = build_context(settings, clock=clock, db=db)
    app = create_app(ctx)
    with local_server(app, settings.slack_signing_secret) as url:
        sender = SlackSender(url, SECRET, response_url_base=fake, members=MEMBERS)
        yield Slack(fake, ctx, sender, clock, db)
        ctx.settle(60)
    ctx.shutdown()


def body_of(response: requests.Response) -> dict[str, Any]:
    return json.loads(response.text) if response.text else {}


from tests.ec2_server import (  # noqa: E402, F401  (fixtures for the EC2 start-up tests)
    aws_env,
    ec2_proxy,
    moto_server,
    session_proxy,
)
