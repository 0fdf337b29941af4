"""Which donor pays: the cheapest whose catalog, terms, dates and credit fit, named on the request
or picked by a reviewer on the card; what the requester hears when no donor can; no lease
running past its donor's end."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

from commands.donors import Donor
from commands.extend import extend
from commands.lab import Code, Lab
from commands.notices import Kind
from commands.policy import Policy
from commands.request import request
from commands.review import approve, choose_donor
from fakes.notifier import RecordingNotifier
from metal.catalog import seed
from metal.provider import Catalog
from metal.simulated import SimulatedProvider
from storage.db import Database
from tests.commands.helpers import active, audits, file, lease, notices
from tests.conftest import ADMIN, OWNER, REVIEWER, ROLES, Clock, request_input

X86 = {"plan": "c1.small.x86", "metro": "ams1"}  # $0.40/h a server in the seed catalog
ARM = {"plan": "c1.large.arm", "metro": "ams1"}


def priced(percent: int) -> Catalog:
    """The seed catalog at `percent` of its prices."""
    catalog = seed()
    plans = {
        slug: replace(plan, hourly_cents=plan.hourly_cents * percent // 100)
        for slug, plan in catalog.plans.items()
    }
    return replace(catalog, plans=plans)


def donors_lab(db: Database, clock: Clock, *donors: tuple[Donor, int], **policy) -> Lab:
    """A lab of several donors, each a simulated account whose catalog asks `percent` of the
    seed's prices."""
    providers = {
        donor.name: SimulatedProvider(
            db, clock=clock, provision_seconds=120, catalog=priced(percent)
        )
        for donor, percent in donors
    }
    first = next(iter(providers.values()))
    rules = Policy(donor_list=tuple(donor for donor, _ in donors), **policy)
    return Lab(db, first, RecordingNotifier(), rules, ROLES, providers=providers)


ARM_ONLY = (Donor("armco", architectures=frozenset({"aarch64"})), 50)
CHEAP = (Donor("cheap"), 75)
DEAR = (Donor("dear"), 100)


def test_the_cheapest_donor_whose_terms_allow_the_lease_pays(db: Database, clock: Clock) -> None:
    lab = donors_lab(db, clock, DEAR, ARM_ONLY, CHEAP)
    filed = request(lab, OWNER, request_input(**X86), clock.now)
    assert filed.ok, filed.message
    assert "cheap pays: the cheapest donor with credit" in filed.message
    row = lease(db, filed.lease_id)
    assert (row.donor, row.hourly_cents) == ("cheap", 30)
    (said,) = audits(db, filed.lease_id, "request")
    assert "armco pays only for aarch64 servers" in said.details
    card = json.loads(next(n for n in notices(db) if n.kind == Kind.REVIEW_CARD).payload)
    assert card["donor"] == "cheap" and card["donor_months"] == ["2026-11"]
    assert card["donor_why"].startswith("the cheapest donor with credit for 2026-11")
    assert card["donors"] == ["dear", "cheap"]  # armco's terms refuse an x86 lease

    arm = request(lab, OWNER, request_input(**ARM), clock.now)
    assert lease(db, arm.lease_id).donor == "armco"
    assert lease(db, arm.lease_id).hourly_cents == 25


def test_a_request_may_name_its_donor(db: Database, clock: Clock) -> None:
    lab = donors_lab(db, clock, CHEAP, DEAR)
    lease_id = file(lab, clock, donor="dear", **X86)
    assert (lease(db, lease_id).donor, lease(db, lease_id).hourly_cents) == ("dear", 40)


def test_an_unknown_donor_is_refused_with_the_names(db: Database, clock: Clock) -> None:
    lab = donors_lab(db, clock, CHEAP, DEAR)
    refused = request(lab, OWNER, request_input(donor="nobody", **X86), clock.now)
    assert refused.code == Code.BAD_INPUT
    assert "unknown donor 'nobody'; name one of cheap, dear" in refused.message


def test_no_donor_that_can_serve_says_what_stopped_each(db: Database, clock: Clock) -> None:
    members = (Donor("members", classes=frozenset({"member"})), 100)
    lab = donors_lab(db, clock, ARM_ONLY, members)
    refused = request(lab, OWNER, request_input(**X86), clock.now)
    assert refused.code == Code.NO_DONOR
    assert "armco pays only for aarch64 servers" in refused.message
    assert "members serves only member projects" in refused.message
    named = request(lab, OWNER, request_input(donor="armco", **X86), clock.now)
    assert named.code == Code.NO_DONOR


def test_a_donor_whose_credit_ends_before_the_lease_is_passed_over(
    db: Database, clock: Clock
) -> None:
    ending = (Donor("ending", ends_at=clock.now + timedelta(hours=24)), 50)
    lab = donors_lab(db, clock, ending, DEAR)
    long_one = request(lab, OWNER, request_input(duration=timedelta(hours=48), **X86), clock.now)
    assert lease(db, long_one.lease_id).donor == "dear"
    (said,) = audits(db, long_one.lease_id, "request")
    assert "ending's credit ends at" in said.details
    short_one = file(lab, clock, duration=timedelta(hours=12), **X86)
    assert lease(db, short_one).donor == "ending"


def test_a_donor_whose_month_is_full_is_passed_over(db: Database, clock: Clock) -> None:
    small = (Donor("small", monthly_grant_cents=10_000), 75)  # $100: two requests' worth
    lab = donors_lab(db, clock, small, DEAR)
    first = file(lab, clock, **X86)  # 3 servers for 48h at $0.30: $43.20
    assert approve(lab, REVIEWER, first, clock.now).ok
    second = request(lab, OWNER, request_input(**X86), clock.now)
    assert lease(db, second.lease_id).donor == "small"
    waiting = file(lab, clock, donor="small", count=1)  # fits small's month now, not later
    assert approve(lab, REVIEWER, second.lease_id, clock.now).ok
    refused = approve(lab, REVIEWER, waiting, clock.now)
    assert refused.code == Code.OVER_BUDGET
    assert "Or pick dear on the card: it has the credit." in refused.message
    third = request(lab, OWNER, request_input(**X86), clock.now)
    assert lease(db, third.lease_id).donor == "dear"
    assert "dear pays: the cheapest donor with credit for 2026-11 and room" in third.message
    (said,) = audits(db, third.lease_id, "request")
    assert "small would over-commit its credit: 2026-11 by $" in said.details


def test_when_no_donor_has_the_credit_the_request_waits_for_reviewers(
    db: Database, clock: Clock
) -> None:
    poor = [(replace(donor, monthly_grant_cents=1000), percent) for donor, percent in (CHEAP, DEAR)]
    lab = donors_lab(db, clock, *poor)
    filed = request(lab, OWNER, request_input(**X86), clock.now)
    assert filed.ok
    assert "Note: no donor has the credit and the room for it now; cheap is the cheapest" in (
        filed.message
    )
    assert "dear would over-commit its credit" in filed.message
    assert lease(db, filed.lease_id).donor == "cheap"
    refused = approve(lab, REVIEWER, filed.lease_id, clock.now)
    assert refused.code == Code.OVER_BUDGET


def test_a_reviewer_picks_another_donor_on_the_card(db: Database, clock: Clock) -> None:
    lab = donors_lab(db, clock, CHEAP, DEAR, ARM_ONLY)
    lease_id = file(lab, clock, **X86)
    assert choose_donor(lab, OWNER, lease_id, "dear", clock.now).code == Code.NOT_ALLOWED
    assert choose_donor(lab, REVIEWER, lease_id, "nobody", clock.now).code == Code.BAD_INPUT
    refused = choose_donor(lab, REVIEWER, lease_id, "armco", clock.now)
    assert refused.code == Code.NO_DONOR
    assert "armco pays only for aarch64 servers" in refused.message
    assert lease(db, lease_id).donor == "cheap"

    picked = choose_donor(lab, REVIEWER, lease_id, "dear", clock.now)
    assert picked.ok, picked.message
    assert picked.message == f"Request #{lease_id} will be paid by dear."
    assert (lease(db, lease_id).donor, lease(db, lease_id).hourly_cents) == ("dear", 40)
    (chose,) = [a for a in audits(db, lease_id, "choose_donor") if a.outcome == "ok"]
    assert chose.actor == REVIEWER and '"before": "cheap"' in chose.details
    update = json.loads([n for n in notices(db) if n.kind == Kind.CARD_UPDATE][-1].payload)
    assert update["donor"] == "dear"
    assert update["donor_why"] == f"picked by <@{REVIEWER}> on the card"

    assert approve(lab, REVIEWER, lease_id, clock.now).ok
    late = choose_donor(lab, REVIEWER, lease_id, "cheap", clock.now)
    assert late.code == Code.ALREADY_DECIDED
    assert lease(db, lease_id).donor == "dear"


def test_approval_past_the_donor_end_is_refused_naming_who_could(
    db: Database, clock: Clock
) -> None:
    ending = (Donor("ending", ends_at=clock.now + timedelta(hours=60)), 50)
    lab = donors_lab(db, clock, ending, DEAR)
    lease_id = file(lab, clock, duration=timedelta(hours=48), **X86)
    assert lease(db, lease_id).donor == "ending"
    clock.advance(hours=24)  # approved now, its servers would run until past the donor's end
    refused = approve(lab, REVIEWER, lease_id, clock.now)
    assert refused.code == Code.NO_DONOR
    assert "ending's credit ends at" in refused.message
    assert "pick dear on the card" in refused.message
    assert choose_donor(lab, REVIEWER, lease_id, "dear", clock.now).ok
    assert approve(lab, REVIEWER, lease_id, clock.now).ok


def test_an_extension_past_the_donor_end_is_refused_with_the_date(
    db: Database, clock: Clock
) -> None:
    ending = (Donor("ending", ends_at=clock.now + timedelta(days=4)), 50)
    lab = donors_lab(db, clock, ending, DEAR)
    lease_id = active(lab, clock, **X86)
    assert lease(db, lease_id).donor == "ending"
    ends = lease(db, lease_id).ends_at
    refused = extend(lab, OWNER, lease_id, timedelta(days=3), clock.now)
    assert refused.code == Code.DONOR_ENDS
    assert "would run past the end of ending's credit at" in refused.message
    assert "it can be extended by at most" in refused.message
    assert lease(db, lease_id).ends_at == ends
    assert extend(lab, ADMIN, lease_id, timedelta(hours=12), clock.now).ok


def test_one_donor_labs_route_as_before(lab: Lab, clock: Clock) -> None:
    filed = request(lab, OWNER, request_input(**X86), clock.now)
    assert filed.message.endswith("you will get a DM with their decision.")
    assert lease(lab.db, filed.lease_id).donor == "lab"


def test_the_form_offers_the_donors_catalogs_together(db: Database, clock: Clock) -> None:
    amsterdam_only = replace(priced(100), metros={"ams1": seed().metros["ams1"]})
    tokyo = seed().metros["nrt1"]
    tokyo_arm = replace(
        priced(50),
        plans={"c1.large.arm": replace(seed().plans["c1.large.arm"], hourly_cents=20)},
        metros={"nrt1": tokyo},
    )
    lab = donors_lab(db, clock, DEAR, ARM_ONLY)
    lab.catalogs.update(dear=amsterdam_only, armco=tokyo_arm)
    offered = lab.plans()
    assert offered.plan_available("c1.large.arm", "nrt1")
    assert offered.plan_available("c1.large.arm", "ams1")
    assert not offered.plan_available("c1.small.x86", "nrt1")
    assert offered.plans["c1.large.arm"].hourly_cents == 20  # the cheapest asked
    tokyo_request = request(lab, OWNER, request_input(plan="c1.large.arm", metro="nrt1"), clock.now)
    assert lease(db, tokyo_request.lease_id).donor == "armco"
    assert lease(db, tokyo_request.lease_id).hourly_cents == 20


def test_a_donor_whose_provider_has_no_room_is_passed_over(db: Database, clock: Clock) -> None:
    lab = donors_lab(db, clock, CHEAP, DEAR)
    lab.plans()  # the catalogs as read at start-up
    cheap = lab.provider_of("cheap")
    cheap.offered = replace(cheap.offered, metros={})  # no room anywhere now, it says
    filed = request(lab, OWNER, request_input(**X86), clock.now)
    assert lease(db, filed.lease_id).donor == "dear"
    (said,) = audits(db, filed.lease_id, "request")
    assert "cheap has no room for 3 c1.small.x86 in ams1 now" in said.details
