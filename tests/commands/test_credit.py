"""The month's money: billing arithmetic, the credit report per month and project, early release,
the ledger, and the audit export."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from commands.billing import (
    cost_by_month,
    format_cents,
    hours_by_month,
    month_bounds,
    month_key,
    months_between,
    started_hours,
)
from commands.credit import GRANT, books
from commands.credit_report import credit_report
from commands.reclaim import release
from commands.sweep import sweep
from commands.views import audit_events, audit_export
from tests.commands.helpers import active, approved, ledger, servers
from tests.conftest import OWNER, with_policy

T0 = datetime(2026, 1, 1, tzinfo=UTC)


# Billing arithmetic ------------------------------------------------------------------------


def test_started_hours():
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    assert started_hours(start, start) == 0
    assert started_hours(start, start - timedelta(hours=1)) == 0
    assert started_hours(start, start + timedelta(seconds=1)) == 1
    assert started_hours(start, start + timedelta(hours=1)) == 1
    assert started_hours(start, start + timedelta(hours=1, seconds=1)) == 2


def test_hours_fall_in_the_month_in_which_they_start():
    start = datetime(2026, 11, 30, 22, 30, tzinfo=UTC)
    # Hours start 22:30, 23:30 (November), 00:30, 01:30 (December).
    assert hours_by_month(start, start + timedelta(hours=4)) == {"2026-11": 2, "2026-12": 2}
    new_year = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    assert hours_by_month(new_year, new_year + timedelta(hours=2)) == {"2026-12": 1, "2027-01": 1}
    assert cost_by_month(new_year, new_year + timedelta(hours=2), 3, 40) == {
        "2026-12": 120,
        "2027-01": 120,
    }


def test_month_keys_and_bounds():
    assert month_bounds("2026-12") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert month_key(datetime(2027, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)) == "2026-12"
    assert list(months_between(datetime(2026, 11, 30, tzinfo=UTC), T0.replace(year=2027))) == [
        "2026-11",
        "2026-12",
    ]
    assert format_cents(2_500_000) == "$25,000.00" and format_cents(-5) == "-$0.05"


moments = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(moments, st.integers(min_value=0, max_value=400 * 24 * 3600))
def test_hours_by_month_sums_to_started_hours(start, seconds):
    end = start + timedelta(seconds=seconds)
    by_month = hours_by_month(start, end)
    assert sum(by_month.values()) == started_hours(start, end)
    assert list(by_month) == sorted(by_month)
    for key, hours in by_month.items():
        month_start, month_end = month_bounds(key)
        # Count the hours starting in the month the slow way for short spans.
        assert hours > 0
        if seconds <= 80 * 3600:
            slow = sum(
                1
                for k in range(started_hours(start, end))
                if month_start <= start + timedelta(hours=k) < month_end
            )
            assert slow == hours


@settings(max_examples=200, deadline=None)
@given(moments, st.integers(1, 60 * 24 * 3600), st.integers(1, 60 * 24 * 3600))
def test_splitting_a_span_never_bills_less(start, first, second):
    middle = start + timedelta(seconds=first)
    end = middle + timedelta(seconds=second)
    whole = started_hours(start, end)
    assert started_hours(start, middle) + started_hours(middle, end) >= whole


# The books ----------------------------------------------------------------------------------


def test_the_grant_is_written_once_per_month(lab, clock):
    credit_report(lab, clock.now)
    credit_report(lab, clock.now)
    credit_report(lab, clock.now, "2026-12")
    grants = ledger(lab.db, GRANT)
    assert [(g.month, g.amount_cents, g.key) for g in grants] == [
        ("2026-11", 2_500_000, "grant:lab:2026-11"),
        ("2026-12", 2_500_000, "grant:lab:2026-12"),
    ]


def test_report_per_month_and_project(lab, clock):
    lab = with_policy(lab, project_cap_cents=50_000)
    coredns = active(lab, clock)
    envoy = active(
        lab,
        clock,
        project="envoy",
        repo_url="https://github.com/envoyproxy/envoy",
        plan="c1.xlarge.x86",
        count=1,
        duration=timedelta(hours=10),
    )
    clock.advance(hours=5, minutes=30)
    report = credit_report(lab, clock.now)
    # coredns: 3 x 40c, running since 09:02:30 -> 6 started hours by 14:35; 49 planned.
    # envoy: 1 x 175c, running since 09:05 -> 6 started hours by 14:35; 11 planned.
    assert report.month == "2026-11"
    by_name = {p.name: p for p in report.projects}
    assert (by_name["coredns"].spent, by_name["coredns"].committed) == (3 * 40 * 6, 3 * 40 * 43)
    assert (by_name["envoy"].spent, by_name["envoy"].committed) == (175 * 6, 175 * 5)
    assert by_name["envoy"].available == 50_000 - 175 * 11
    assert report.lab.spent == sum(p.spent for p in report.projects)
    assert report.lab.committed == sum(p.committed for p in report.projects)
    assert report.lab.granted == report.lab.spent + report.lab.committed + report.lab.available
    assert report.burn_per_day == (3 * 40 + 175) * 24
    text = report.text()
    assert "Credit for 2026-11:" in text
    assert "  lab: granted $25,000.00, spent $17.70, committed $60.35" in text
    assert "envoy: granted $500.00" in text
    assert {coredns, envoy} == {1, 2}
    assert credit_report(lab, clock.now, "2026-12").lab.spent == 0


def test_early_release_refunds_exactly_what_was_committed(lab, clock):
    lease_id = active(lab, clock)
    clock.advance(hours=10, minutes=15)
    before = credit_report(lab, clock.now).lab
    assert before.spent == 3 * 40 * 11
    assert before.committed == 3 * 40 * (49 - 11)
    release(lab, OWNER, lease_id, clock.now)
    after = credit_report(lab, clock.now).lab
    assert after.spent == before.spent
    assert after.committed == 0
    assert after.available == before.available + before.committed
    assert all(s.deleted_at == clock.now for s in servers(lab.db, lease_id))
    # Nothing more is billed later.
    clock.advance(days=3)
    assert credit_report(lab, clock.now).lab.spent == before.spent


def test_an_approved_lease_commits_before_its_servers_bill(lab, clock):
    approved(lab, clock)
    report = credit_report(lab, clock.now)
    assert (report.lab.spent, report.lab.committed) == (0, 3 * 40 * 49)


def test_books_exclude_a_lease_and_filter_by_project(lab, clock):
    lease_id = approved(lab, clock)
    with lab.db.write() as session:
        all_books = books(session, ["2026-11"], lab.policy, clock.now)["2026-11"]
        without = books(session, ["2026-11"], lab.policy, clock.now, exclude_lease=lease_id)
        other = books(session, ["2026-11"], lab.policy, clock.now, project="envoy")
    assert all_books.committed == 5880
    assert without["2026-11"].committed == 0
    assert other["2026-11"].committed == 0


def test_credit_alerts_go_to_admins_once_per_threshold(lab, clock):
    lab = with_policy(lab, monthly_credit_cents=7000)  # $70: the $58.80 lease is 84%
    active(lab, clock)
    sweep(lab, clock.now)
    sweep(lab, clock.advance(minutes=1))
    alerts = [m for m in lab.notifier.messages if m.data.get("alert") == "credit"]
    assert [m.data["percent"] for m in alerts] == [80]
    assert alerts[0].text.startswith("2026-11: 80% of the lab's credit is spent or committed")


# The audit export -------------------------------------------------------------------------


def test_audit_export_csv_and_json(lab, clock):
    lease_id = active(lab, clock)
    release(lab, "U0NOBODY", lease_id, clock.now)
    events = audit_events(lab)
    rows = json.loads(audit_export(events, "json"))
    assert [r["action"] for r in rows][:3] == ["request", "approve", "provision"]
    refused = [r for r in rows if r["outcome"] == "refused"]
    assert refused[0]["actor"] == "U0NOBODY"
    assert (
        "only its owner, a co-owner or an admin can release it"
        in json.loads(refused[0]["details"])["reason"]
    )
    table = list(csv.DictReader(io.StringIO(audit_export(events, "csv"))))
    assert [r["action"] for r in table] == [r["action"] for r in rows]
    assert table[0]["at"] == "2026-11-02T09:00:00+00:00"
    only = audit_events(lab, lease_id=lease_id, limit=2)
    assert [e.action for e in only] == ["request", "approve"]
