"""What the provider reports for "now" on the reviewers' card, through packet-python against
the fake Packet API's `/capacity`: its answer when it has one, "unknown" when the call fails,
which never blocks the request."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.blocks.cards import review_card
from commands.lab import Lab
from commands.notices import Kind
from commands.policy import Policy
from commands.request import request
from fakes.notifier import RecordingNotifier
from tests.conftest import OWNER, ROLES, request_input

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _card_capacity(lab: Lab) -> str:
    [card] = [m for m in lab.notifier.messages if m.kind == Kind.REVIEW_CARD][-1:]
    fields = [f["text"] for b in review_card(card) for f in b.get("fields") or []]
    return next(f for f in fields if f.startswith("*Capacity*")).split("\n", 1)[1]


def test_the_card_says_what_packet_reports_for_now_or_unknown(db, packet_provider, fake_packet):
    lab = Lab(db, packet_provider, RecordingNotifier(), Policy(pending_per_user=5), ROLES)
    fake_packet.set_capacity("c1.small.x86", "ams1", 2)
    assert request(lab, OWNER, request_input(count=2), NOW).ok
    assert _card_capacity(lab) == "provider now: available"
    assert request(lab, OWNER, request_input(count=3), NOW).ok
    assert _card_capacity(lab) == "provider now: the provider says it is short"
    fake_packet.fail_next("POST", "capacity", 500, times=20)
    assert request(lab, OWNER, request_input(count=1), NOW).ok  # never blocks
    assert _card_capacity(lab) == "provider now: unknown"
