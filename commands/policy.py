"""Rules: the lab's rules as data, and the pure checks that apply them to a request.

Nothing here touches the database or Slack: the same checks answer the slash command, the modal
(field by field) and the CLI, and hypothesis can drive them directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field

from commands.donors import FIRST_DONOR, Capacity, Donor
from commands.durations import format_duration
from commands.process import CLASSES, OTHER, class_problem
from commands.pubkeys import MAX_KEY_CHARS, KeyProblem, read_key
from metal.forge import parse_repository
from metal.provider import Catalog

MAX_CO_OWNERS = 10
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

_REPO = re.compile(r"https?://[^\s/]+\.[^\s/]+/\S+")
_PROJECT = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}", re.IGNORECASE)


# The longest text a person may give, per field: stated in the form (Slack enforces it there)
# and checked by every use case (the slash command and the CLI have no form).
LIMITS = {
    "project": 63,
    "repo_url": 200,
    "purpose": 500,
    "ssh_key": MAX_KEY_CHARS,
    "reason": 500,
    "url": 300,
    "org": 100,
    "applicant": 20,
}
_NAMES = {
    "project": "the project name",
    "repo_url": "the repository URL",
    "purpose": "the purpose",
    "ssh_key": "the SSH key",
    "reason": "the reason",
    "url": "the write-up link",
    "org": "the organization's name",
    "applicant": "the class",
}


def too_long(name: str, text: str) -> str | None:
    """Why `text` is too long for field `name` (naming the limit), or None."""
    if len(text) <= LIMITS[name]:
        return None
    return f"{_NAMES[name]} is {len(text):,} characters; the limit is {LIMITS[name]:,}"


@dataclass(frozen=True)
class Policy:
    monthly_credit_cents: int = 2_500_000
    max_servers: int = 100
    min_lease: timedelta = HOUR
    max_lease: timedelta = 14 * DAY
    max_total: timedelta = 30 * DAY
    grace: timedelta = HOUR
    reminders: tuple[timedelta, ...] = (24 * HOUR, HOUR)
    pending_per_user: int = 3
    project_cap_cents: int | None = None
    decide_within: timedelta = 3 * DAY
    delete_attempts: int = 5
    create_attempts: int = 3
    provision_timeout: timedelta = 2 * HOUR
    provision_poll: timedelta = timedelta(seconds=30)  # how often a provisioning lease is asked
    orphan_grace: timedelta = HOUR
    reconcile_every: timedelta = timedelta(minutes=10)
    # How long a replica may hold a due lease before another takes it over (storage.claims).
    claim_for: timedelta = timedelta(minutes=2)
    provider_concurrency: int = 8
    # Leases the sweep steps at once (each step's own provider calls run beside the others').
    sweep_concurrency: int = 8
    credit_alerts: tuple[int, ...] = (80, 100)
    default_os: str = ""  # empty: the provider catalog's own default (Catalog.default_os)
    # The lab's process: the foundation's projects (name, maturity) and member organizations,
    # the order classes are reviewed in, the share of each month kept for other open-source
    # projects (basis points: 2000 is 20%), and when to remind an owner of the write-up.
    foundation_projects: tuple[tuple[str, str], ...] = ()
    members: tuple[str, ...] = ()
    rank: tuple[str, ...] = CLASSES
    reserved_share: int = 2000
    writeup_after: timedelta = 14 * DAY

    @cached_property
    def maturities(self) -> dict[str, str]:
        """Each foundation project's maturity, by name: built once per policy, since the queue
        and the report label every lease with it. Read it; never change it."""
        return dict(self.foundation_projects)

    backstop_margin: timedelta = DAY
    # Idle servers (commands/idle.py, docs/idle.md): below these for `idle_after`, a server is
    # idle (CPU busy share 0..1; network bytes in and out per hour of samples; no session).
    # Its people are asked, quiet for `idle_snooze` if they still use it; the reviewers are
    # told `idle_escalate` after an unanswered question; `idle_reclaim` (None: never) after it,
    # a lease still idle is reclaimed early.
    idle_cpu: float = 0.05
    idle_network: int = 10_000_000
    idle_after: timedelta = 6 * HOUR
    idle_snooze: timedelta = DAY
    idle_escalate: timedelta = 12 * HOUR
    idle_reclaim: timedelta | None = None
    # Booking ahead (issue 22): how far ahead a start may be, how long before it the servers
    # are created (billed from then), and how many bookings ahead a project may hold at once.
    book_ahead: timedelta = 60 * DAY
    lead_time: timedelta = timedelta(minutes=15)
    bookings_per_project: int = 3
    # Where the servers report their activity (LABBOT_PUBLIC_URL + /activity); empty: they do
    # not (Socket Mode, no public URL, or LABBOT_ACTIVITY_REPORTS=off). commands.activity.
    activity_url: str = ""
    allow_self_approval: bool = False
    # Who gives the credit, in the order the configuration names them (commands.donors). None
    # named: one donor, FIRST_DONOR, granting `monthly_credit_cents` every month.
    donor_list: tuple[Donor, ...] = ()
    # The servers the lab may hold at once per plan and metro, whichever donor pays
    # (commands.capacity; each donor may set its own too). Empty: no limit.
    capacity: Capacity = ()

    def donors(self) -> tuple[Donor, ...]:
        return self.donor_list or (
            Donor(FIRST_DONOR, monthly_grant_cents=self.monthly_credit_cents),
        )

    def donor(self, name: str) -> Donor | None:
        return next((donor for donor in self.donors() if donor.name == name), None)

    def backstop(self, ends_at: datetime) -> datetime:
        """When the provider may delete a lease's servers on its own, should labbot be down:
        the end plus grace plus a margin. Extensions move it before they take effect."""
        return ends_at + self.grace + self.backstop_margin

    def prepare_from(self, book_start: datetime) -> datetime:
        """When a booking's servers are created: the lead time before its start, so they are
        ready when it opens (and bill from then)."""
        return book_start - self.lead_time


def default_os(policy: Policy, catalog: Catalog) -> str:
    """The OS of a request that names none: the operator's choice, else the provider's."""
    return policy.default_os or catalog.default_os()


def default_os_problem(policy: Policy, catalog: Catalog) -> str | None:
    """A default_os the provider's catalog does not offer, in one sentence (checked at start-up,
    so that no request form offers what no server can boot)."""
    if not policy.default_os or not catalog.oses or policy.default_os in catalog.oses:
        return None
    return (
        f"default_os '{policy.default_os}' is not offered by the provider's catalog; choose one "
        f"of {', '.join(catalog.oses)}, or leave it out for {catalog.default_os()}"
    )


class Approver(Enum):
    """Who is approving a request, as far as the rule on self-approval cares."""

    ANOTHER = "another reviewer"
    SELF_ALLOWED = "its requester, as the operator allows"
    SELF_REFUSED = "its requester"


def approver(policy: Policy, requester: str, reviewer: str) -> Approver:
    """A reviewer does not approve their own request unless the operator allows it
    (LABBOT_ALLOW_SELF_APPROVAL); then the approval is marked as such."""
    if requester != reviewer:
        return Approver.ANOTHER
    return Approver.SELF_ALLOWED if policy.allow_self_approval else Approver.SELF_REFUSED


def self_approval_refused(what: str) -> str:
    return (
        f"You asked for {what} yourself, so another reviewer must approve it: ask in the "
        "review channel (or an admin)."
    )


SELF_MARK = " (their own request)"


@dataclass(frozen=True)
class Roles:
    reviewers: frozenset[str] = field(default_factory=frozenset)
    admins: frozenset[str] = field(default_factory=frozenset)

    def is_admin(self, user: str) -> bool:
        return user in self.admins or user == "system"

    def is_reviewer(self, user: str) -> bool:
        return user in self.reviewers or self.is_admin(user)


class RequestInput(BaseModel):
    """What a requester fills in. Validated here, not by the table model (table models do not
    validate on construction)."""

    model_config = ConfigDict(str_strip_whitespace=True)

    project: str = ""
    repo_url: str = ""
    purpose: str = ""
    plan: str = ""
    metro: str = ""
    os: str = ""
    count: int = 1
    duration: timedelta = Field(default=48 * HOUR)
    ssh_key: str = ""
    allow_partial: bool = False
    applicant: str = OTHER  # who is asking: foundation, member or other
    org: str = ""  # the member organization, when applicant is member
    co_owners: tuple[str, ...] = ()  # Slack user ids
    saved_keys: tuple[str, ...] | None = None  # fingerprints checked in the form; None: not asked
    donor: str = ""  # who pays (`donor=NAME`); empty: labbot proposes one (commands.routing)
    # A booking (commands.starts): the start as typed (`from=`) or picked in the form (an aware
    # moment), an end as typed (`until=`, which then replaces `duration`), and the requester's
    # Slack time zone the typed ones are read in. No start: as soon as approved.
    start: str = ""
    start_at: datetime | None = None
    end: str = ""
    zone: str = "UTC"
    # Several metros (commands.metros): (metro, count) in the order asked, `metro` the first and
    # `count` the total; empty for `count` servers in `metro`. Read through per_metro().
    metro_counts: tuple[tuple[str, int], ...] = ()

    def per_metro(self) -> dict[str, int]:
        return dict(self.metro_counts) if self.metro_counts else {self.metro: self.count}


def is_link(text: str) -> bool:
    return _REPO.fullmatch(text) is not None


def check_request(req: RequestInput, catalog: Catalog, policy: Policy) -> dict[str, str]:
    """Field name -> what is wrong with it and what would be accepted. Empty when acceptable."""
    errors = {
        name: problem
        for name in ("project", "repo_url", "purpose", "ssh_key", "org", "applicant")
        if (problem := too_long(name, getattr(req, name)))
    }
    if "project" not in errors and not _PROJECT.fullmatch(req.project):
        errors["project"] = (
            "give the project's name (letters, digits, dots, dashes), for example project=coredns"
        )
    if "repo_url" not in errors and not is_link(req.repo_url):
        errors["repo_url"] = (
            "give the project's open-source repository URL, for example "
            "repo=https://github.com/coredns/coredns"
        )
    if not req.purpose:
        errors["purpose"] = 'say in a few words what the servers are for, in quotes: "why"'
    if req.plan not in catalog.plans:
        errors["plan"] = f"unknown plan '{req.plan}'; choose one of {', '.join(catalog.plans)}"
    unknown = ", ".join(f"'{m[:40]}'" for m in req.per_metro() if m not in catalog.metros)
    if unknown:
        errors["metro"] = f"unknown metro {unknown}; choose one of {', '.join(catalog.metros)}"
    elif absent := not_offered(req, catalog):
        errors["metro"] = absent
    if req.os and catalog.oses and req.os not in catalog.oses:
        errors["os"] = f"unknown OS '{req.os}'; choose one of {', '.join(catalog.oses)}"
    if not 1 <= req.count <= policy.max_servers:
        across = " in all metros together" if req.metro_counts else ""
        errors["count"] = (
            f"{req.count} servers is outside policy; ask for 1 to {policy.max_servers}{across}"
        )
    if not policy.min_lease <= req.duration <= policy.max_lease:
        errors["duration"] = (
            f"{format_duration(req.duration)} is outside policy; ask for "
            f"{format_duration(policy.min_lease)} to {format_duration(policy.max_lease)}"
        )
    problem = class_problem(req.applicant, req.org)
    if "applicant" not in errors and "org" not in errors and problem:
        errors["applicant"] = problem
    if "repo_url" not in errors and parse_repository(req.repo_url) is None:
        errors["repo_url"] = (
            "labbot checks repositories on github.com and gitlab.com; give one like "
            "repo=https://github.com/coredns/coredns"
        )
    key = read_key(req.ssh_key) if req.ssh_key and "ssh_key" not in errors else None
    if isinstance(key, KeyProblem):
        errors["ssh_key"] = key.sentence[0].lower() + key.sentence[1:].rstrip(".")
    if req.donor and policy.donor(req.donor) is None:
        names = ", ".join(donor.name for donor in policy.donors())
        errors["donor"] = f"unknown donor '{req.donor[:40]}'; name one of {names}, or leave it out"
    if len(req.co_owners) > MAX_CO_OWNERS:
        errors["co_owners"] = f"name at most {MAX_CO_OWNERS} co-owners"
    return errors


def not_offered(req: RequestInput, catalog: Catalog) -> str | None:
    """The metros asked for where the catalog does not offer the plan, in one sentence naming
    them and where it is offered; None when it is offered in every one."""
    absent = [m for m in req.per_metro() if not catalog.plan_available(req.plan, m)]
    if not absent or req.plan not in catalog.plans:
        return None
    where = catalog.plans[req.plan].metros or tuple(catalog.metros)
    many = f" ({len(req.per_metro())} asked, {len(where)} offered)" if len(absent) > 1 else ""
    return (
        f"{req.plan} is not offered in {', '.join(absent)}{many}; it is offered in "
        f"{', '.join(where)}"
    )


def check_extension(current_total: timedelta, extra: timedelta, policy: Policy) -> str | None:
    """None when the extension is inside policy; otherwise why it needs a reviewer."""
    if current_total + extra > policy.max_total:
        return (
            f"the lease would last {format_duration(current_total + extra)} in all, beyond the "
            f"{format_duration(policy.max_total)} a lease may reach without a reviewer"
        )
    return None
