"""Books: the one check of a lease's money against every limit it must fit.

Approving a request and lengthening a lease both ask the same question of the books: would the
lease, as it would then stand, take a month past the lab's credit, its project past the monthly
cap, or a foundation or member past the share kept for other open-source projects? One function
answers for both, so neither can skip a limit; the caller turns the answer into its sentence,
or, with an admin's override, records what each limit lacks in the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlmodel import Session

from commands.credit import project_shortfalls, record_override, shortfall_words, shortfalls
from commands.lab import Code
from commands.policy import Policy
from commands.reserve import (
    eat_words,
    record_reserve_override,
    reserve_shortfalls,
    reserved_share,
)
from storage.models import Lease


class Limit(StrEnum):
    LAB = "lab"  # the lab's credit for the month
    PROJECT = "project"  # the project's monthly cap (LABBOT_PROJECT_CAP)
    RESERVE = "reserve"  # the share of the month kept for other open-source projects


@dataclass(frozen=True)
class Shortfall:
    limit: Limit
    months: dict[str, int]  # per month, the cents the lease would take past the limit

    @property
    def code(self) -> Code:
        """The code of a refusal that names this limit."""
        return _CODES[self.limit]


_CODES = {
    Limit.LAB: Code.OVER_BUDGET,
    Limit.PROJECT: Code.OVER_PROJECT_CAP,
    Limit.RESERVE: Code.RESERVE,
}


def over_budget(session: Session, lease: Lease, policy: Policy, now: datetime) -> list[Shortfall]:
    """The limits `lease` as it now stands (a request, or a lease with its extension applied)
    would pass, in the order a refusal names them; empty when it fits. Call inside the write
    transaction that changes the lease: the check locks the months it reads, so nobody commits
    money between the check and the change."""
    found = [
        Shortfall(Limit.LAB, shortfalls(session, lease, policy, now)),
        Shortfall(Limit.PROJECT, project_shortfalls(session, lease, policy, now)),
        Shortfall(Limit.RESERVE, reserve_shortfalls(session, lease, policy, now)),
    ]
    return [short for short in found if short.months]


def past_words(short: Shortfall, lease: Lease, policy: Policy) -> str:
    """What the lease would do, to follow "would": `take coredns past its monthly cap: 2026-11
    by $7.60`."""
    if short.limit == Limit.LAB:
        return f"over-commit the lab's credit: {shortfall_words(short.months)}"
    if short.limit == Limit.PROJECT:
        return f"take {lease.project} past its monthly cap: {shortfall_words(short.months)}"
    return eat_words(short.months, reserved_share(policy, lease.donor))


def record_overrides(
    session: Session,
    lease: Lease,
    over: list[Shortfall],
    actor: str,
    reason: str,
    now: datetime,
) -> None:
    """An admin's override takes the lease past every limit it passes: for each, one ledger row
    per month for what the limit lacks, with who and why (the lab's month, the project's cap,
    the reserve each counted apart)."""
    for short in over:
        if short.limit == Limit.LAB:
            record_override(session, lease.id, short.months, actor, reason, now, donor=lease.donor)
        elif short.limit == Limit.PROJECT:
            record_override(
                session,
                lease.id,
                short.months,
                actor,
                reason,
                now,
                project=lease.project,
                donor=lease.donor,
            )
        else:
            record_reserve_override(session, lease, short.months, actor, reason, now)
