"""A 500-server lease in its people's hands: the ready DM within Slack's limits, every server in
the files uploaded to the owner and the co-owners, `/lab show` paging through them, and the
files written again when the servers change."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import col, select

from bot.blocks import cards, pages
from commands.facts import when
from commands.keys import MAX_KEYS, add_key
from commands.notices import Kind, deliver
from commands.policy import Policy
from commands.pubkeys import read_key
from commands.serverpages import PAGE_SIZE
from commands.sweep import sweep
from fakes.keys import public_key
from fakes.slack import FakeSlack, SharedFile
from storage.db import Database
from storage.models import Notice, Server
from tests.bot.conftest import Slack, body_of, lease_id_in, serve, settings_for
from tests.conftest import ADMIN, OTHER, OWNER, OWNER_KEY, REVIEWER, Clock

CAROL = "U0CAROL"
COUNT = 500
FINGERPRINT = read_key(OWNER_KEY).fingerprint


@pytest.fixture
def slack(fake: FakeSlack, db: Database, clock: Clock) -> Iterator[Slack]:
    yield from serve(fake, db, clock, settings_for(fake, policy=Policy(max_servers=COUNT)))


def big_lease(slack: Slack, count: int = COUNT, key: str = f' key="{OWNER_KEY}"') -> int:
    slack.command(
        f"request {count} t1.small.x86 ams1 48h project=coredns "
        f'repo=https://github.com/coredns/coredns "scale tests"{key} with=@carol',
        OWNER,
    )
    lease_id = lease_id_in(slack.replies()[-1])
    slack.card_click(cards.APPROVE, lease_id, REVIEWER)
    sweep(slack.ctx.lab, slack.clock.advance(minutes=3))
    assert slack.lease(lease_id).state == "active"
    return lease_id


def addresses(slack: Slack, lease_id: int) -> dict[str, str]:
    with slack.db.read() as session:
        rows = session.exec(
            select(Server).where(Server.lease_id == lease_id, Server.state == "active")
        ).all()
    return {s.hostname: s.ips.split()[0] for s in rows}


def texts(node: Any) -> list[str]:
    """Every text in a message's blocks, as Slack counts them against msg_blocks_too_long."""
    if isinstance(node, dict):
        own = node.get("text")
        return [own] if isinstance(own, str) else [t for v in node.values() for t in texts(v)]
    if isinstance(node, list):
        return [t for item in node for t in texts(item)]
    return []


def received(slack: Slack, user: str) -> dict[str, SharedFile]:
    return {f.filename.split("-", 2)[2]: f for f in slack.fake.files(slack.fake.dm_channel(user))}


def ssh_hosts(config: str) -> dict[str, dict[str, str]]:
    hosts: dict[str, dict[str, str]] = {}
    current = None
    for line in config.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "Host":
            current = hosts.setdefault(words[1], {})
        else:
            current[words[0]] = words[1]
    return hosts


def inventory_hosts(inventory: str, group: str) -> tuple[dict[str, str], dict[str, str]]:
    """The group's hosts with their ansible_host, and the group's vars."""
    hosts: dict[str, str] = {}
    variables: dict[str, str] = {}
    section = None
    for line in inventory.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == group:
            name, _, setting = line.partition(" ")
            hosts[name] = setting.removeprefix("ansible_host=")
        elif section == f"{group}:vars":
            key, _, value = line.partition("=")
            variables[key] = value
    return hosts, variables


def test_the_ready_dm_of_500_servers_keeps_the_end_the_login_and_the_keys(slack: Slack) -> None:
    lease_id = big_lease(slack)
    [ready] = [m for m in slack.dms(OWNER) if "is ready" in m["text"]]
    blocks = ready["blocks"]
    shown = "\n".join(texts(blocks))
    assert len(blocks) <= 50
    assert all(len(t) <= 3000 for t in texts(blocks))
    assert sum(map(len, texts(blocks))) <= 12_000
    assert "log in as root" in shown
    assert f"It ends {when(slack.lease(lease_id).ends_at)};" in shown
    assert FINGERPRINT in shown
    listed = shown.count(f"`  (coredns-{lease_id}-")
    assert 50 < listed < COUNT
    assert f"{listed} of {COUNT} servers listed here. All {COUNT} are in the files" in shown
    assert f"`/lab show {lease_id}` pages through them" in shown
    assert FINGERPRINT in ready["text"] and "It ends" in ready["text"]  # the fallback too
    assert f"and {COUNT - 10} more" in ready["text"]


def test_every_key_stays_in_the_ready_dm_when_the_people_saved_many(slack: Slack) -> None:
    saved = [
        public_key(f"{user}-{n}", f"{user.lower()}-key-{n}@a-workstation-with-a-long-name.example")
        for user in (OWNER, CAROL)
        for n in range(MAX_KEYS)
    ]
    for user, key in zip([OWNER] * MAX_KEYS + [CAROL] * MAX_KEYS, saved, strict=True):
        assert add_key(slack.ctx.lab, user, key, slack.clock.now).ok
    big_lease(slack, key="")  # the servers carry the owner's and the co-owner's saved keys
    [ready] = [m for m in slack.dms(OWNER) if "is ready" in m["text"]]
    shown = "\n".join(texts(ready["blocks"]))
    assert all(read_key(key).fingerprint in shown for key in saved)
    assert len(ready["blocks"]) <= 50 and sum(map(len, texts(ready["blocks"]))) <= 12_000
    assert f"of {COUNT} servers listed here" in shown and "It ends" in shown


def test_the_owner_and_the_co_owner_receive_every_server_in_three_files(slack: Slack) -> None:
    lease_id = big_lease(slack)
    expected = addresses(slack, lease_id)
    assert len(expected) == len(set(expected.values())) == COUNT  # each its own address
    for user in (OWNER, CAROL):
        files = received(slack, user)
        assert sorted(files) == ["inventory.ini", "servers.csv", "ssh_config"]
        assert f"Every server of lease #{lease_id} ({COUNT})" in files["servers.csv"].comment

        rows = list(csv.DictReader(io.StringIO(files["servers.csv"].content)))
        assert {r["hostname"]: r["address"] for r in rows} == expected
        assert len(rows) == COUNT
        assert {(r["metro"], r["plan"], r["state"], r["login"]) for r in rows} == {
            ("ams1", "t1.small.x86", "active", "root")
        }

        hosts = ssh_hosts(files["ssh_config"].content)
        assert {h: v["HostName"] for h, v in hosts.items()} == expected
        assert {v["User"] for v in hosts.values()} == {"root"}

        inventory, variables = inventory_hosts(files["inventory.ini"].content, f"lease_{lease_id}")
        assert inventory == expected
        assert variables == {"ansible_user": "root"}
    assert slack.fake.files(slack.fake.dm_channel(OTHER)) == []


def test_show_pages_through_every_server_exactly_once(slack: Slack) -> None:
    lease_id = big_lease(slack)
    slack.command(f"show {lease_id}", OWNER)
    answer = slack.fake.calls("response_url")[-1].params
    assert f"Servers 1 to {PAGE_SIZE} of {COUNT} (page 1 of 10).\n" in answer["text"]
    seen: list[str] = []
    for page in range(1, 11):
        lines = [ln.split()[0] for ln in answer["text"].splitlines() if ln.startswith("  ")]
        seen += lines
        assert f"(page {page} of 10)" in answer["text"]
        assert len(answer["blocks"]) <= 50
        turns = [e for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"]]
        labels = [t["text"]["text"] for t in turns]
        assert labels == [
            *(["Previous"] if page > 1 else []),
            *(["Next servers"] if page < 10 else []),
        ]
        if page == 10:
            break
        slack.click(pages.PAGE, turns[-1]["value"], OWNER)
        answer = slack.fake.calls("response_url")[-1].params
        assert answer["replace_original"] is True
    assert sorted(seen) == sorted(addresses(slack, lease_id))
    assert len(seen) == COUNT


def test_bad_pages_get_a_sentence_or_the_page_that_is_there(slack: Slack) -> None:
    lease_id = big_lease(slack, count=120)
    slack.command(f"show {lease_id} servers 9", OWNER)
    assert slack.replies()[-1] == (
        f"Lease #{lease_id}'s servers fill 3 pages; `/lab show {lease_id} servers 3` is the last."
    )
    said = body_of(slack.command(f"show {lease_id} servers two", OWNER))["text"]
    assert f"'two' is not a page number; `show {lease_id} servers 2`" in said
    said = body_of(slack.command(f"show {lease_id} servers 0", OWNER))["text"]
    assert "'0' is not a page number" in said

    # A Next button from an answer given when the lease had 200 servers: the page there now.
    slack.click(pages.PAGE, f"{lease_id}-4-200", OWNER)
    said = slack.replies()[-1]
    assert "has changed since that page was shown: it has 120 server(s) now, 200 then" in said
    assert "servers 101 to 120 of 120 (page 3 of 3)" in said
    slack.click(pages.PAGE, "garbage", OWNER)
    assert "which is not a lease or extension number" in slack.replies()[-1]

    for who in (CAROL, REVIEWER, ADMIN):  # the co-owner, reviewers and admins see them
        slack.command(f"show {lease_id} servers 2", who)
        assert "servers 51 to 100 of 120 (page 2 of 3)." in slack.replies()[-1]
        assert f"  coredns-{lease_id}-51 [active] 147.75." in slack.replies()[-1]

    # Someone who may not see addresses sees the lease, not its servers.
    slack.command(f"show {lease_id} servers 2", OTHER)
    assert "120 server(s); their names and addresses are shown to the owner" in slack.replies()[-1]
    assert f"coredns-{lease_id}-1 " not in slack.replies()[-1]


def test_a_lease_whose_servers_are_all_gone_says_so(slack: Slack) -> None:
    lease_id = big_lease(slack, count=60)
    slack.command(f"release {lease_id}", OWNER)
    sweep(slack.ctx.lab, slack.clock.advance(minutes=1))
    sweep(slack.ctx.lab, slack.clock.advance(minutes=1))
    assert slack.lease(lease_id).state == "reclaimed"
    slack.command(f"show {lease_id} servers 2", OWNER)
    assert f"Lease #{lease_id} has no servers now (60 deleted)." in slack.replies()[-1]
    slack.click(pages.PAGE, f"{lease_id}-2-60", OWNER)
    assert "it has 0 server(s) now, 60 then" in slack.replies()[-1]


def test_the_files_are_written_again_when_a_server_vanishes(slack: Slack) -> None:
    lease_id = big_lease(slack, count=20)
    lab = slack.ctx.lab
    gone = f"coredns-{lease_id}-7"
    with slack.db.read() as session:
        device = session.exec(select(Server.provider_id).where(Server.hostname == gone)).one()
    lab.provider.delete(device)
    sweep(lab, slack.clock.advance(minutes=11))  # the reconcile pass notices
    sweep(lab, slack.clock.advance(minutes=1))
    for user in (OWNER, CAROL):
        csvs = [
            f for f in slack.fake.files(slack.fake.dm_channel(user)) if f.filename.endswith(".csv")
        ]
        assert len(csvs) == 2
        assert f"They replace the files sent earlier: {gone} vanished" in csvs[1].comment
        hostnames = [r["hostname"] for r in csv.DictReader(io.StringIO(csvs[1].content))]
        assert len(hostnames) == 19 and gone not in hostnames


def test_an_upload_is_shared_once_though_its_answer_was_lost(slack: Slack) -> None:
    slack.fake.lost_completions = 1
    big_lease(slack, count=12)
    channel = slack.fake.dm_channel(OWNER)
    with slack.db.read() as session:
        pending = session.exec(
            select(Notice).where(
                Notice.kind == Kind.SERVER_FILES, col(Notice.retry_at).is_not(None)
            )
        ).all()
    assert len(pending) == 1 and pending[0].ref.startswith("files:")
    deliver(slack.ctx.lab.db, slack.ctx.lab.notifier, slack.clock.advance(minutes=5), owner="t")
    shared = slack.fake.files()
    assert len(shared) == 6  # three to the owner, three to the co-owner: none twice
    assert len(slack.fake.calls("files.getUploadURLExternal")) == 6
    assert len([f for f in shared if f.channel == channel]) == 3
    assert len(slack.fake.calls("files.completeUploadExternal")) == 2  # the retry asked first


def test_a_failed_share_is_finished_without_uploading_again(slack: Slack) -> None:
    slack.fake.fail_next("files.completeUploadExternal", status=500)
    big_lease(slack, count=12)
    deliver(slack.ctx.lab.db, slack.ctx.lab.notifier, slack.clock.advance(minutes=5), owner="t")
    assert len(slack.fake.files()) == 6
    assert len(slack.fake.calls("files.getUploadURLExternal")) == 6
    assert len(slack.fake.calls("files.completeUploadExternal")) == 3
