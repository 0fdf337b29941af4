"""Slash-command text with Slack's escaping on: whatever a person types, labbot reads back what
they typed, and names the people they picked from Slack's @ menu.

`fakes.slack_sender.as_slack_sends` plays Slack's part (what the `text` field holds for a typed
line when the manifest says `should_escape: true`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands.grammar import Command, GrammarError, parse
from commands.slacktext import plain
from fakes.slack_sender import as_slack_sends

MEMBERS = {"alice": "U0ALICE", "bob": "W0BOB"}
TYPED = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80)
# Text as the escaping-off manifest delivered it: Slack's markup characters never in it.
UNMARKED = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<>&"), max_size=80
)
PIECES = [
    "request",
    "share",
    "extend",
    "deny",
    "approve",
    "keys",
    "add",
    "4",
    "#4",
    "24h",
    "c1.small.x86",
    "ams1",
    "project=coredns",
    "repo=https://github.com/a/b",
    "repo=github.com/a/b",
    "https://x.org/?a=b",
    "with=@alice,@carol",
    "@here",
    "#general",
    "key=",
    '"',
    "'",
    "a@b.org",
    "coredns.io",
    "partial=yes",
    "override=",
    "R&D",
    "x>y",
    "ssh-ed25519",
]
WORDY = st.lists(st.sampled_from(PIECES), max_size=12).map(" ".join)


@pytest.mark.parametrize(
    ("sent", "typed"),
    [
        ("<@U0ALICE|alice>", "@alice"),
        ("<@U0ALICE>", "@U0ALICE"),
        ("<#C0GEN|general>", "#general"),
        ("<!here> and <!channel>", "@here and @channel"),
        ("<!subteam^S0OPS|@ops>", "@ops"),
        ("<https://github.com/coredns/coredns>", "https://github.com/coredns/coredns"),
        ("<http://coredns.io/blog|coredns.io/blog>", "coredns.io/blog"),
        ("<mailto:carol@example.org|carol@example.org>", "carol@example.org"),
        ("<https://x.org/?a=1&amp;b=2>", "https://x.org/?a=1&b=2"),
        ("R&amp;D &lt;fast&gt; &amp;lt;", "R&D <fast> &lt;"),
    ],
)
def test_what_slack_escapes_reads_back_as_what_was_typed(sent: str, typed: str) -> None:
    assert plain(sent) == typed


@given(TYPED)
def test_any_typed_text_survives_slacks_escaping(typed: str) -> None:
    assert plain(as_slack_sends(typed, MEMBERS, {"general": "C0GEN"})) == typed


def _outcome(text: str) -> Command | str:
    try:
        return parse(text)
    except GrammarError as error:
        return str(error)


@given(st.one_of(UNMARKED, WORDY.filter(lambda t: "@alice" not in t)))
def test_what_worked_with_escaping_off_works_the_same_with_it_on(typed: str) -> None:
    """With nobody picked from the @ menu, turning escaping on changes nothing a person sees:
    the same command, or the same sentence saying what would be right."""
    assert _outcome(as_slack_sends(typed, MEMBERS)) == _outcome(typed)


def test_people_picked_from_the_menu_are_named_by_id_and_everything_else_as_typed() -> None:
    typed = (
        "request 2 c1.small.x86 ams1 24h project=coredns repo=https://github.com/coredns/coredns "
        '"R&D <perf> runs, notes at coredns.io/lab @here" with=@alice,@bob,U0CAROL '
        'key="ssh-ed25519 AAAAC3Nza+/x= carol@example.org"'
    )
    request = parse(as_slack_sends(typed, MEMBERS)).request
    assert request.co_owners == ("U0ALICE", "W0BOB", "U0CAROL")
    assert request.repo_url == "https://github.com/coredns/coredns"
    assert request.purpose == "R&D <perf> runs, notes at coredns.io/lab @here"
    assert request.ssh_key == "ssh-ed25519 AAAAC3Nza+/x= carol@example.org"

    assert parse(as_slack_sends("share 4 @alice", MEMBERS)).users == ("U0ALICE",)
    assert parse(as_slack_sends("unshare #4 @bob", MEMBERS)).users == ("W0BOB",)
    assert parse("share 4 &lt;@U0ALICE&gt;").users == ("U0ALICE",)  # a mention typed by hand
    keys = parse(as_slack_sends("keys add ssh-ed25519 AAAA a&b@example.org", MEMBERS))
    assert keys.subject == "ssh-ed25519 AAAA a&b@example.org"
    denied = parse(as_slack_sends('deny 4 see https://x.org/a?b=1&c=2 "first"', MEMBERS))
    assert denied.reason == "see https://x.org/a?b=1&c=2 first"


def test_a_name_slack_did_not_recognise_is_refused_saying_how_to_pick_one() -> None:
    with pytest.raises(GrammarError, match="pick each person from the list Slack offers"):
        parse(as_slack_sends("share 4 @nobody", MEMBERS))
    with pytest.raises(GrammarError, match="'@nobody'"):
        parse(as_slack_sends("request 1 p m 1h project=x repo=https://g.com/a/b x with=@nobody"))
