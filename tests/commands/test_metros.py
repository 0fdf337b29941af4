"""One lease across several metros (issue 22, item 6): what people type and pick, the one lease
filed, approved, provisioned metro by metro, listed by metro and reclaimed whole; every bad
input answered with one sentence and nothing written."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from commands.credit_report import credit_report
from commands.grammar import GrammarError, parse
from commands.lab import Code, Lab
from commands.metros import MetroError, counts_for, read_metros
from commands.notices import Kind
from commands.reclaim import release
from commands.request import request
from commands.review import approve
from commands.serverfiles import inventory
from commands.serverpages import show_page
from commands.states import ServerState, State
from commands.sweep import sweep
from commands.views import lease_list, show
from metal.provider import Catalog, Plan
from storage.models import CreditHold
from tests.commands.helpers import (
    PROVISION,
    active,
    audits,
    lease,
    live_devices,
    servers,
    snapshot,
    sweep_until_quiet,
)
from tests.conftest import OWNER, REVIEWER, request_input, with_policy

THREE = (("ams1", 2), ("ewr1", 2), ("sjc1", 2))
INLINE = 'project=coredns repo=https://github.com/coredns/coredns "gRPC across metros"'


# --- what people type ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"request 2 c1.small.x86 ams1,ewr1,sjc1 48h {INLINE}",
        f"request c1.small.x86 48h metro=ams1,ewr1,sjc1 count=2 {INLINE}",
        f"request 2 c1.small.x86 48h metro=ams1,ewr1,sjc1 {INLINE}",
        f"request c1.small.x86 AMS1,EWR1,SJC1 48h count=2 {INLINE}",
        f"request c1.small.x86 48h metro=ams1:2,ewr1:2,sjc1:2 {INLINE}",
    ],
)
def test_the_same_count_in_each_metro_or_a_count_per_metro(text: str) -> None:
    asked = parse(text).request
    assert asked.per_metro() == dict(THREE)
    assert (asked.metro, asked.count, asked.plan) == ("ams1", 6, "c1.small.x86")
    assert asked.duration == timedelta(hours=48) and asked.purpose == "gRPC across metros"


def test_a_count_per_metro_keeps_the_order_asked() -> None:
    asked = parse(f"request c1.small.x86 48h metro=sjc1:4,ams1:1 {INLINE}").request
    assert list(asked.per_metro().items()) == [("sjc1", 4), ("ams1", 1)]
    assert (asked.metro, asked.count) == ("sjc1", 5)


def test_one_metro_reads_as_before() -> None:
    asked = parse(f"request 3 c1.small.x86 ams1 48h {INLINE}").request
    assert (asked.metro, asked.count, asked.metro_counts) == ("ams1", 3, ())
    single = parse(f"request c1.small.x86 48h metro=ams1:3 {INLINE}").request
    assert (single.metro, single.count, single.metro_counts) == ("ams1", 3, ())


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("request 2 c1.small.x86 ams1,ewr1,ams1 48h", "ams1 is named twice"),
        ("request c1.small.x86 48h metro=ams1:2,AMS1:3", "ams1 is named twice"),
        ("request c1.small.x86 48h metro=ams1:2.5,ewr1:2", "'2.5' is not a whole number"),
        ("request c1.small.x86 48h metro=ams1:two,ewr1:2", "'two' is not a whole number"),
        ("request c1.small.x86 48h metro=ams1:0,ewr1:2", "ams1 asks for no servers"),
        ("request 2.5 c1.small.x86 ams1,ewr1 48h", "'2.5' is not a number of servers"),
        ("request c1.small.x86 48h metro=ams1,ewr1 count=-1", "not a number of servers"),
        ("request c1.small.x86 48h metro=ams1:2,ewr1", "some do not"),
        ("request c1.small.x86 48h metro=ams1:2,ewr1:1 count=3", "not both"),
        ("request 3 c1.small.x86 48h metro=ams1:2,ewr1:1", "leave out COUNT"),
        ("request c1.small.x86 48h metro=,, count=2", "No metro given"),
    ],
)
def test_bad_metros_get_one_sentence_saying_what_is_accepted(text: str, phrase: str) -> None:
    with pytest.raises(GrammarError) as refused:
        parse(text)
    assert phrase in str(refused.value)
    assert "Usage: `request" in str(refused.value)


def test_the_form_takes_the_metros_picked_and_a_count_each_or_per_metro() -> None:
    assert counts_for(["ams1", "ewr1", "sjc1"], "2") == dict(THREE)
    assert counts_for(["ams1", "ewr1"], "ewr1:1, ams1:4") == {"ewr1": 1, "ams1": 4}
    for metros, typed, phrase in [
        (["ams1", "ewr1"], "three", "'three' is not a number of servers"),
        (["ams1", "ewr1"], "ams1:4", "give a count for each metro chosen"),
        (["ams1"], "ams1:1,sjc1:2", "give a count for each metro chosen"),
        (["ams1", "ewr1"], "ams1:1.5,ewr1:1", "not a whole number"),
    ]:
        with pytest.raises(MetroError) as refused:
            counts_for(metros, typed)
        assert phrase in str(refused.value)
    with pytest.raises(MetroError):
        read_metros("ams1", None)


# --- the request -------------------------------------------------------------------------------


def across(**changes: object):
    shape = {"plan": "c1.small.x86", "metro": "ams1", "count": 6, "metro_counts": THREE}
    return request_input(**{**shape, **changes})


def arm_in_two(lab: Lab) -> Lab:
    """The lab with c1.large.arm offered in sjc1 and ewr1 only."""
    base = lab.plans()
    plans = dict(base.plans)
    plans["c1.large.arm"] = Plan("c1.large.arm", "Type 2A", 50, "aarch64", "", ("sjc1", "ewr1"))
    limited = Lab(lab.db, lab.provider, lab.notifier, lab.policy, lab.roles)
    limited.catalog = Catalog(plans, base.metros, base.oses)
    return limited


@pytest.mark.parametrize(
    ("changes", "code", "phrase"),
    [
        (
            {"metro_counts": (("ams1", 2), ("mars1", 2), ("ewr1", 1)), "count": 5},
            Code.BAD_INPUT,
            "unknown metro 'mars1'; choose one of ewr1",
        ),
        (
            {"plan": "c1.large.arm"},
            Code.NOT_OFFERED,
            "c1.large.arm is not offered in ams1; it is offered in sjc1, ewr1",
        ),
        (
            {
                "plan": "c1.large.arm",
                "metro_counts": (("sjc1", 1), ("ewr1", 1), ("ams1", 1), ("nrt1", 1)),
                "metro": "sjc1",
                "count": 4,
            },
            Code.NOT_OFFERED,
            "c1.large.arm is not offered in ams1, nrt1 (4 asked, 2 offered); it is offered in "
            "sjc1, ewr1",
        ),
        (
            {"metro_counts": (("ams1", 60), ("ewr1", 41)), "count": 101},
            Code.BAD_INPUT,
            "101 servers is outside policy; ask for 1 to 100 in all metros together",
        ),
    ],
)
def test_a_request_the_catalog_or_policy_refuses_writes_nothing(
    lab: Lab, clock, changes, code, phrase
) -> None:
    lab = arm_in_two(lab)
    before = snapshot(lab.db)
    outcome = request(lab, OWNER, across(**changes), clock.now)
    assert (outcome.ok, outcome.code) == (False, code)
    assert phrase in outcome.message and outcome.message.endswith(".")
    assert outcome.message.count(".") == 1 + phrase.count(".")  # one sentence
    assert snapshot(lab.db) == before
    [event] = audits(lab.db)
    assert (event.action, event.outcome) == ("request", "refused")
    assert lab.notifier.messages == []


def test_a_three_metro_lease_is_one_lease_from_request_to_reclaim(lab: Lab, clock) -> None:
    filed = request(lab, OWNER, across(), clock.now)
    assert filed.ok, filed.message
    assert "6 x c1.small.x86 in ams1 (2), ewr1 (2), sjc1 (2) for 2d" in filed.message
    # 6 servers x 40 cents x (48h + 1h grace): the cost and the hold are for all of them.
    [received] = lab.notifier.texts(Kind.REQUEST_RECEIVED)
    assert "about $117.60" in received
    [card] = [m for m in lab.notifier.messages if m.kind == Kind.REVIEW_CARD]
    assert card.data["metro"] == "ams1 (2), ewr1 (2), sjc1 (2)" and card.data["count"] == 6
    lease_id = filed.lease_id
    assert approve(lab, REVIEWER, lease_id, clock.now).ok
    clock.advance(seconds=PROVISION.total_seconds() + 30)
    sweep(lab, clock.now)
    row = lease(lab.db, lease_id)
    assert row.state == State.ACTIVE
    assert row.per_metro() == dict(THREE) and row.count == 6
    with lab.db.read() as session:
        held = session.exec(select(CreditHold).where(CreditHold.lease_id == lease_id)).all()
    assert sum(h.cents for h in held) == 6 * 40 * 49
    made = sorted((s.metro, s.hostname) for s in servers(lab.db, lease_id))
    assert made == [
        ("ams1", f"coredns-{lease_id}-1"),
        ("ams1", f"coredns-{lease_id}-2"),
        ("ewr1", f"coredns-{lease_id}-3"),
        ("ewr1", f"coredns-{lease_id}-4"),
        ("sjc1", f"coredns-{lease_id}-5"),
        ("sjc1", f"coredns-{lease_id}-6"),
    ]
    devices = live_devices(lab, lease_id)
    assert sorted(d.metro for d in devices) == ["ams1", "ams1", "ewr1", "ewr1", "sjc1", "sjc1"]

    [ready] = [m for m in lab.notifier.messages if m.kind == Kind.READY]
    assert "is ready in ams1 (2), ewr1 (2), sjc1 (2)" in ready.text
    for server in servers(lab.db, lease_id):
        assert f"{server.hostname} ({server.metro}): {server.ips}" in ready.text
    assert [s["metro"] for s in ready.data["servers"]] == ["ams1"] * 2 + ["ewr1"] * 2 + ["sjc1"] * 2

    shown = show_page(lab, OWNER, lease_id, 1, clock.now).outcome.message
    assert "6 x c1.small.x86 in ams1 (2), ewr1 (2), sjc1 (2)" in shown
    lines = shown.splitlines()
    heads = [n for n, line in enumerate(lines) if line.endswith(": 2 server(s)")]
    assert [lines[n] for n in heads] == [f"{m}: 2 server(s)" for m, _ in THREE]
    assert [lines[n + 1].split()[0] for n in heads] == [
        f"coredns-{lease_id}-{n}" for n in (1, 3, 5)
    ]

    everything = show(lab, OWNER, lease_id, clock.now).message  # `labbot show ID`
    assert everything.index("ams1: 2 server(s)") < everything.index("sjc1: 2 server(s)")
    listed = lease_list(lab, OWNER, OWNER, 1, clock.now).message  # and App Home's lines
    assert f"#{lease_id} coredns: 6 x c1.small.x86 in ams1 (2), ewr1 (2), sjc1 (2)" in listed

    ini = inventory(lease_id, "root", ready.data["servers"])
    assert f"[lease_{lease_id}:children]\nlease_{lease_id}_ams1\nlease_{lease_id}_ewr1" in ini

    clock.advance(minutes=30)
    assert release(lab, OWNER, lease_id, clock.now).ok
    sweep_until_quiet(lab, clock, timedelta(minutes=1), limit=5)
    assert lease(lab.db, lease_id).state == State.RECLAIMED
    assert live_devices(lab, lease_id) == []
    assert {s.state for s in servers(lab.db, lease_id)} == {ServerState.DELETED}
    books = credit_report(lab, clock.now).lab
    assert (books.spent, books.committed) == (6 * 40, 0)  # one started hour of each server


def test_a_partial_lease_across_metros_keeps_the_metros_that_came_up(lab: Lab, clock) -> None:
    """Two servers fail provisioning for good: the lease goes on with the four that came up,
    counted in the metros they are in."""
    lab = with_policy(lab, create_attempts=1)
    lab.provider.fail_next_provisioning(2)  # the first two creates: ams1's
    lease_id = active(lab, clock, metro="ams1", count=6, metro_counts=THREE, allow_partial=True)
    row = lease(lab.db, lease_id)
    assert (row.count, row.per_metro()) == (4, {"ewr1": 2, "sjc1": 2})
    [ready] = lab.notifier.texts(Kind.READY)
    assert "(4 of the 6 asked for) in ewr1 (2), sjc1 (2)" in ready


def test_five_hundred_servers_across_five_metros(lab: Lab, clock) -> None:
    lab = with_policy(lab, max_servers=500)
    five = tuple((m, 100) for m in ("ams1", "ewr1", "sjc1", "nrt1", "fra2"))
    lease_id = active(lab, clock, metro="ams1", count=500, metro_counts=five)
    assert lease(lab.db, lease_id).per_metro() == dict(five)
    by_metro: dict[str, int] = {}
    for device in live_devices(lab, lease_id):
        by_metro[device.metro] = by_metro.get(device.metro, 0) + 1
    assert by_metro == dict(five)
    last = show_page(lab, OWNER, lease_id, 10, clock.now).outcome.message
    assert "451 to 500 of 500 (page 10 of 10)" in last
    assert "fra2: 100 server(s)" in last and f"coredns-{lease_id}-500" in last
    assert release(lab, OWNER, lease_id, clock.now).ok
    sweep_until_quiet(lab, clock, timedelta(minutes=1), limit=3)
    assert lease(lab.db, lease_id).state == State.RECLAIMED and live_devices(lab, lease_id) == []
