"""Who may decide about a month's money at a time.

Approving or extending a lease reads the month's books and then commits more of the month. Two
such decisions about different leases must not both read the books before either writes, or
together they over-commit the month. So each holds every month the lease would bill in until it
commits: an advisory lock per month on PostgreSQL (cheaper than a row per month, and it needs no
row to exist yet), SQLite's one write lock otherwise. Decisions about different months do not
wait for each other.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from commands.credit import planned_cost
from commands.policy import Policy
from storage.locks import serialize
from storage.models import Lease


def hold_months(session: Session, lease: Lease, policy: Policy, now: datetime) -> None:
    """Call before reading the books that decide about `lease`."""
    serialize(session, *(f"credit:{month}" for month in planned_cost(lease, policy, now)))
