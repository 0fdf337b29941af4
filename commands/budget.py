"""Books: the one check of a lease's money against every limit it must fit.

Approving a request and lengthening a lease both ask the same question of the books: would the
lease, as it would then stand, take its donor's month past its credit, its project past the
monthly cap (across the donors), a foundation or member past the share of the donor's month
kept for other open-source projects, or anyone past what the donor earmarks for others? One
function answers for both, so neither can skip a limit; routing asks it of each candidate
donor (with `lease.donor` set to it); the caller turns the answer into its sentence, or, with
an admin's override, records what each limit lacks in the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlmodel import Session

from commands.credit import project_shortfalls, record_override, shortfall_words, shortfalls
from commands.earmarks import earmark_shortfalls, earmark_words, record_earmark_override
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
    EARMARK = "earmark"  # the shares of the donor's month kept for named projects or classes


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
    Limit.EARMARK: Code.EARMARK,
}


def over_budget(session: Session, lease: Lease, policy: Policy, now: datetime) -> list[Shortfall]:
    """The limits `lease` as it now stands (a request, or a lease with its extension applied),
    billed to `lease.donor`, would pass, in the order a refusal names them; empty when it fits.
    Call inside the write transaction that changes the lease: the check locks the months it
    reads, so nobody commits money between the check and the change (checking several
    candidate donors in one transaction locks them once)."""
    found = [
        Shortfall(Limit.LAB, shortfalls(session, lease, policy, now)),
        Shortfall(Limit.PROJECT, project_shortfalls(session, lease, policy, now)),
        Shortfall(Limit.RESERVE, reserve_shortfalls(session, lease, policy, now)),
        Shortfall(Limit.EARMARK, earmark_shortfalls(session, lease, policy, now)),
    ]
    return [short for short in found if short.months]


def past_words(short: Shortfall, lease: Lease, policy: Policy, *, after_donor: bool = False) -> str:
    """What the lease would do, to follow "would": `take coredns past its monthly cap: 2026-11
    by $7.60`. After the donor's own name ("cncf would ..."), its credit is "its"."""
    if short.limit == Limit.LAB:
        whose = "its" if after_donor else f"{lease.donor}'s"
        whose = "the lab's" if len(policy.donors()) == 1 else whose
        return f"over-commit {whose} credit: {shortfall_words(short.months)}"
    if short.limit == Limit.PROJECT:
        return f"take {lease.project} past its monthly cap: {shortfall_words(short.months)}"
    if short.limit == Limit.EARMARK:
        return earmark_words(short.months, lease, policy)
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
        elif short.limit == Limit.EARMARK:
            record_earmark_override(session, lease, short.months, actor, reason, now)
        else:
            record_reserve_override(session, lease, short.months, actor, reason, now)
