"""The books per donor: each donor's month has its own grant, spent, committed and available;
a lease is billed to its donor alone; the lab's books are the donors' summed; the credit check
(`budget.over_budget`) reads the month of the donor the lease names, as routing asks it of each
candidate donor; a project's cap spans the donors; each donor keeps its own reserve; the credit
alerts are per donor."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlmodel import select

from commands.budget import Limit, over_budget
from commands.credit import GRANT, books
from commands.donors import Donor
from commands.lab import Code, Lab
from commands.review import approve
from commands.sweep import sweep
from storage.models import Lease, LedgerEntry
from tests.commands.helpers import file, lease, ledger
from tests.conftest import REVIEWER

# The default lease, 3 x c1.small.x86 for 48 h (49 started hours with grace), costs $58.80.
COST = 5880


def with_donors(lab: Lab, *donors: Donor, **changes) -> Lab:
    """The lab with these donors, each with an account at the one simulated provider."""
    return replace(
        lab,
        policy=replace(lab.policy, donor_list=donors, **changes),
        providers={donor.name: lab.provider for donor in donors},
    )


def bill_to(lab: Lab, lease_id: int, donor: str) -> None:
    """Before approval, as a reviewer's pick on the card does."""
    with lab.db.write() as session:
        row = session.get(Lease, lease_id)
        row.donor = donor
        session.add(row)


def donor_books(lab: Lab, now: datetime, donor: str | None = None):
    with lab.db.write() as session:
        return books(session, ["2026-11"], lab.policy, now, donor=donor)["2026-11"]


def test_a_lease_is_billed_to_its_donor_alone_and_the_lab_sums_its_donors(lab, clock):
    lab = with_donors(
        lab, Donor("lab", monthly_grant_cents=10_000), Donor("arm", monthly_grant_cents=7_000)
    )
    lease_id = file(lab, clock)
    bill_to(lab, lease_id, "arm")
    assert approve(lab, REVIEWER, lease_id, clock.now).ok
    arm, first, whole = (donor_books(lab, clock.now, d) for d in ("arm", "lab", None))
    assert (arm.granted, arm.committed, arm.available) == (7_000, COST, 7_000 - COST)
    assert (first.granted, first.committed, first.available) == (10_000, 0, 10_000)
    assert (whole.granted, whole.committed) == (17_000, COST)
    clock.advance(minutes=5)
    sweep(lab, clock.now)  # the servers come up: what they bill is the arm donor's
    later = clock.advance(minutes=1)
    arm, first = donor_books(lab, later, "arm"), donor_books(lab, later, "lab")
    assert arm.spent > 0 and arm.spent + arm.committed == COST
    assert (first.spent, first.committed) == (0, 0)
    grants = {(g.donor, g.month): (g.amount_cents, g.key) for g in ledger(lab.db, GRANT)}
    assert grants[("arm", "2026-11")] == (7_000, "grant:arm:2026-11")
    assert grants[("lab", "2026-11")] == (10_000, "grant:lab:2026-11")


def test_over_budget_reads_the_month_of_the_donor_the_lease_names(lab, clock):
    lab = with_donors(
        lab, Donor("lab", monthly_grant_cents=10_000), Donor("small", monthly_grant_cents=5_000)
    )
    lease_id = file(lab, clock)
    with lab.db.write() as session:  # routing: one check per candidate, in one transaction
        candidate = session.get(Lease, lease_id)
        verdicts = {}
        for donor in ("lab", "small", "gone"):
            candidate.donor = donor
            verdicts[donor] = over_budget(session, candidate, lab.policy, clock.now)
        unsaved = Lease(**{**candidate.model_dump(), "id": None, "donor": "small"})
        assert [s.limit for s in over_budget(session, unsaved, lab.policy, clock.now)] == [
            Limit.LAB
        ]
        session.expunge(candidate)
    assert verdicts["lab"] == []
    assert [(s.limit, s.months) for s in verdicts["small"]] == [
        (Limit.LAB, {"2026-11": COST - 5_000})
    ]
    assert verdicts["gone"][0].months == {"2026-11": COST}  # a donor not configured grants nothing
    bill_to(lab, lease_id, "small")
    refused = approve(lab, REVIEWER, lease_id, clock.now)
    assert refused.code == Code.OVER_BUDGET
    assert lease(lab.db, lease_id).state == "pending"
    bill_to(lab, lease_id, "lab")
    assert approve(lab, REVIEWER, lease_id, clock.now).ok


def test_a_donor_month_full_leaves_the_others_untouched(lab, clock):
    lab = with_donors(
        lab, Donor("lab", monthly_grant_cents=COST), Donor("arm", monthly_grant_cents=COST)
    )
    first = file(lab, clock)
    assert approve(lab, REVIEWER, first, clock.now).ok  # the lab donor's month is now full
    second = file(lab, clock)
    assert approve(lab, REVIEWER, second, clock.now).code == Code.OVER_BUDGET
    bill_to(lab, second, "arm")
    assert approve(lab, REVIEWER, second, clock.now).ok
    assert donor_books(lab, clock.now).available == 0


def test_a_projects_cap_spans_the_donors(lab, clock):
    lab = with_donors(
        lab,
        Donor("lab", monthly_grant_cents=100_000),
        Donor("arm", monthly_grant_cents=100_000),
        project_cap_cents=COST + 100,
    )
    first = file(lab, clock)
    assert approve(lab, REVIEWER, first, clock.now).ok
    second = file(lab, clock)
    bill_to(lab, second, "arm")
    assert approve(lab, REVIEWER, second, clock.now).code == Code.OVER_PROJECT_CAP


def test_each_donor_keeps_its_own_reserve(lab, clock):
    lab = with_donors(
        lab,
        Donor("lab", monthly_grant_cents=100_000),
        Donor("kept", monthly_grant_cents=COST * 2, reserved_share=6_000),
        foundation_projects=(("coredns", "graduated"),),
    )
    lease_id = file(lab, clock, applicant="foundation")
    bill_to(lab, lease_id, "kept")  # 60% of $117.60 kept: the foundation may take $47.04
    assert approve(lab, REVIEWER, lease_id, clock.now).code == Code.RESERVE
    bill_to(lab, lease_id, "lab")  # 20% of $1,000 kept: plenty left
    assert approve(lab, REVIEWER, lease_id, clock.now).ok


def test_a_donors_grant_follows_its_dates_and_named_months(lab, clock):
    ends = datetime(2026, 12, 1, tzinfo=UTC)
    lab = with_donors(
        lab,
        Donor("lab", monthly_grant_cents=1_000, grants_by_month=(("2027-01", 2_500),)),
        Donor("ending", monthly_grant_cents=4_000, ends_at=ends),
    )
    months = ["2026-11", "2026-12", "2027-01"]
    with lab.db.write() as session:
        granted = {m: b.granted for m, b in books(session, months, lab.policy, clock.now).items()}
    assert granted == {"2026-11": 5_000, "2026-12": 1_000, "2027-01": 2_500}


def test_credit_alerts_are_per_donor(lab, clock):
    lab = with_donors(
        lab, Donor("lab", monthly_grant_cents=100_000), Donor("arm", monthly_grant_cents=7_000)
    )
    lease_id = file(lab, clock)
    bill_to(lab, lease_id, "arm")
    assert approve(lab, REVIEWER, lease_id, clock.now).ok  # $58.80 of arm's $70: 84%
    sweep(lab, clock.now)
    sweep(lab, clock.advance(minutes=1))
    alerts = [m for m in lab.notifier.messages if m.data.get("alert") == "credit"]
    assert [(m.data["donor"], m.data["percent"]) for m in alerts] == [("arm", 80)]
    assert alerts[0].text.startswith("2026-11: 80% of arm's credit is spent or committed")
    with lab.db.read() as session:
        assert not session.exec(select(LedgerEntry).where(LedgerEntry.donor == "")).all()
