"""Lease life: the admins told once when a donor's month passes each alert threshold.

`Policy.credit_alerts` lists the thresholds (percent of the donor's month's grant spent or
committed); each goes out once per donor and month (a marker), checked by whichever replica
claims the minute.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from commands.billing import format_cents, month_key
from commands.credit import (
    books,
    burn_rate_cents_per_day,
    ensure_grant,
    ledger_totals,
    runs_out_at,
    used_cents,
)
from commands.facts import when
from commands.lab import Lab
from commands.markers import once
from commands.notices import ADMIN, Kind, enqueue
from storage.claims import claim_period

CREDIT_ALERTS = "credit-alerts"
CREDIT_CHECK = timedelta(minutes=1)


def credit_alerts(lab: Lab, now: datetime) -> None:
    """Tell admins once when a donor's month passes each threshold of its credit (the
    markers). The check reads each donor's month's totals, once per CREDIT_CHECK across
    replicas (the claim); the full books are read only for an alert that goes out."""
    month = month_key(now)
    donors = lab.policy.donors()
    with lab.db.write() as session:
        if not claim_period(session, CREDIT_ALERTS, lab.replica, now, CREDIT_CHECK):
            return
        ensure_grant(session, month, lab.policy, now)
        for donor in donors:
            granted, _ = ledger_totals(session, month, donor=donor.name)
            if granted <= 0:
                continue
            used = used_cents(session, [month], now, donor=donor.name)[month] * 100 // granted
            crossed = [
                pct
                for pct in lab.policy.credit_alerts
                if used >= pct and once(session, f"credit-alert:{donor.name}:{month}:{pct}", now)
            ]
            if not crossed:
                continue
            book = books(session, [month], lab.policy, now, donor=donor.name)[month]
            burn = burn_rate_cents_per_day(session, now, donor.name)
            out = runs_out_at(book, burn, now)
            whose = "the lab's" if len(donors) == 1 else f"{donor.name}'s"
            for pct in crossed:
                enqueue(
                    session,
                    Kind.ADMIN_ALERT,
                    ADMIN,
                    f"{month}: {pct}% of {whose} credit is spent or committed "
                    f"({format_cents(book.spent + book.committed)} of "
                    f"{format_cents(book.granted)}); "
                    f"burning {format_cents(burn)}/day"
                    + (f", runs out {when(out)}." if out else "."),
                    now,
                    alert="credit",
                    percent=pct,
                    donor=donor.name,
                )
