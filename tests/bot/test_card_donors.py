"""A request card in a lab of several donors: it shows who pays and why, and a reviewer picks
another donor in its menu (a click verified and audited like the buttons) before approving."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from bot.blocks import cards
from commands.donors import Donor
from commands.policy import Policy
from fakes.slack import FakeSlack
from metal.simulated import SimulatedProvider
from storage.db import Database
from tests.bot.conftest import Slack, file_request, serve, settings_for
from tests.commands.test_routing import priced
from tests.conftest import OTHER, REVIEWER, Clock

DONORS = (Donor("cheap"), Donor("dear"), Donor("armco", architectures=frozenset({"aarch64"})))


@pytest.fixture
def donors_slack(fake: FakeSlack, db: Database, clock: Clock) -> Iterator[Slack]:
    """The served App on a lab of three donors, each a simulated account at its own prices."""
    settings = settings_for(fake, policy=Policy(donor_list=DONORS))
    for slack in serve(fake, db, clock, settings):
        providers = {
            donor.name: SimulatedProvider(
                db, clock=clock, provision_seconds=120, catalog=priced(percent)
            )
            for donor, percent in zip(DONORS, (75, 100, 50), strict=True)
        }
        slack.ctx.lab = replace(slack.ctx.lab, providers=providers, catalog=None, catalogs={})
        yield slack


def card(slack: Slack, lease_id: int) -> dict:
    return slack.fake.current_message(*slack.card_ref(lease_id))


def menu(message: dict) -> dict:
    (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
    (select,) = [e for e in actions["elements"] if e["type"] == "static_select"]
    return select


def pick(slack: Slack, lease_id: int, donor: str, user: str) -> None:
    channel, ts = slack.card_ref(lease_id)
    slack.sender.select_action(
        f"{cards.DONOR}:{lease_id}", f"{lease_id}:{donor}", user, channel_id=channel, message_ts=ts
    )
    slack.settle()


def test_the_card_shows_the_donor_and_why_and_offers_the_others(donors_slack: Slack) -> None:
    lease_id = file_request(donors_slack)
    message = card(donors_slack, lease_id)
    text = str(message["blocks"])
    assert "cheap (2026-11)" in text
    assert "the cheapest donor with credit for 2026-11 and room" in text
    assert "armco pays only for aarch64 servers" in text
    select = menu(message)
    assert [o["value"] for o in select["options"]] == [f"{lease_id}:cheap", f"{lease_id}:dear"]
    assert select["initial_option"]["value"] == f"{lease_id}:cheap"


def test_a_reviewer_picks_another_donor_in_the_menu(donors_slack: Slack) -> None:
    lease_id = file_request(donors_slack)
    pick(donors_slack, lease_id, "dear", REVIEWER)
    assert donors_slack.replies()[-1] == f"Request #{lease_id} will be paid by dear."
    assert donors_slack.lease(lease_id).donor == "dear"
    message = card(donors_slack, lease_id)
    assert menu(message)["initial_option"]["value"] == f"{lease_id}:dear"
    assert f"picked by <@{REVIEWER}> on the card" in str(message["blocks"])
    (chosen,) = [a for a in donors_slack.audits("choose_donor") if a.outcome == "ok"]
    assert chosen.actor == REVIEWER

    donors_slack.card_click(cards.APPROVE, lease_id, REVIEWER)
    assert donors_slack.lease(lease_id).state == "provisioning"
    assert donors_slack.lease(lease_id).donor == "dear"


def test_a_pick_by_a_non_reviewer_or_of_a_donor_that_cannot_pay_is_refused(
    donors_slack: Slack,
) -> None:
    lease_id = file_request(donors_slack)
    pick(donors_slack, lease_id, "dear", OTHER)
    assert "Only reviewers" in donors_slack.replies()[-1]
    pick(donors_slack, lease_id, "armco", REVIEWER)
    assert "armco cannot pay for" in donors_slack.replies()[-1]
    pick(donors_slack, lease_id, "nobody", REVIEWER)
    assert "There is no donor 'nobody'" in donors_slack.replies()[-1]
    assert donors_slack.lease(lease_id).donor == "cheap"
    refused = [a for a in donors_slack.audits("choose_donor") if a.outcome == "refused"]
    assert len(refused) == 3


def test_a_forged_menu_value_gets_a_sentence(donors_slack: Slack) -> None:
    lease_id = file_request(donors_slack)
    pick(donors_slack, lease_id, "", REVIEWER)
    assert "which is not a lease or extension number" in donors_slack.replies()[-1]
    assert donors_slack.lease(lease_id).donor == "cheap"
