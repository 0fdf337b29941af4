"""The tables. Money is integer cents, time is aware UTC, every sweep deadline is indexed.

A request *is* a lease in state `pending`; `due_at` is the one deadline the sweep looks up: the
next moment the lease needs the sweep (a decision deadline, a poll, a reminder, expiry, a delete
retry). Terminal leases have no `due_at`, so the sweep's cost follows the work that is due.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.statuses import ExtensionState, ServerState


def per_metro(metro: str, count: int, metro_counts: str) -> dict[str, int]:
    """How many servers a lease of these columns holds in each metro, in the order asked."""
    if not metro_counts:
        return {metro: count}
    pairs = (part.split(":") for part in metro_counts.split(","))
    return {name: int(number) for name, number in pairs}


class Lease(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    state: str = Field(index=True)
    version: int = 0
    owner: str = Field(index=True)
    project: str = Field(index=True)
    repo_url: str
    purpose: str
    plan: str
    metro: str
    os: str
    count: int
    duration_s: int
    extended_s: int = 0
    ssh_key: str = ""  # the keys the request names, one a line: a public key, or SHA256:... (saved)
    allow_partial: bool = False
    hourly_cents: int
    created_at: datetime
    decide_by: datetime | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str = ""
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    ended_at: datetime | None = None
    due_at: datetime | None = Field(default=None, index=True)
    backstop_at: datetime | None = None
    writeup_url: str | None = None
    flagged: str = ""
    claimed_by: str | None = None  # the replica stepping it now (storage.claims)
    claimed_until: datetime | None = None
    # The lab's process (issue 11). `applicant_class` is the class the lease ranks and is
    # budgeted as: the claimed class once matched to the configured lists, else "other".
    applicant_class: str = Field(default="other", index=True)
    claimed_class: str = "other"
    member_org: str = ""
    class_note: str = ""  # why a claim could not be matched; shown to reviewers
    repo_check: str = ""  # what the forge said, for people; "" while the check is pending
    repo_ok: bool | None = None  # public, not archived, OSI-approved; None while pending
    repo_check_at: datetime | None = Field(default=None, index=True)  # next forge attempt
    writeup_remind_at: datetime | None = Field(default=None, index=True)
    # Who pays (commands.donors): proposed when requested, confirmed on approval. "lab" is the
    # one donor of a lab configured from the environment alone (commands.donors.FIRST_DONOR).
    donor: str = Field(default="lab", index=True)
    # Booking ahead (issue 22): the start the requester asked for, None for "as soon as approved".
    book_start: datetime | None = Field(default=None, index=True)
    # Several metros (issue 22): "ams1:2,ewr1:2" when the lease spans metros, "" for `count`
    # servers in `metro`. Read it through per_metro(), never by hand.
    metro_counts: str = ""

    def per_metro(self) -> dict[str, int]:
        """How many servers the lease holds in each metro, in the order they were asked for."""
        return per_metro(self.metro, self.count, self.metro_counts)

    def spread(self, counts: dict[str, int]) -> None:
        """Write how many servers the lease holds in each metro (in the order asked): `metro`
        becomes the first, `count` the total, and `metro_counts` is kept only for several."""
        self.metro = next(iter(counts))
        self.count = sum(counts.values())
        several = len(counts) > 1
        self.metro_counts = ",".join(f"{m}:{n}" for m, n in counts.items()) if several else ""


class CapacityDay(SQLModel, table=True):
    """The capacity calendar's index (issue 22): a row for each UTC day a live lease's servers
    of `plan` in `metro` may be held on (`day` "2026-12-14"), or one row with `day` "" while its
    start is not known (approved to start as soon as it is provisioned). The books of servers
    read the rows of a plan, a metro and a few days by the key's prefix and take each lease's
    exact window from the lease itself, so a check costs what overlaps it, not the calendar."""

    plan: str = Field(primary_key=True)
    metro: str = Field(primary_key=True)
    day: str = Field(primary_key=True)
    lease_id: int = Field(foreign_key="lease.id", primary_key=True, index=True)


class PendingExtension(SQLModel, table=True):
    """An extension beyond policy, waiting for a reviewer."""

    id: int | None = Field(default=None, primary_key=True)
    lease_id: int = Field(foreign_key="lease.id", index=True)
    state: str = ExtensionState.PENDING
    seconds: int
    requested_by: str
    requested_at: datetime
    decided_by: str | None = None
    reason: str = ""


class Server(SQLModel, table=True):
    """One provider device of a lease. `state` is ours (storage.statuses.ServerState; its
    transitions are in commands/states.py), not the provider's."""

    id: int | None = Field(default=None, primary_key=True)
    lease_id: int = Field(foreign_key="lease.id", index=True)
    hostname: str
    plan: str
    metro: str
    state: str = ServerState.PENDING
    provider_id: str | None = Field(default=None, index=True)
    ips: str = ""
    hourly_cents: int
    active_at: datetime | None = Field(default=None, index=True)
    deleted_at: datetime | None = Field(default=None, index=True)
    create_attempts: int = 0
    delete_attempts: int = 0
    retry_at: datetime | None = None
    last_error: str = ""


class ServerKeys(SQLModel, table=True):
    """The SSH keys a server was created with (fingerprints, space-separated), written when its
    create is recorded: what the ready DM reports, whatever the saved keys are by then."""

    server_id: int = Field(foreign_key="server.id", primary_key=True)
    fingerprints: str = ""


class SshKey(SQLModel, table=True):
    """A person's public SSH key, saved once and put on every server they own or co-own.
    Public keys are not secrets; a private key never gets this far."""

    __table_args__ = (UniqueConstraint("user", "fingerprint"),)

    id: int | None = Field(default=None, primary_key=True)
    user: str = Field(index=True)
    key: str
    fingerprint: str
    source: str = "pasted"  # or "github:LOGIN", "gitlab:LOGIN"
    added_at: datetime


class CoOwner(SQLModel, table=True):
    """Someone who shares a lease with its owner: gets its DMs, may extend or release it, and
    has their saved keys put on the servers created for it."""

    lease_id: int = Field(foreign_key="lease.id", primary_key=True)
    user: str = Field(primary_key=True, index=True)
    added_by: str
    added_at: datetime


class ServerSpend(SQLModel, table=True):
    """What a server billed in a month, written once when it is confirmed gone. The books sum
    these in SQL and compute only the servers still running, so reading a month's money costs
    what is live, not the lab's whole history."""

    server_id: int = Field(foreign_key="server.id", primary_key=True)
    month: str = Field(primary_key=True, index=True)
    lease_id: int = Field(index=True)
    project: str = Field(index=True)
    cents: int
    donor: str = Field(default="lab", index=True)  # the lease's donor, who paid


class CreditMonth(SQLModel, table=True):
    """A month's running totals per donor: the donor's month (`project` and `applicant_class`
    ''), and each project's within it, per applicant class (a donor's earmark may name both):
    what servers now gone billed (`settled`) and what live leases hold (`held`). Every change
    of a hold or a settlement updates these rows in its own transaction, so the books read a
    few rows per month (the lab's figure sums its donors') instead of walking the live leases.
    The month's lock row (`donor`, `project` and `applicant_class` '', always zero) is what
    an approval locks before it checks and writes, so competing approvals, whichever donors
    they bill, are decided one after the other (a project's cap spans the donors)."""

    # The key in this order: a donor's month, the lab's (its donors'), a project's across the
    # donors are each a few rows of the key's prefix, however many projects the month has.
    month: str = Field(primary_key=True)
    project: str = Field(primary_key=True)
    donor: str = Field(default="", primary_key=True)
    applicant_class: str = Field(default="", primary_key=True)
    settled: int = 0
    held: int = 0


class ClassMonth(SQLModel, table=True):
    """A month's running totals per applicant class (foundation, member, other), kept like
    `CreditMonth`'s per project and changed by the same writes, per donor: what the class's gone
    servers billed (`settled`) and what its live leases hold (`held`). The reserve kept for
    other open-source projects in each donor's month reads these few rows instead of summing
    the month's holds by class."""

    month: str = Field(primary_key=True)
    donor: str = Field(default="lab", primary_key=True)
    applicant_class: str = Field(primary_key=True)
    settled: int = 0
    held: int = 0


class CreditHold(SQLModel, table=True):
    """What a live lease may still bill in a month: its plan (servers x hourly price x started
    hours of its window plus grace) less what its servers already gone billed there. Written
    when it is approved, extended or becomes active; dropped when it ends. `exact_until`: until
    then the lease's running servers cannot bill past this hold; after it, the books reckon the
    lease exactly (None: never, the backstop stops billing first)."""

    lease_id: int = Field(foreign_key="lease.id", primary_key=True)
    month: str = Field(primary_key=True)
    project: str
    cents: int
    exact_until: datetime | None = Field(default=None, index=True)
    donor: str = "lab"  # the lease's donor, whose month it holds


class Meter(SQLModel, table=True):
    """A server that is billing: from `start_us` until it is confirmed gone, never past
    `stop_us` (its lease's provider backstop). Times are integer microseconds since the epoch,
    so SQL can count started hours. `held`: its lease is live and holds its cost; otherwise
    (the lease is being reclaimed) what it bills is counted as it goes."""

    # The books' sum over the running servers, by project, reads the index alone: no sort and
    # no lookup of each meter's row, which is most of its cost with thousands running.
    __table_args__ = (
        Index("ix_meter_project_billing", "project", "start_us", "stop_us", "hourly_cents"),
        Index("ix_meter_donor_billing", "donor", "project", "start_us", "stop_us", "hourly_cents"),
    )

    server_id: int = Field(foreign_key="server.id", primary_key=True)
    lease_id: int = Field(index=True)
    project: str
    hourly_cents: int
    start_us: int = Field(sa_type=BigInteger)
    stop_us: int | None = Field(default=None, sa_type=BigInteger)
    held: bool = Field(default=True, index=True)
    donor: str = "lab"  # the lease's donor, who pays what it bills


class LedgerEntry(SQLModel, table=True):
    """Grants, adjustments and overrides: who moved which donor's month's money and why. `key`
    makes each donor's automatic monthly grant exactly-once (`grant:DONOR:MONTH`)."""

    __table_args__ = (UniqueConstraint("key"),)

    id: int | None = Field(default=None, primary_key=True)
    month: str = Field(index=True)
    kind: str
    amount_cents: int
    actor: str
    reason: str
    lease_id: int | None = None
    project: str | None = Field(default=None, index=True)  # set: against that project's cap
    key: str | None = None
    created_at: datetime
    donor: str = Field(default="lab", index=True)


class ActivitySample(SQLModel, table=True):
    """What one source said about one server's use over an interval ending at `at` (issue 23):
    the server's own report (`source` "server"), or its provider's metrics ("cloudwatch",
    "packet"). A signal the source does not give is None, never 0: a missing number is "unknown",
    not "idle". `net_bytes` is in and out together over the `interval_s` seconds before `at`;
    `cpu_busy` is the busy share of all CPUs, 0.0 to 1.0."""

    __table_args__ = (Index("ix_activitysample_server_at", "server_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    server_id: int = Field(foreign_key="server.id")
    lease_id: int = Field(index=True)
    at: datetime
    source: str
    interval_s: int
    cpu_busy: float | None = None
    load_1m: float | None = None
    net_bytes: int | None = Field(default=None, sa_type=BigInteger)
    sessions: int | None = None


class IdleWatch(SQLModel, table=True):
    """Where a lease stands on being idle (issue 23, commands/idle.py): when the sweep next
    looks (`check_at`, None once the lease is no longer running), and this round's
    question: when its people were asked (`asked_at`, with `idle_since` as the DM said it),
    when the reviewers were told, until when its people said they still use it. `round`
    counts the questions; a button names its round, so a click on an older one is stale.
    Armed by the samples themselves: the sweep reads the samples written since the last
    `sample_id` it saw (the row of lease 0 holds that watermark)."""

    lease_id: int = Field(primary_key=True)
    check_at: datetime | None = Field(default=None, index=True)
    round: int = 0
    idle_since: datetime | None = None
    asked_at: datetime | None = None
    escalated_at: datetime | None = None
    snoozed_until: datetime | None = None
    sample_id: int = 0
    claimed_by: str | None = None
    claimed_until: datetime | None = None


class IdleSpan(SQLModel, table=True):
    """A stretch of time a server was idle (commands/idle.py), from the start of its quiet to
    the latest sample seen, written as the sweep looks: what /metrics and the public report
    count as idle server-hours, per project."""

    server_id: int = Field(foreign_key="server.id", primary_key=True)
    start: datetime = Field(primary_key=True)
    end: datetime = Field(index=True)
    lease_id: int = Field(index=True)
    project: str


class ActivityToken(SQLModel, table=True):
    """The hash of the token a server reports its activity with (issue 23): SHA-256 of a random
    token that only the server's user data carries, never the token itself. Issued again with
    each attempt to create the server, so the token of a create that was given up is dead."""

    server_id: int = Field(foreign_key="server.id", primary_key=True)
    token_hash: str = Field(unique=True, index=True)
    issued_at: datetime


class SentReminder(SQLModel, table=True):
    lease_id: int = Field(foreign_key="lease.id", primary_key=True)
    offset_s: int = Field(primary_key=True)
    sent_at: datetime


class AuditEvent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    actor: str
    action: str
    lease_id: int | None = Field(default=None, index=True)
    outcome: str = "ok"
    details: str = ""


class Notice(SQLModel, table=True):
    """The outbox: a message owed to someone, written in the same transaction as the state change
    it reports and delivered after the commit. Undelivered notices carry `retry_at`, so a Slack
    outage delays a message but never loses it. `key` (unique) keeps the same notice from being
    queued twice; `ref` is the sent message's reference (Slack's channel and `ts`), or, for an
    upload under way, the file ids it got (`files:F1,F2,F3`). A deliverer claims an audience,
    not a notice (commands.notices), so one audience's notices go in order."""

    __table_args__ = (UniqueConstraint("key"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    lease_id: int | None = Field(default=None, index=True)
    audience: str
    payload: str = "{}"
    created_at: datetime
    retry_at: datetime | None = Field(default=None, index=True)
    attempts: int = 0
    delivered_at: datetime | None = None
    ref: str | None = None
    last_error: str = ""
    key: str | None = None


class Pace(SQLModel, table=True):
    """A rate-limited way out of the outbox (a Slack channel, a Web API method), shared by every
    replica: the messages sent on it so far, spaced at its rate, book it until `booked_until`.
    A message may go at `now` while `booked_until` is at most a burst's worth of spacing ahead
    of `now` (the generic cell rate algorithm); a 429 books it until Slack's Retry-After."""

    lane: str = Field(primary_key=True)
    booked_until: datetime


class Orphan(SQLModel, table=True):
    """A tagged device that belongs to no live lease, with when we first saw it."""

    provider_id: str = Field(primary_key=True)
    hostname: str
    first_seen: datetime
    deleted_at: datetime | None = None
    donor: str = Field(default="lab")  # whose provider account it was found in


class Marker(SQLModel, table=True):
    """Small named timestamps and flags the engine keeps across restarts (last reconcile,
    credit alerts already sent)."""

    key: str = Field(primary_key=True)
    at: datetime


class Claim(SQLModel, table=True):
    """Named work that one replica at a time does, once per period: the reconcile pass, the
    credit alerts (storage.claims)."""

    name: str = Field(primary_key=True)
    claimed_by: str | None = None
    claimed_until: datetime | None = None


class InboxItem(SQLModel, table=True):
    """What Slack sent that labbot acknowledged: kept before the ack by the web process, done
    by a worker (bot.inbox, bot.work). `key` is what Slack sent that names the delivery (an
    event's id, a trigger's id, else a hash of the verified body), so a delivery Slack repeats
    is kept once; `done_at` is set in the same transaction as the work's first write, so a
    second run is refused as done. Done rows stay a day for that, then the sweep prunes them."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True)
    received_at: datetime
    body: str  # the verified payload as JSON, without Slack's verification token
    attempts: int = 0
    claimed_by: str | None = None
    claimed_until: datetime | None = None
    done_at: datetime | None = Field(default=None, index=True)


class SimDevice(SQLModel, table=True):
    """The simulated provider's devices, kept in the same database so they survive a restart."""

    id: str = Field(primary_key=True)
    hostname: str
    plan: str
    metro: str
    os: str
    tags: str
    created_at: datetime
    ready_at: datetime
    termination_time: datetime | None = None
    fails: bool = False
    deleted_at: datetime | None = Field(default=None, index=True)
    delete_failures_left: int = 0
