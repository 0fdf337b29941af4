"""The slash command with the manifest's escaping on, through the real bolt App over HTTP: each
command is typed as a person types it and sent as Slack sends it (`<@U0CAROL|carol>` for a
member picked as @carol, `<https://...>` for a link, `&amp;` for `&`)."""

from __future__ import annotations

import json

from sqlmodel import select

from commands.pubkeys import read_key
from fakes.keys import public_key
from storage.models import CoOwner
from tests.bot.conftest import MEMBERS, Slack, body_of, lease_id_in
from tests.conftest import OWNER

CAROL, VICTIM = MEMBERS["carol"], MEMBERS["victim"]
PURPOSE = "R&D <perf> runs with @victim, notes at coredns.io/lab, tell @here"
CAROL_KEY = public_key("carol", "carol@example.org")  # Slack links the address in the comment


def test_a_request_typed_with_names_links_and_markup_files_what_was_typed(slack: Slack) -> None:
    slack.command(
        "request 2 c1.small.x86 ams1 24h project=coredns "
        f'repo=https://github.com/coredns/coredns "{PURPOSE}" with=@carol key="{CAROL_KEY}"',
        OWNER,
    )
    [text] = [c.params["text"] for c in slack.fake.calls() if c.method == "response_url"]
    lease = slack.lease(lease_id_in(text))
    assert lease.repo_url == "https://github.com/coredns/coredns"
    assert lease.purpose == PURPOSE
    assert lease.ssh_key == CAROL_KEY
    with slack.db.read() as session:
        assert session.exec(select(CoOwner.user).where(CoOwner.lease_id == lease.id)).all() == [
            CAROL
        ]

    sent = json.dumps([c.params for c in slack.fake.calls() if c.method != "auth.test"])
    assert "<!here>" not in sent and f"<@{VICTIM}" not in sent  # user text stays inert
    assert "R&amp;D &lt;perf&gt; runs with @victim" in sent
    assert any("made you a co-owner" in m["text"] for m in slack.dms(CAROL))


def test_share_and_unshare_take_the_person_picked_as_they_typed(slack: Slack) -> None:
    slack.command(
        "request 1 c1.small.x86 ams1 24h project=coredns repo=https://github.com/coredns/coredns "
        f'"load tests" key="{CAROL_KEY}"',
        OWNER,
    )
    lease_id = lease_id_in(slack.replies()[-1])
    slack.command(f"share {lease_id} @carol", OWNER)
    assert f"now shared with <@{CAROL}>" in slack.replies()[-1]
    slack.command(f"unshare #{lease_id} @carol", OWNER)
    assert f"<@{CAROL}> is no longer a co-owner" in slack.replies()[-1]

    refused = body_of(slack.command(f"share {lease_id} @nobody", OWNER))
    assert "Slack did not recognise '@nobody' as a member" in refused["text"]
    assert "pick each person from the list Slack offers as you type @" in refused["text"]


def test_a_key_whose_comment_slack_links_is_saved_as_typed(slack: Slack) -> None:
    slack.command(f"keys add {CAROL_KEY}", CAROL)
    slack.command("keys", CAROL)
    assert (
        f"1. {read_key(CAROL_KEY).fingerprint} (ed25519, carol@example.org)"
        in (slack.replies()[-1])
    )
