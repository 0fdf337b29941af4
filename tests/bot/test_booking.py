"""Booking ahead over HTTP (issue 22): `from=` read in the requester's Slack zone (users.info),
the form's datetimepicker, the card showing the start, and a bad start answered in a sentence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.blocks import cards, dms
from bot.settings import from_env
from commands.sweep import sweep
from tests.bot.conftest import INLINE, Slack, body_of, lease_id_in
from tests.bot.test_commands import request_values
from tests.conftest import OWNER, REVIEWER


def test_an_inline_booking_is_read_in_the_requesters_zone_and_waits_for_its_start(
    slack: Slack,
) -> None:
    slack.fake.set_zone(OWNER, "America/New_York")  # 2026-11-02 09:00 UTC is 04:00 there
    slack.command(f'{INLINE} from="tomorrow 09:00"', OWNER)
    reply = slack.replies()[-1]
    lease_id = lease_id_in(reply)
    start = datetime(2026, 11, 3, 14, 0, tzinfo=UTC)  # 09:00 New York (UTC-5)
    assert slack.lease(lease_id).book_start == start
    assert f"<!date^{int(start.timestamp())}^" in reply
    channel, ts = slack.card_ref(lease_id)
    assert "Booked ahead" in str(slack.fake.current_message(channel, ts)["blocks"])

    slack.card_click(cards.APPROVE, lease_id, REVIEWER)
    assert slack.lease(lease_id).state == "approved"
    decision = [m for m in slack.dms(OWNER) if "approved" in m["text"]][-1]
    assert dms.CANCEL in str(decision["blocks"])  # a booking may be cancelled until it starts

    slack.clock.now = start - timedelta(minutes=15)
    sweep(slack.ctx.lab, slack.clock.now)
    assert slack.lease(lease_id).state == "provisioning"
    slack.clock.now = start - timedelta(minutes=10)
    sweep(slack.ctx.lab, slack.clock.now)
    assert slack.lease(lease_id).state == "active"
    assert slack.lease(lease_id).ends_at == start + timedelta(hours=48)


def test_the_form_books_with_its_datetimepicker(slack: Slack) -> None:
    slack.command("request", OWNER)
    [opened] = slack.fake.calls("views.open")
    assert opened.ok  # the fake checks the datetimepicker as Slack does
    blocks = {b["block_id"]: b for b in opened.params["view"]["blocks"]}
    assert blocks["start"]["element"]["type"] == "datetimepicker"

    start = datetime(2026, 11, 9, 9, 0, tzinfo=UTC)
    picked = {"value": {"type": "datetimepicker", "selected_date_time": int(start.timestamp())}}
    slack.sender.view_submission("lab_request", request_values(start=picked), OWNER)
    slack.settle()
    [dm] = slack.dms(OWNER)
    assert slack.lease(lease_id_in(dm["text"])).book_start == start


def test_a_start_in_the_past_comes_back_under_the_forms_field(slack: Slack) -> None:
    past = {"value": {"type": "datetimepicker", "selected_date_time": 1_700_000_000}}
    answer = slack.sender.view_submission("lab_request", request_values(start=past), OWNER)
    slack.settle()
    body = body_of(answer)
    assert body["response_action"] == "errors" and "in the past" in body["errors"]["start"]
    assert not slack.dms(OWNER)


def test_an_unreadable_start_gets_one_sentence_saying_what_is_accepted(slack: Slack) -> None:
    slack.command(f"{INLINE} from=someday", OWNER)
    reply = slack.replies()[-1]
    assert "tomorrow 09:00" in reply and "someday" in reply
    assert slack.audits("request")[-1].outcome == "refused"
    assert not slack.fake.messages()


def test_app_home_lists_a_booking_with_its_start_and_cancel(slack: Slack) -> None:
    slack.command(f"{INLINE} from=2026-11-09T09:00", OWNER)
    lease_id = lease_id_in(slack.replies()[-1])
    slack.card_click(cards.APPROVE, lease_id, REVIEWER)
    slack.sender.event({"type": "app_home_opened", "user": OWNER, "tab": "home"})
    slack.settle()
    published = slack.fake.calls("views.publish")[-1].params["view"]
    assert "starts <!date^" in str(published["blocks"])
    assert dms.CANCEL in str(published["blocks"])
    slack.click(dms.CANCEL, str(lease_id), OWNER)
    assert slack.lease(lease_id).state == "cancelled"


def test_the_booking_settings_are_read_from_the_environment() -> None:
    policy = from_env({}).policy
    assert (policy.book_ahead, policy.lead_time, policy.bookings_per_project) == (
        timedelta(days=60),
        timedelta(minutes=15),
        3,
    )
    policy = from_env(
        {"LABBOT_BOOK_AHEAD": "14d", "LABBOT_LEAD_TIME": "0s", "LABBOT_BOOKINGS_PER_PROJECT": "1"}
    ).policy
    assert (policy.book_ahead, policy.lead_time, policy.bookings_per_project) == (
        timedelta(days=14),
        timedelta(0),
        1,
    )
