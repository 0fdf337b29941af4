"""The books per donor: each donor's month has its own grant, spent, committed and available;
a lease is billed to its donor alone; the lab's books are the donors' summed; the credit check
(`budget.over_budget`) reads the month of the donor the lease names, as routing asks it of each
candidate donor; a project's cap spans the donors; each donor keeps its own reserve and its
earmarks; the credit alerts are per donor."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from prometheus_client import generate_latest
from sqlmodel import select

from bot.blocks.home import home_view
from bot.metrics import registry_for
from commands.budget import Limit, over_budget
from commands.credit import GRANT, books
from commands.credit_report import credit_report
from commands.donors import Donor, Earmark
from commands.earmarks import EARMARK_OVERRIDE, served_usage
from commands.lab import Code, Lab
from commands.review import approve
from commands.sweep import sweep
from storage.models import Lease, LedgerEntry
from tests.commands.helpers import file, lease, ledger
from tests.conftest import ADMIN, REVIEWER

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


def approved_on(lab: Lab, clock, donor: str) -> int:
    """A request billed to `donor` and approved."""
    lease_id = file(lab, clock)
    bill_to(lab, lease_id, donor)
    assert approve(lab, REVIEWER, lease_id, clock.now).ok
    return lease_id


def donor_books(lab: Lab, now: datetime, donor: str | None = None):
    with lab.db.write() as session:
        return books(session, ["2026-11"], lab.policy, now, donor=donor)["2026-11"]


def test_a_lease_is_billed_to_its_donor_alone_and_the_lab_sums_its_donors(lab, clock):
    lab = with_donors(
        lab, Donor("lab", monthly_grant_cents=10_000), Donor("arm", monthly_grant_cents=7_000)
    )
    approved_on(lab, clock, "arm")
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
    second = file(lab, clock, donor="lab")  # named: routing would propose arm
    assert approve(lab, REVIEWER, second, clock.now).code == Code.OVER_BUDGET
    bill_to(lab, second, "arm")
    assert approve(lab, REVIEWER, second, clock.now).ok
    assert (lease(lab.db, first).donor, lease(lab.db, second).donor) == ("lab", "arm")
    for donor in ("lab", "arm"):  # each donor's month holds its own lease, and only that
        assert donor_books(lab, clock.now, donor).committed == COST
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


def test_an_earmark_keeps_its_share_of_the_donors_month_for_the_projects_it_names(lab, clock):
    lab = with_donors(
        lab,
        Donor(
            "lab",
            monthly_grant_cents=20_000,
            earmarks=(Earmark(5_000, projects=frozenset({"envoy"})),),
        ),
    )
    first = file(lab, clock)
    assert approve(lab, REVIEWER, first, clock.now).ok  # coredns: $58.80 of the $100 not kept
    second = file(lab, clock)
    refused = approve(lab, REVIEWER, second, clock.now)
    assert refused.code == Code.EARMARK
    assert "take what lab keeps for envoy: 2026-11 by $17.60" in refused.message
    envoy = file(lab, clock, project="envoy", repo_url="https://github.com/envoyproxy/envoy")
    assert approve(lab, REVIEWER, envoy, clock.now).ok  # what is kept is envoy's to take
    assert approve(lab, ADMIN, second, clock.now, override="the release is this week").ok
    assert [(e.donor, e.amount_cents) for e in ledger(lab.db, EARMARK_OVERRIDE)] == [("lab", 1_760)]


def test_a_lease_of_a_named_project_and_a_named_class_counts_once(lab, clock):
    mark = Earmark(5_000, projects=frozenset({"coredns"}), classes=frozenset({"foundation"}))
    lab = with_donors(
        lab,
        Donor("lab", monthly_grant_cents=100_000, earmarks=(mark,)),
        foundation_projects=(("coredns", "graduated"),),
    )
    lease_id = file(lab, clock, applicant="foundation")
    assert approve(lab, REVIEWER, lease_id, clock.now).ok
    with lab.db.write() as session:
        used = served_usage(session, ["2026-11"], clock.now, "lab", mark.projects, mark.classes)
    assert used == {"2026-11": COST}


def test_the_credit_report_app_home_and_metrics_show_each_donor_and_the_lab(lab, clock):
    lab = with_donors(
        lab, Donor("cncf", monthly_grant_cents=10_000), Donor("arm", monthly_grant_cents=7_000)
    )
    approved_on(lab, clock, "arm")
    report = credit_report(lab, clock.now)
    assert report.text().splitlines()[1:5] == [
        "  lab: granted $170.00, spent $0.00, committed $58.80, available $111.20",
        "By donor:",
        "  cncf: granted $100.00, spent $0.00, committed $0.00, available $100.00",
        "  arm: granted $70.00, spent $0.00, committed $58.80, available $11.20",
    ]
    home = json.dumps(home_view([], report, None, clock.now))
    assert "*Donor arm*\\ngranted $70.00, spent $0.00, committed $58.80, available $11.20" in home
    scraped = generate_latest(registry_for(lab, lambda: clock.now)).decode()
    assert 'labbot_credit_committed_cents{month="2026-11"} 5880.0' in scraped
    assert 'labbot_donor_credit_committed_cents{donor="arm",month="2026-11"} 5880.0' in scraped
    assert 'labbot_donor_credit_available_cents{donor="cncf",month="2026-11"} 10000.0' in scraped
