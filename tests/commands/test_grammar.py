"""The slash-text grammar: what people type, what they get, and that nothing they type can make
it raise anything but a GrammarError (whose message is shown to them)."""

from __future__ import annotations

import shlex
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands.durations import format_duration
from commands.grammar import USAGE, GrammarError, help_text, parse

WORDS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
SLUG = st.from_regex(r"[a-z][a-z0-9.-]{0,15}", fullmatch=True)


def test_the_inline_request_of_the_issue() -> None:
    command = parse(
        "request 3 c1.small.x86 ams1 48h project=coredns "
        'repo=https://github.com/coredns/coredns "why we need it" os=centos_7 '
        'key="ssh-ed25519 AAAA me@host" partial=yes'
    )
    request = command.request
    assert (request.count, request.plan, request.metro) == (3, "c1.small.x86", "ams1")
    assert request.duration == timedelta(hours=48)
    assert (request.project, request.purpose) == ("coredns", "why we need it")
    assert request.repo_url == "https://github.com/coredns/coredns"
    assert (request.os, request.ssh_key, request.allow_partial) == (
        "centos_7",
        "ssh-ed25519 AAAA me@host",
        True,
    )


def test_typographic_quotes_from_slack_clients_are_read_as_quotes() -> None:
    command = parse("request 1 t1.small.x86 ewr1 90m project=x \u201cload tests\u201d")
    assert command.request.purpose == "load tests"
    assert command.request.duration == timedelta(minutes=90)


@pytest.mark.parametrize(
    ("text", "verb", "lease_id"),
    [
        ("list", "list", None),
        ("show #12", "show", 12),
        ("release 3", "release", 3),
        ("cancel 4", "cancel", 4),
        ("provision 5", "provision", 5),
        ("", "help", None),
        ("CREDIT", "credit", None),
        ("plans", "plans", None),
    ],
)
def test_simple_commands(text: str, verb: str, lease_id: int | None) -> None:
    command = parse(text)
    assert (command.verb, command.lease_id) == (verb, lease_id)


def test_request_alone_opens_the_form() -> None:
    assert parse("request").opens_form
    assert not parse("request 1 a b 1h").opens_form


def test_deny_keeps_the_whole_reason_and_approve_the_override() -> None:
    assert parse("deny 7 not what the lab is for").reason == "not what the lab is for"
    assert parse('approve 7 override="board said yes"').override == "board said yes"


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("launch 1", "try one of"),
        ("show", "one lease number"),
        ("show 0", "not a lease number"),
        ("extend 3", "a lease number and a duration"),
        ("extend 3 soon", "90m"),
        ("deny 3", "a reason"),
        ("list everything", "did not recognise 'everything' as a member"),
        ("list 2 3", "takes at most a person and one page number"),
        ("list 2x", "'2x' is not a page number (like 2)"),
        ("list U0CAROL x", "'x' is not a page number (like 2)"),
        ("queue next", "'next' is not a page number (like 2)"),
        ("queue 0", "numbered from 1"),
        ("queue 9999999", "not a page number"),
        ("queue 2 3", "takes at most one page number"),
        ("approve 3 please", 'override="why"'),
        ("request 3 c1 ams1", "COUNT PLAN METRO DURATION"),
        ("request three c1 ams1 1h", "not a number of servers"),
        ("request 1 c1 ams1 1h partial=maybe", "yes or no"),
        ("request 1 c1 ams1 1h colour=red", "`colour=` means nothing"),
        ('show "12', "close every quote"),
    ],
)
def test_mistakes_say_what_would_be_right(text: str, hint: str) -> None:
    with pytest.raises(GrammarError) as error:
        parse(text)
    assert hint in str(error.value)


def test_help_lists_every_subcommand_under_the_configured_name() -> None:
    text = help_text("/metal")
    assert all(f"/metal {verb}" in text for verb in USAGE)


@given(WORDS)
def test_any_text_parses_or_says_why(text: str) -> None:
    try:
        parse(text)
    except GrammarError as error:
        assert str(error).strip()


@given(
    count=st.integers(1, 999),
    plan=SLUG,
    metro=SLUG,
    minutes=st.integers(1, 60 * 24 * 30),
    project=SLUG,
    purpose=st.text(alphabet="abcdefghij klmn'-,.", min_size=1, max_size=40).filter(
        lambda p: p.strip() and "=" not in p
    ),
    partial=st.booleans(),
)
def test_an_inline_request_round_trips(
    count: int, plan: str, metro: str, minutes: int, project: str, purpose: str, partial: bool
) -> None:
    duration = timedelta(minutes=minutes)
    text = (
        f"request {count} {plan} {metro} {format_duration(duration)} project={project} "
        f"repo=https://github.com/x/{project} {shlex.quote(purpose)} "
        f"partial={'yes' if partial else 'no'}"
    )
    request = parse(text).request
    assert (request.count, request.plan, request.metro) == (count, plan, metro)
    assert request.duration == duration
    assert request.project == project and request.allow_partial == partial
    assert request.purpose == " ".join(shlex.split(shlex.quote(purpose))).strip()


@given(lease_id=st.integers(1, 10**12 - 1), minutes=st.integers(1, 10**5))
def test_extend_round_trips(lease_id: int, minutes: int) -> None:
    command = parse(f"extend {lease_id} {format_duration(timedelta(minutes=minutes))}")
    assert (command.lease_id, command.duration) == (lease_id, timedelta(minutes=minutes))


@pytest.mark.parametrize(
    ("text", "action", "subject", "forge"),
    [
        ("keys", "list", "", ""),
        ("keys list", "list", "", ""),
        ('keys add ssh-ed25519 AAAA "quoted" me', "add", 'ssh-ed25519 AAAA "quoted" me', ""),
        ("keys remove 2", "remove", "2", ""),
        ("keys import GitHub ada-l", "import", "ada-l", "github"),
        ("keys import gitlab group.user", "import", "group.user", "gitlab"),
    ],
)
def test_keys_subcommands(text: str, action: str, subject: str, forge: str) -> None:
    command = parse(text)
    assert (command.verb, command.action, command.subject, command.forge) == (
        "keys",
        action,
        subject,
        forge,
    )


@pytest.mark.parametrize(
    "text", ["keys import bitbucket ada", "keys import github", "keys remove 1 2", "keys frob"]
)
def test_bad_keys_subcommands_say_the_usage(text: str) -> None:
    with pytest.raises(GrammarError, match="Usage: `keys"):
        parse(text)


def test_a_private_key_pasted_into_any_command_is_refused_with_the_rotate_sentence() -> None:
    with pytest.raises(GrammarError, match="rotate it") as raised:
        parse('request 1 c1.small.x86 ams1 1h key="-----BEGIN RSA PRIVATE KEY----- MIIE"')
    assert "MIIE" not in str(raised.value)


def test_share_takes_mentions_and_member_ids_and_request_takes_co_owners() -> None:
    shared = parse("share #4 <@U0CAROL|carol>, W0DAVE")
    assert (shared.lease_id, shared.users) == (4, ("U0CAROL", "W0DAVE"))
    assert parse("unshare 4 <@U0CAROL>").users == ("U0CAROL",)
    filed = parse("request 1 c1.small.x86 ams1 24h project=p repo=https://g.com/a/b x with=U0A,U0B")
    assert filed.request.co_owners == ("U0A", "U0B")
    for bad in ("share 4 @carol", "unshare 4 U0A U0B", "share 4"):
        with pytest.raises(GrammarError):
            parse(bad)


def test_an_inline_request_says_who_is_asking():
    command = parse(
        "request 3 c1.small.x86 ams1 48h project=keda repo=https://github.com/kedacore/keda "
        'class=Member org="Acme Corp" "autoscaling tests"'
    )
    assert (command.request.applicant, command.request.org) == ("member", "Acme Corp")
    assert parse("queue").verb == "queue"
    assert "class=member org=NAME" in help_text()


def test_an_inline_request_may_name_its_donor():
    command = parse(
        "request 3 c1.small.x86 ams1 48h project=keda repo=https://github.com/kedacore/keda "
        'donor=cncf "autoscaling tests"'
    )
    assert command.request.donor == "cncf"
    assert "donor=NAME" in help_text()


def test_list_and_queue_take_a_page_and_list_a_person():
    assert (parse("queue").page, parse("queue 3").page, parse("list #2").page) == (1, 3, 2)
    carol = parse("list <@U0CAROL|carol> 4")
    assert (carol.users, carol.page) == (("U0CAROL",), 4)
    assert parse("list U0CAROL").users == ("U0CAROL",)
