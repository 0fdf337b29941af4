"""The whole stack where it matters: the bolt App over HTTP, the fake Slack Web API, and the
real packet-python client talking HTTPS to the fake Packet API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from bot.blocks import cards
from bot.demo import on_fake_packet
from commands.sweep import sweep
from fakes.packet import FakePacket
from fakes.slack import FakeSlack
from storage.db import Database
from tests.bot.conftest import Slack, file_request, serve, settings_for
from tests.conftest import OWNER, REVIEWER, Clock


@pytest.fixture
def slack(fake: FakeSlack, db: Database, clock: Clock, packet: FakePacket) -> Iterator[Slack]:
    settings = on_fake_packet(settings_for(fake), packet, packet_timeout=1.0)
    yield from serve(fake, db, clock, settings)


def test_a_lease_from_slash_command_to_reclaim_through_packet(
    slack: Slack, packet: FakePacket
) -> None:
    lease_id = file_request(slack)
    slack.card_click(cards.APPROVE, lease_id, REVIEWER)
    assert len(packet.devices()) == 3

    sweep(slack.ctx.lab, slack.clock.advance(minutes=2))
    assert slack.lease(lease_id).state == "active"
    ready = [m["text"] for m in slack.dms(OWNER) if "is ready" in m["text"]]
    addresses = [a["address"] for d in packet.devices() for a in d["ip_addresses"] if a["public"]]
    assert ready and all(address in ready[0] for address in addresses)

    slack.command(f"release {lease_id}", OWNER)
    assert packet.devices() == []
    assert slack.lease(lease_id).state == "reclaimed"
    assert any("every server is deleted" in m["text"] for m in slack.dms(OWNER))


def test_a_packet_request_that_never_answers_does_not_delay_the_ack(
    slack: Slack, packet: FakePacket
) -> None:
    lease_id = file_request(slack)
    packet.hang_next("POST", f"projects/{packet.project_id}/devices", times=3)
    channel, ts = slack.card_ref(lease_id)

    started = time.monotonic()
    answer = slack.sender.block_action(
        f"{cards.APPROVE}:{lease_id}", str(lease_id), REVIEWER, channel_id=channel, message_ts=ts
    )
    acked = time.monotonic() - started
    assert answer.status_code == 200
    assert acked < 3, f"the Approve click was acknowledged after {acked:.1f} s"

    listed = time.monotonic()
    assert slack.command("list", OWNER).status_code == 200
    assert time.monotonic() - listed < 3

    slack.settle(timeout=30)  # the hung creates time out (1 s each) and are retried
    assert slack.lease(lease_id).state == "provisioning"
    sweep(slack.ctx.lab, slack.clock.advance(minutes=2))
    sweep(slack.ctx.lab, slack.clock.advance(minutes=2))
    assert slack.lease(lease_id).state == "active"
    assert sorted(d["hostname"] for d in packet.devices()) == [
        f"coredns-{lease_id}-{n}" for n in (1, 2, 3)
    ]
    assert slack.lease(lease_id).ends_at - slack.lease(lease_id).starts_at == timedelta(hours=48)
