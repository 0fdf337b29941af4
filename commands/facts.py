"""Kernel: how a lease is described to people: the facts every notice and listing carries."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Column

from commands.billing import format_cents
from commands.durations import format_duration
from commands.metros import metro_words
from commands.states import DESCRIPTIONS, State
from storage.models import Lease, Server, per_metro


class ListedLease(NamedTuple):
    """A lease read as the columns its listing line, its planned cost and a reviewer's view of it
    use, one plain row each: the queue shows every pending request, and whole `Lease` objects
    (a dozen timestamps each, every one converted) cost it several times as much to load. A
    named tuple, not a frozen dataclass: a thousand of them are built in a tenth of the time."""

    id: int
    state: str
    owner: str
    project: str
    purpose: str
    plan: str
    metro: str
    metro_counts: str
    count: int
    duration_s: int
    extended_s: int
    hourly_cents: int
    created_at: datetime
    decided_at: datetime | None
    starts_at: datetime | None
    ends_at: datetime | None
    book_start: datetime | None
    applicant_class: str
    claimed_class: str
    member_org: str
    class_note: str
    repo_check: str
    repo_check_at: datetime | None

    @classmethod
    def columns(cls) -> tuple[Column[Any], ...]:
        """The lease table's columns to select, in the order the tuple takes them: the table's,
        not the model's, so the rows are read without the ORM's loading (a third cheaper)."""
        table = Lease.__table__
        return tuple(table.c[name] for name in cls._fields)

    def per_metro(self) -> dict[str, int]:
        return per_metro(self.metro, self.count, self.metro_counts)


def quoted(text: str) -> str:
    """A person's words inside one of our sentences, inert. The sentences are written in
    Slack's message format (they carry `<@U…>` mentions on purpose), so the words are escaped
    the way that format escapes them: a purpose saying `<@U123>` or `<!channel>` is shown,
    never acted on."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def lease_facts(lease: Lease, estimate: int | None = None) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "id": lease.id,
        "state": lease.state,
        "owner": lease.owner,
        "project": lease.project,
        "repo_url": lease.repo_url,
        "purpose": lease.purpose,
        "plan": lease.plan,
        "metro": metro_words(lease.per_metro()),
        "os": lease.os,
        "count": lease.count,
        "duration": format_duration(lease.duration_s + lease.extended_s),
        "hourly": format_cents(lease.hourly_cents),
        "ends_at": lease.ends_at.isoformat() if lease.ends_at else None,
    }
    if estimate is not None:
        facts["estimate"] = format_cents(estimate)
    return facts


def shape(lease: Lease | ListedLease) -> str:
    """`3 x c1.small.x86 in ams1 for 48h`; across metros, `6 x c1.small.x86 in ams1 (4),
    ewr1 (2) for 48h`."""
    total = format_duration(lease.duration_s + lease.extended_s)
    return f"{lease.count} x {lease.plan} in {metro_words(lease.per_metro())} for {total}"


SLACK_DATE = "{date_short_pretty} {time}"  # "Dec 7, 2026 3:00 PM", in the reader's zone
DATE_TOKEN = re.compile(
    r"<!date\^(?P<unix>\d{1,11})\^\{date_short_pretty\} \{time\}"
    r"\|(?P<fallback>[A-Z][a-z]{2} \d{1,2}, \d{4} \d{2}:\d{2} UTC)>"
)


def when(at: datetime | None) -> str:
    """A time as labbot writes it for a person: Slack's date token, which each reader's Slack
    shows in their own zone, with the UTC fallback that Slack shows where it cannot (and that
    `utc_text` puts back for the CLI and every other reader that is not Slack). The one place
    that form is made."""
    if at is None:
        return "-"
    return f"<!date^{int(at.timestamp())}^{SLACK_DATE}|{in_utc(at)}>"


def in_utc(at: datetime) -> str:
    """`Dec 7, 2026 14:00 UTC`"""
    at = at.astimezone(UTC)
    return f"{at:%b} {at.day}, {at:%Y %H:%M} UTC"


def is_our_date(token: re.Match[str]) -> bool:
    """A DATE_TOKEN match that `when` wrote: its fallback is its own time in UTC."""
    return token["fallback"] == in_utc(datetime.fromtimestamp(int(token["unix"]), UTC))


def utc_text(text: str) -> str:
    """A sentence for a reader that is not Slack (the CLI, the demo's transcript, the audit
    export): each of labbot's date tokens as its UTC fallback."""
    return DATE_TOKEN.sub(lambda m: m["fallback"] if is_our_date(m) else m[0], text)


def time_left(lease: Lease | ListedLease, now: datetime) -> str:
    if lease.ends_at is None:
        return "-"
    left = lease.ends_at - now
    return f"{format_duration(left)} left" if left > timedelta(0) else "ended"


def one_line(lease: Lease | ListedLease, now: datetime) -> str:
    state = State(lease.state)
    left = (
        f", {time_left(lease, now)} (ends {when(lease.ends_at)})" if state == State.ACTIVE else ""
    )
    if lease.book_start and state in (State.PENDING, State.APPROVED):
        left = f", starts {when(lease.book_start)}"
    return f"#{lease.id} {lease.project}: {shape(lease)} — {state.value}{left}"


def describe(
    lease: Lease, servers: list[Server], now: datetime, co_owners: list[str] | None = None
) -> str:
    sharing = ", co-owners " + ", ".join(f"<@{u}>" for u in co_owners) if co_owners else ""
    lines = [
        f"Lease #{lease.id} for {lease.project} ({quoted(lease.repo_url)}), "
        f"owner <@{lease.owner}>{sharing}",
        f"{shape(lease)}, {lease.os}, {format_cents(lease.hourly_cents)}/h per server",
        f"State: {lease.state} ({DESCRIPTIONS[State(lease.state)]})",
        f"Purpose: {quoted(lease.purpose)}",
        f"Requested {when(lease.created_at)}"
        + (
            f"; decided by <@{lease.decided_by}> {when(lease.decided_at)}"
            if lease.decided_by
            else ""
        ),
    ]
    if lease.reason:
        lines.append(f"Reason: {quoted(lease.reason)}")
    if lease.book_start:
        lines.append(f"Booked to start {when(lease.book_start)}")
    if lease.starts_at:
        lines.append(
            f"Started {when(lease.starts_at)}, ends {when(lease.ends_at)} ({time_left(lease, now)})"
        )
    if lease.flagged:
        lines.append(f"Flagged: {lease.flagged}")
    if lease.writeup_url:
        lines.append(f"Write-up: {quoted(lease.writeup_url)}")
    order = {metro: n for n, metro in enumerate(lease.per_metro())}
    servers = sorted(servers, key=lambda s: order.get(s.metro, len(order)))
    lines += server_lines(servers, Counter(s.metro for s in servers))
    return "\n".join(lines)


def server_lines(
    listed: list[Server], counts: Mapping[str, int], notes: Mapping[int, str] | None = None
) -> list[str]:
    """A line per server, with its note (by server id) if it has one; across several metros
    (`counts`: the lease's servers in each), each metro's run of them under a line naming the
    metro and how many servers it has there."""
    lines: list[str] = []
    for n, server in enumerate(listed):
        if len(counts) > 1 and (n == 0 or listed[n - 1].metro != server.metro):
            lines.append(f"{server.metro}: {counts[server.metro]} server(s)")
        note = (notes or {}).get(server.id)
        lines.append(server_line(server) + (f"  {note}" if note else ""))
    return lines


def server_line(server: Server) -> str:
    """`  coredns-12-1 [active] 147.75.100.3`"""
    ips = f" {server.ips}" if server.ips else ""
    return f"  {server.hostname} [{server.state}]{ips}"


def servers_summary(servers: list[Server]) -> list[dict[str, str]]:
    """What a notice carries of each server: enough to log in, and to write the files."""
    return [
        {"hostname": s.hostname, "ips": s.ips, "state": s.state, "metro": s.metro, "plan": s.plan}
        for s in servers
    ]
