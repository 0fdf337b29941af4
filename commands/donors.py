"""Rules: the lab's donors and their terms, as pure decisions.

A foundation's credit comes from several donors at once, each a provider account with its own
monthly grant, its own dates and its own terms (the plans or architectures it pays for, the
applicant classes it serves, shares of its month earmarked for named projects or classes, its
own reserved share). Every lease is billed to exactly one donor (`Lease.donor`); these
functions say whether a donor may pay for a lease at all. The money (what is left in each of
its months) is the books' to say, and routing (which donor a request goes to) is above both.

A lab configured from the environment alone has one donor, named `FIRST_DONOR`: the donor that
everything a database held before donors existed belongs to (migration 0009).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from commands.billing import month_bounds

FIRST_DONOR = "lab"
PROVIDERS = ("simulated", "packet", "ec2")

# How many servers of a plan may be held in a metro at once: (plan, metro, servers), the
# operator's `[capacity]` (the lab's, whichever donor pays) or a donor's own. No entry: no limit.
Capacity = tuple[tuple[str, str, int], ...]


def capacity_of(capacity: Capacity, plan: str, metro: str) -> int | None:
    """The limit `capacity` sets on `plan` in `metro`, or None when it sets none."""
    return next((n for p, m, n in capacity if p == plan and m == metro), None)


@dataclass(frozen=True)
class Earmark:
    """A share of a donor's month (basis points) kept for the named projects and classes: other
    leases may not take it."""

    share: int
    projects: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()

    def serves(self, project: str, applicant_class: str) -> bool:
        return project.lower() in self.projects or applicant_class in self.classes


@dataclass(frozen=True)
class Donor:
    """One donor's account and terms. An empty set of plans, architectures or classes means
    every one. `starts_at`/`ends_at` bound the time its credit pays for (None: unbounded;
    `ends_at` is exclusive). `reserved_share` is its month's share kept for other open-source
    projects (basis points; None: the lab's policy)."""

    name: str
    provider: str = "simulated"
    monthly_grant_cents: int = 2_500_000
    grants_by_month: tuple[tuple[str, int], ...] = ()  # ("2026-12", cents): that month's amount
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    plans: frozenset[str] = frozenset()
    architectures: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()
    earmarks: tuple[Earmark, ...] = ()
    reserved_share: int | None = None
    capacity: Capacity = ()  # the servers its account may hold at once, per plan and metro

    def grant_cents(self, month: str) -> int:
        """What the donor gives in `month`: its amount for that month if the configuration
        names one, else its monthly grant while its credit runs, else nothing."""
        named = dict(self.grants_by_month)
        if month in named:
            return named[month]
        first, after = month_bounds(month)
        if self.starts_at is not None and after <= self.starts_at:
            return 0
        if self.ends_at is not None and first >= self.ends_at:
            return 0
        return self.monthly_grant_cents


def term_problem(donor: Donor, plan: str, arch: str, applicant_class: str) -> str | None:
    """Which of the donor's terms refuses a lease of `plan` (of architecture `arch`) for an
    applicant of `applicant_class`, in words, or None when its terms allow it."""
    if donor.plans and plan not in donor.plans:
        return f"{donor.name} pays only for {', '.join(sorted(donor.plans))}"
    if donor.architectures and arch not in donor.architectures:
        return f"{donor.name} pays only for {', '.join(sorted(donor.architectures))} servers"
    if donor.classes and applicant_class not in donor.classes:
        return f"{donor.name} serves only {', '.join(sorted(donor.classes))} projects"
    return None


def window_stop(donor: Donor, start: datetime, end: datetime) -> datetime | None:
    """Where the donor's credit stops covering servers running from `start` to `end` (its start
    or its end, for the callers to put in words in the reader's zone), or None when it covers
    them all."""
    if donor.starts_at is not None and start < donor.starts_at:
        return donor.starts_at
    if donor.ends_at is not None and end > donor.ends_at:
        return donor.ends_at
    return None
