"""A lease's servers a page at a time, and the ready notice of a large lease, as the use cases
write them (the Slack side is tests/bot/test_large_leases.py)."""

from __future__ import annotations

from commands.facts import when
from commands.lab import Code
from commands.notices import Kind
from commands.pubkeys import read_key
from commands.serverpages import PAGE_SIZE, show_page
from commands.sweep import sweep
from tests.commands.helpers import active, approved, audits, lease
from tests.conftest import OTHER, OWNER, OWNER_KEY, with_policy


def test_a_replaced_server_is_listed_once_and_its_old_row_counted(lab, clock):
    lab.provider.fail_next_provisioning(1)
    lease_id = approved(lab, clock)
    sweep(lab, clock.advance(minutes=3))
    sweep(lab, clock.advance(seconds=30))  # the replacement is created
    sweep(lab, clock.advance(minutes=3))
    shown = show_page(lab, OWNER, lease_id, 1, clock.now)
    listed = [line.split()[0] for line in shown.outcome.message.splitlines() if line[:2] == "  "]
    assert sorted(listed) == [f"coredns-{lease_id}-{n}" for n in (1, 2, 3)]
    assert "Servers 1 to 3 of 3 (page 1 of 1). Not listed: 1 deleted." in shown.outcome.message
    assert shown.page is not None and shown.page.pages == 1


def test_a_page_past_the_end_is_refused_with_the_last_one_and_audited(lab, clock):
    lease_id = active(lab, clock)
    shown = show_page(lab, OWNER, lease_id, 2, clock.now)
    assert shown.outcome.code == Code.BAD_INPUT and shown.page is None
    assert shown.outcome.message == (
        f"Lease #{lease_id}'s servers fit on one page: `/lab show {lease_id}` shows them."
    )
    assert audits(lab.db, lease_id, "show")[-1].outcome == "refused"


def test_someone_who_may_not_see_addresses_gets_no_page(lab, clock):
    lease_id = active(lab, clock)
    shown = show_page(lab, OTHER, lease_id, 1, clock.now)
    assert shown.page is None
    assert "3 server(s); their names and addresses are shown to the owner" in (
        shown.outcome.message
    )
    assert f"coredns-{lease_id}-1" not in shown.outcome.message


def test_the_ready_notice_of_a_large_lease_keeps_what_must_be_seen(lab, clock):
    lab = with_policy(lab, max_servers=3 * PAGE_SIZE)
    lease_id = active(lab, clock, count=3 * PAGE_SIZE, plan="t1.small.x86")
    [ready] = lab.notifier.texts(Kind.READY)
    assert ready.startswith(f"Lease #{lease_id} is ready: log in as root")
    assert f"• and {3 * PAGE_SIZE - 10} more: every server is in the files" in ready
    assert read_key(OWNER_KEY).fingerprint in ready
    assert f"It ends {when(lease(lab.db, lease_id).ends_at)};" in ready
    [files] = [m for m in lab.notifier.messages if m.kind == Kind.SERVER_FILES]
    assert len(files.data["servers"]) == 3 * PAGE_SIZE and files.data["login"] == "root"
