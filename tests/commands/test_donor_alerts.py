"""A donor's end: the admins told 30 and 7 days ahead, once each across replicas, with the live
leases the donor pays for (both databases, through the sweep)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import update

from commands.donor_alerts import DONOR_ALERTS
from commands.donors import Donor
from commands.lab import Lab
from commands.sweep import sweep
from storage.models import Claim, Lease
from tests.commands.helpers import active, file, notices
from tests.conftest import START, with_policy


def ending(lab: Lab, after: timedelta) -> Lab:
    """The lab's first donor ("lab", which leases are billed to) ends `after` START; another
    donor goes on."""
    return with_policy(
        lab, donor_list=(Donor("lab", ends_at=START + after), Donor("arm", provider="simulated"))
    )


def bill_to(lab: Lab, lease_id: int, donor: str) -> None:
    with lab.db.write() as session:
        session.execute(update(Lease).where(Lease.id == lease_id).values(donor=donor))


def alerts(lab: Lab) -> list:
    return [m for m in lab.notifier.messages if m.data.get("alert") == "donor-end"]


def test_admins_are_told_30_then_7_days_ahead_with_the_live_leases(lab, clock):
    lab = ending(lab, timedelta(days=31))
    kept = active(lab, clock)
    elsewhere = active(lab, clock, project="envoy")
    bill_to(lab, elsewhere, "arm")
    assert alerts(lab) == []  # 31 days ahead: nothing yet

    sweep(lab, clock.advance(days=1))
    (first,) = alerts(lab)
    assert (first.data["donor"], first.data["days"]) == ("lab", 30)
    assert first.text.startswith("Donor lab's credit ends <!date^")
    assert "in 30 days." in first.text and "It pays for 1 live lease:" in first.text
    assert f"#{kept} coredns" in first.text and f"#{elsewhere} " not in first.text

    sweep(lab, clock.advance(minutes=30))
    other_replica = replace(lab, replica="another-replica")
    sweep(other_replica, clock.advance(minutes=30))
    queued = [n for n in notices(lab.db) if '"donor-end"' in n.payload]
    assert len(queued) == len(alerts(lab)) == 1  # once, across replicas

    sweep(lab, clock.advance(days=23))  # 7 days ahead; the 48 h lease is long over
    assert [a.data["days"] for a in alerts(lab)] == [30, 7]
    assert alerts(lab)[-1].text.endswith("It pays for no live lease.")
    sweep(lab, clock.advance(days=7))  # the end itself: nothing more to tell
    assert len(alerts(lab)) == 2


def test_a_donor_configured_late_gets_only_the_nearest_warning(lab, clock):
    lab = ending(lab, timedelta(days=5))
    file(lab, clock)  # waiting for a reviewer: not yet paid for
    sweep(lab, clock.now)
    sweep(lab, clock.advance(minutes=15))
    (alert,) = alerts(lab)
    assert alert.data["days"] == 7 and "It pays for no live lease." in alert.text


def test_a_lab_whose_donors_do_not_end_soon_does_no_work_for_it(lab, clock):
    lab = ending(lab, timedelta(days=90))
    sweep(lab, clock.now)
    with lab.db.read() as session:
        assert session.get(Claim, DONOR_ALERTS) is None
    assert alerts(lab) == []
