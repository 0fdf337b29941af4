"""Co-owners and the lease nobody answers: who may do what, whose keys go on which servers, who
is told, and the reviewers' notice of a silent lease (sent once)."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from commands.coowners import share, unshare
from commands.extend import extend
from commands.keys import add_key
from commands.lab import Code
from commands.notices import Kind
from commands.pubkeys import read_key
from commands.reclaim import release
from commands.review import approve
from commands.sweep import sweep
from commands.views import lease_list, show
from fakes.keys import public_key
from storage.models import AuditEvent, CoOwner
from tests.commands.helpers import PROVISION, active, created_with, file, lease
from tests.conftest import ADMIN, OTHER, OWNER, REVIEWER

CAROL, STRANGER = "U0CAROL", "U0STRANGER"
CAROL_KEY = public_key("carol", "carol@box")


def audiences(lab, kind: Kind) -> list[str]:
    return [m.audience for m in lab.notifier.messages if m.kind == kind]


def test_co_owners_named_in_the_request_get_the_dms_and_their_keys_on_the_servers(lab, clock):
    add_key(lab, CAROL, CAROL_KEY, clock.now)
    lease_id = active(lab, clock, co_owners=(CAROL, OWNER))
    assert audiences(lab, Kind.SHARED) == [f"user:{CAROL}"]
    assert audiences(lab, Kind.READY) == [f"user:{OWNER}", f"user:{CAROL}"]
    fingerprint = read_key(CAROL_KEY).fingerprint
    assert all(fingerprint in keys.split() for keys in created_with(lab.db, lease_id))
    assert "(ed25519, carol@box)" in lab.notifier.texts(Kind.READY)[1]
    sweep(lab, lease(lab.db, lease_id).ends_at - timedelta(hours=24))
    assert audiences(lab, Kind.REMINDER) == [f"user:{OWNER}", f"user:{CAROL}"]


def test_a_co_owner_may_extend_and_release_and_a_stranger_may_not(lab, clock):
    lease_id = active(lab, clock)
    assert share(lab, OWNER, lease_id, [CAROL], clock.now).ok
    refused = extend(lab, STRANGER, lease_id, timedelta(hours=12), clock.now)
    assert refused.code == Code.NOT_ALLOWED
    assert not release(lab, STRANGER, lease_id, clock.now).ok
    assert extend(lab, CAROL, lease_id, timedelta(hours=12), clock.now).ok
    assert audiences(lab, Kind.EXTENDED) == [f"user:{OWNER}", f"user:{CAROL}"]
    assert release(lab, CAROL, lease_id, clock.now).ok
    assert lease(lab.db, lease_id).state in ("releasing", "reclaimed")


def test_only_the_owner_or_an_admin_shares_and_a_co_owner_cannot_share_on(lab, clock):
    lease_id = file(lab, clock)
    assert not share(lab, STRANGER, lease_id, [STRANGER], clock.now).ok
    assert share(lab, ADMIN, lease_id, [CAROL], clock.now).ok
    assert not share(lab, CAROL, lease_id, [STRANGER], clock.now).ok
    again = share(lab, OWNER, lease_id, [CAROL], clock.now)
    assert again.ok and "already shared" in again.message


def test_keys_of_a_co_owner_added_later_go_on_servers_created_later(lab, clock):
    """The first device fails provisioning; the co-owner is added meanwhile; the replacement
    is created with their key, and the ready DM names it."""
    add_key(lab, CAROL, CAROL_KEY, clock.now)
    carol = read_key(CAROL_KEY).fingerprint
    lab.provider.fail_next_provisioning(1)
    lease_id = file(lab, clock, count=1)
    approve(lab, REVIEWER, lease_id, clock.now)  # the first create goes out now
    assert share(lab, OWNER, lease_id, [CAROL], clock.now).ok
    assert "the servers already running do not carry them" in lab.notifier.texts(Kind.SHARED)[-1]
    for _ in range(4):
        sweep(lab, clock.advance(seconds=PROVISION.total_seconds() + 30))
    first, *rest = created_with(lab.db, lease_id)
    assert carol not in first.split()
    assert rest and all(carol in keys.split() for keys in rest)
    assert lease(lab.db, lease_id).state == "active"
    assert "carol@box" in lab.notifier.texts(Kind.READY)[0]


def test_removing_a_co_owner_is_audited_and_says_their_keys_stay_on_running_servers(lab, clock):
    add_key(lab, CAROL, CAROL_KEY, clock.now)
    lease_id = active(lab, clock, co_owners=(CAROL,))
    outcome = unshare(lab, OWNER, lease_id, CAROL, clock.now)
    assert outcome.ok and "their keys stay on the servers already running" in outcome.message
    with lab.db.read() as session:
        assert session.exec(select(CoOwner)).all() == []
        [event] = session.exec(select(AuditEvent).where(AuditEvent.action == "unshare")).all()
    assert event.actor == OWNER and CAROL in event.details
    assert not extend(lab, CAROL, lease_id, timedelta(hours=1), clock.now).ok
    assert not unshare(lab, OWNER, lease_id, CAROL, clock.now).ok


def test_a_co_owner_may_leave_on_their_own(lab, clock):
    lease_id = active(lab, clock, co_owners=(CAROL,))
    assert unshare(lab, CAROL, lease_id, CAROL, clock.now).ok
    assert not unshare(lab, STRANGER, lease_id, OWNER, clock.now).ok


# --- nobody answering --------------------------------------------------------------------------


def test_the_reviewers_are_told_once_of_a_lease_nobody_answered(lab, clock):
    lease_id = active(lab, clock, co_owners=(CAROL,))
    ends_at = lease(lab.db, lease_id).ends_at
    for at in (ends_at - timedelta(hours=24), ends_at - timedelta(hours=1)):
        sweep(lab, at)
    assert lab.notifier.texts(Kind.SILENT_LEASE) == []
    sweep(lab, ends_at - timedelta(minutes=30))
    [notice] = [m for m in lab.notifier.messages if m.kind == Kind.SILENT_LEASE]
    assert notice.audience == "review"
    assert f"Lease #{lease_id}" in notice.text and "nobody has answered" in notice.text
    assert f"<@{OWNER}>, <@{CAROL}>" in notice.text and f"/lab extend {lease_id}" in notice.text
    for minutes in (-29, -1, 0, 30):
        sweep(lab, ends_at + timedelta(minutes=minutes))
    assert len(lab.notifier.texts(Kind.SILENT_LEASE)) == 1
    sweep(lab, ends_at + lab.policy.grace)
    assert lease(lab.db, lease_id).state in ("expiring", "reclaimed")  # still ends on time


def test_a_lease_someone_answered_is_not_reported(lab, clock):
    lease_id = active(lab, clock, co_owners=(CAROL,))
    ends_at = lease(lab.db, lease_id).ends_at
    sweep(lab, ends_at - timedelta(hours=1))
    refused = extend(lab, CAROL, lease_id, timedelta(0), ends_at - timedelta(minutes=50))
    assert not refused.ok  # even a refused try shows someone is there
    sweep(lab, ends_at - timedelta(minutes=30))
    assert lab.notifier.texts(Kind.SILENT_LEASE) == []


def test_a_reviewer_may_extend_a_silent_lease_on_the_teams_behalf(lab, clock):
    lease_id = active(lab, clock)
    ends_at = lease(lab.db, lease_id).ends_at
    sweep(lab, ends_at - timedelta(minutes=30))
    assert lab.notifier.texts(Kind.SILENT_LEASE)
    outcome = extend(lab, REVIEWER, lease_id, timedelta(hours=24), ends_at - timedelta(minutes=20))
    assert outcome.ok and lease(lab.db, lease_id).ends_at == ends_at + timedelta(hours=24)
    assert not extend(lab, OTHER, lease_id, timedelta(hours=1), clock.now).ok


def test_a_co_owner_sees_the_lease_in_list_and_show_names_the_co_owners(lab, clock):
    lease_id = active(lab, clock, co_owners=(CAROL,))
    assert f"#{lease_id} coredns" in lease_list(lab, CAROL, CAROL, 1, clock.now).message
    assert "You have no leases" in lease_list(lab, STRANGER, STRANGER, 1, clock.now).message
    assert (
        f"owner <@{OWNER}>, co-owners <@{CAROL}>" in show(lab, ADMIN, lease_id, clock.now).message
    )
