"""Keys and co-owners through the real bolt App over HTTP: what each person sees."""

from __future__ import annotations

from datetime import timedelta

from bot.blocks import dms, modals
from commands.pubkeys import read_key
from commands.sweep import sweep
from fakes.forge import FakeForge
from fakes.keys import public_key
from fakes.slack import FakeSlack
from fakes.slack_sender import checkboxes, field
from storage.db import Database
from tests.bot.conftest import Slack, active_lease, body_of, serve, settings_for
from tests.bot.test_commands import request_values
from tests.commands.test_keys import PRIVATE
from tests.conftest import OWNER, REVIEWER, Clock

CAROL, STRANGER = "U0CAROL", "U0STRANGER"
CAROL_KEY = public_key("carol", "carol@box")


def dm_texts(slack: Slack, user: str) -> list[str]:
    return [m["text"] for m in slack.dms(user)]


def test_keys_are_saved_listed_and_a_private_key_goes_nowhere(slack: Slack) -> None:
    slack.command(f"keys add {CAROL_KEY}", CAROL)
    fingerprint = read_key(CAROL_KEY).fingerprint
    assert fingerprint in slack.replies()[-1]
    slack.command("keys", CAROL)
    assert f"1. {fingerprint} (ed25519, carol@box)" in slack.replies()[-1]

    slack.command(f"keys add {PRIVATE}", CAROL)
    assert "rotate it" in slack.replies()[-1]
    for call in slack.fake.calls():
        assert "secretsecret" not in str(call.params) and "b3BlbnNzaC1" not in str(call.params)
    inline = f'request 1 c1.small.x86 ams1 24h project=x repo=https://g.com/a/b key="{PRIVATE}"'
    answer = body_of(slack.command(inline, CAROL))
    assert "rotate it" in answer["text"] and "b3BlbnNzaC1" not in answer["text"]


def test_share_by_command_and_the_co_owner_extends_and_releases_from_the_dm(slack: Slack) -> None:
    slack.command(f"keys add {CAROL_KEY}", CAROL)
    lease_id = active_lease(slack)
    slack.command(f"share {lease_id} @carol", OWNER)
    assert f"Lease #{lease_id} is now shared with <@{CAROL}>" in slack.replies()[-1]
    assert any("made you a co-owner" in t for t in dm_texts(slack, CAROL))

    slack.click(dms.RELEASE, str(lease_id), STRANGER)
    assert "only its owner, a co-owner or an admin can release it" in slack.replies()[-1]
    slack.click(dms.EXTEND, f"{lease_id}-24h", CAROL)
    assert f"Lease #{lease_id} extended by 1d" in slack.replies()[-1]
    assert any("extended by 1d" in t for t in dm_texts(slack, OWNER))
    slack.click(dms.RELEASE, str(lease_id), CAROL)
    assert f"Lease #{lease_id} released" in slack.replies()[-1]
    assert slack.lease(lease_id).state in ("releasing", "reclaimed")


def test_the_dm_button_opens_a_form_that_adds_co_owners(slack: Slack) -> None:
    lease_id = active_lease(slack)
    [ready] = [m for m in slack.dms(OWNER) if "is ready" in m["text"]]
    buttons = [
        e["action_id"] for b in ready["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]
    assert f"{dms.SHARE}:{lease_id}" in buttons

    slack.click(dms.SHARE, str(lease_id), OWNER)
    view = slack.fake.calls("views.open")[-1].params["view"]
    assert view["callback_id"] == modals.SHARE and view["private_metadata"] == str(lease_id)
    picked = {
        "co_owners": {modals.VALUE: {"type": "multi_users_select", "selected_users": [CAROL]}}
    }
    slack.sender.view_submission(modals.SHARE, picked, OWNER, private_metadata=str(lease_id))
    slack.settle()
    assert any("made you a co-owner" in t for t in dm_texts(slack, CAROL))
    assert slack.audits("share")[-1].actor == OWNER

    slack.click(dms.SHARE, str(lease_id), STRANGER)
    slack.sender.view_submission(modals.SHARE, picked, STRANGER, private_metadata=str(lease_id))
    slack.settle()
    assert [e.outcome for e in slack.audits("share")][-1] == "refused"


def test_unshare_says_the_keys_stay_on_running_servers(slack: Slack) -> None:
    lease_id = active_lease(slack)
    slack.command(f"share {lease_id} @carol", OWNER)
    slack.command(f"unshare {lease_id} @carol", OWNER)
    assert "their keys stay on the servers already running" in slack.replies()[-1]
    assert slack.audits("unshare")[-1].actor == OWNER


def test_the_reviewers_channel_hears_of_a_silent_lease_once_and_a_reviewer_extends_it(
    slack: Slack,
) -> None:
    lease_id = active_lease(slack)
    ends_at = slack.lease(lease_id).ends_at
    for at in (timedelta(hours=-24), timedelta(hours=-1), timedelta(minutes=-30)):
        sweep(slack.ctx.lab, ends_at + at)
    sweep(slack.ctx.lab, ends_at - timedelta(minutes=10))
    notices = [m for m in slack.fake.messages() if "nobody has answered" in m["text"]]
    assert [m["channel"] for m in notices] == ["C0REVIEW"]
    slack.click(dms.EXTEND, f"{lease_id}-24h", REVIEWER)
    assert slack.lease(lease_id).ends_at == ends_at + timedelta(hours=24)


def test_the_request_form_offers_the_saved_keys_and_takes_co_owners(slack: Slack) -> None:
    slack.command("request", OWNER)
    first = {b["block_id"]: b for b in slack.fake.calls("views.open")[-1].params["view"]["blocks"]}
    assert (
        first["ssh_key"]["optional"] is False
        and "no saved keys" in first["ssh_key"]["hint"]["text"]
    )

    key = public_key("owner-saved", "owner@laptop")
    slack.command(f"keys add {key}", OWNER)
    slack.command("request", OWNER)
    view = slack.fake.calls("views.open")[-1].params["view"]
    blocks = {b["block_id"]: b for b in view["blocks"]}
    assert blocks["ssh_key"]["optional"] is True
    [offered] = blocks[modals.SAVED_KEYS]["element"]["options"]
    assert offered["value"] == read_key(key).fingerprint
    assert blocks["co_owners"]["element"]["type"] == "multi_users_select"

    private = request_values(ssh_key={"value": field(PRIVATE)})
    refused = body_of(slack.sender.view_submission(view["callback_id"], private, OWNER))
    assert refused["response_action"] == "errors"
    assert (
        "rotate it" in refused["errors"]["ssh_key"] and "b3Bl" not in refused["errors"]["ssh_key"]
    )

    picked = {"value": {"type": "multi_users_select", "selected_users": [CAROL]}}
    saved = {"value": checkboxes([read_key(key).fingerprint])}  # as Slack sends it: all checked
    values = request_values(ssh_key={"value": field(None)}, co_owners=picked, saved_keys=saved)
    slack.sender.view_submission(view["callback_id"], values, OWNER)
    slack.settle()
    assert any("made you a co-owner" in t for t in dm_texts(slack, CAROL))
    assert slack.audits("request")[-1].outcome == "ok"


def test_keys_are_imported_from_the_forge_through_slack(
    fake: FakeSlack, db: Database, clock: Clock
) -> None:
    with FakeForge(clock=clock) as forge:
        forge.add_keys("github", "carol-gh", [CAROL_KEY])
        settings = settings_for(fake, github_api_url=forge.github_url)
        for slack in serve(fake, db, clock, settings):
            slack.command("keys import github carol-gh", CAROL)
            assert "Imported 1 of the 1 keys github publishes for carol-gh" in slack.replies()[-1]
            slack.command("keys import github nobody", CAROL)
            assert "github has no account 'nobody'" in slack.replies()[-1]
            slack.command("keys", CAROL)
            assert "from github:carol-gh" in slack.replies()[-1]
