"""The whole stack where it matters: the bolt App over HTTP, the fake Slack Web API, and the
real packet-python client talking HTTPS to the fake Packet API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlmodel import select

from bot.blocks import cards, modals
from bot.demo import on_fake_packet
from commands.pubkeys import read_key
from commands.sweep import sweep
from fakes.keys import public_key
from fakes.packet import FakePacket
from fakes.slack import FakeSlack
from fakes.slack_sender import checkboxes, field
from storage.db import Database
from storage.models import Lease
from tests.bot.conftest import MEMBERS, Slack, body_of, file_request, serve, settings_for
from tests.bot.test_commands import request_values
from tests.conftest import OWNER, REVIEWER, Clock

CAROL = MEMBERS["carol"]


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
    # The owner's DM channel takes about one message a second: the reclaim DM waits its turn
    # behind the ready DM and the server files, and the next pass of the outbox sends it.
    sweep(slack.ctx.lab, slack.clock.advance(seconds=10))
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

    listed = time.monotonic()  # the ack alone: settling would wait out the hung creates too
    assert slack.sender.slash_command(text="list", user_id=OWNER).status_code == 200
    assert time.monotonic() - listed < 3, "`/lab list` was acknowledged late"

    slack.settle(timeout=30)  # the hung creates time out (1 s each) and are retried
    assert slack.lease(lease_id).state == "provisioning"
    sweep(slack.ctx.lab, slack.clock.advance(minutes=2))
    sweep(slack.ctx.lab, slack.clock.advance(minutes=2))
    assert slack.lease(lease_id).state == "active"
    assert sorted(d["hostname"] for d in packet.devices()) == [
        f"coredns-{lease_id}-{n}" for n in (1, 2, 3)
    ]
    assert slack.lease(lease_id).ends_at - slack.lease(lease_id).starts_at == timedelta(hours=48)


def test_the_keys_checked_in_the_request_form_and_the_co_owners_go_on_packets_servers(
    slack: Slack, packet: FakePacket
) -> None:
    laptop, old = public_key("owner-1", "owner@laptop"), public_key("owner-2", "owner@old")
    carol = public_key("carol", "carol@box")
    slack.command(f"keys add {laptop}", OWNER)
    slack.command(f"keys add {old}", OWNER)
    slack.command(f"keys add {carol}", CAROL)

    slack.command("request", OWNER)
    view = slack.fake.calls("views.open")[-1].params["view"]
    [offered] = [b["element"] for b in view["blocks"] if b["block_id"] == modals.SAVED_KEYS]
    fingerprints = [read_key(k).fingerprint for k in (laptop, old)]
    assert [o["value"] for o in offered["options"]] == fingerprints
    assert [o["text"]["text"] for o in offered["options"]] == [
        "owner@laptop (ed25519)",
        "owner@old (ed25519)",
    ]
    assert [o["description"]["text"] for o in offered["options"]] == fingerprints
    assert offered["initial_options"] == offered["options"]  # all checked until unchecked

    def submit(checked: list[str]) -> dict:
        values = request_values(
            ssh_key={modals.VALUE: field(None)},
            saved_keys={modals.VALUE: checkboxes(checked)},
            co_owners={modals.VALUE: {"type": "multi_users_select", "selected_users": [CAROL]}},
        )
        answer = slack.sender.view_submission(view["callback_id"], values, OWNER)
        slack.settle()
        return body_of(answer) if answer.text else {}

    assert "Check at least one of your saved keys" in submit([])["errors"][modals.SAVED_KEYS]
    submit(["SHA256:" + "A" * 43])  # not a key of theirs: refused by the use case
    assert "is no longer one of your saved keys" in slack.dms(OWNER)[-1]["text"]
    assert [e.outcome for e in slack.audits("request")] == ["refused", "refused"]

    submit([fingerprints[0]])
    with slack.db.read() as session:
        [filed] = session.exec(select(Lease)).all()
    slack.card_click(cards.APPROVE, filed.id, REVIEWER)
    creates = [r.body for r in packet.requests if r.method == "POST" and "devices" in r.path]
    assert len(creates) == 2
    for body in creates:
        assert [k["key"] for k in body["ssh_keys"]] == [laptop, carol]

    sweep(slack.ctx.lab, slack.clock.advance(minutes=2))
    [ready] = [m["text"] for m in slack.dms(OWNER) if "is ready" in m["text"]]
    assert fingerprints[0] in ready and read_key(carol).fingerprint in ready
    assert fingerprints[1] not in ready
