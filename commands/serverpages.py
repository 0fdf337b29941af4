"""Reads: a lease's servers a page at a time, as `/lab show ID [servers N]` and its Next and
Previous buttons show them.

A 500-server lease does not fit in one answer, so `show` answers with the lease and its first
page, and each page says which servers it shows of how many and how to reach the others. The
servers are those the lease has now (being created or running), metro by metro in the order the
metros were asked for, each metro's in the order of their names;
a server replaced after a failed create, deleted or vanished is counted, not listed. A page
asked for past the end, or a button from an answer the lease has changed since, gets a
sentence or the page that is there now, never an error.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from commands.coowners import co_owner_ids
from commands.facts import describe, server_lines, shape
from commands.lab import Code, Lab, Outcome, Refusal, not_found, refuse
from commands.states import ServerState
from commands.views import ADDRESSES_HIDDEN, lease_with_servers, may_see_addresses
from storage.models import Lease, Server

PAGE_SIZE = 50
# servers a lease has now: on their way up, or running
CURRENT = (ServerState.PENDING, ServerState.CREATING, ServerState.PROVISIONING, ServerState.ACTIVE)


@dataclass(frozen=True)
class Page:
    """One page of a lease's servers; `number` counts from 1."""

    lease_id: int
    number: int
    pages: int
    total: int

    @property
    def first(self) -> int:
        return (self.number - 1) * PAGE_SIZE + 1

    @property
    def last(self) -> int:
        return min(self.number * PAGE_SIZE, self.total)

    def words(self) -> str:
        """`51 to 100 of 500 (page 2 of 10)`"""
        return f"{self.first} to {self.last} of {self.total} (page {self.number} of {self.pages})"


@dataclass(frozen=True)
class Shown:
    """What `show` answers: the sentence, and the page it shows (None when it shows none)."""

    outcome: Outcome
    page: Page | None = None


def pages_of(total: int) -> int:
    return max(1, -(-total // PAGE_SIZE))


def show_page(
    lab: Lab,
    actor: str,
    lease_id: int,
    number: int,
    now: datetime,
    *,
    seen: int | None = None,
) -> Shown:
    """Page `number` of the lease's servers. The first page comes with the lease itself (what
    `show ID` answers); a later one with a line naming the lease. `seen` is how many servers
    the answer a button came from listed: when the lease has changed since, the page that is
    there now is shown and the change said."""
    lease, rows = lease_with_servers(lab, lease_id)
    if lease is None:
        return Shown(refuse(lab, now, actor, "show", not_found(lease_id), lease_id))
    with lab.db.read() as session:
        sharing = co_owner_ids(session, lease_id)
    order = {metro: n for n, metro in enumerate(lease.per_metro())}
    current = sorted(
        (s for s in rows if s.state in CURRENT),
        key=lambda s: (order.get(s.metro, len(order)), _natural(s)),
    )
    if not may_see_addresses(lab, lease, actor, sharing):
        hidden = f"\n{len(current)} server(s); {ADDRESSES_HIDDEN}" if current else ""
        return Shown(Outcome(True, describe(lease, [], now, sharing) + hidden, lease_id))
    if not rows:  # nothing created yet
        return Shown(Outcome(True, describe(lease, [], now, sharing), lease_id))
    pages = pages_of(len(current))
    changed = seen is not None and seen != len(current)
    if number > pages and current and not changed:
        return Shown(refuse(lab, now, actor, "show", _past_the_end(lease_id, pages), lease_id))
    page = Page(lease_id, min(number, pages), pages, len(current))
    head = _head(lease, page, _not_listed(rows), now, sharing)
    if changed:
        head = (
            f"Lease #{lease_id} has changed since that page was shown: it has "
            f"{len(current)} server(s) now, {seen} then.\n{head}"
        )
    if not current:
        return Shown(Outcome(True, head, lease_id))
    listed = current[page.first - 1 : page.last]
    counts = Counter(s.metro for s in current)
    text = "\n".join([head, *server_lines(listed, counts), _others(page)])
    return Shown(Outcome(True, text.rstrip("\n"), lease_id), page)


def _head(lease: Lease, page: Page, not_listed: str, now: datetime, sharing: list[str]) -> str:
    """The lease and which servers this page shows; when it has none now, why."""
    if not page.total:
        none = f"Lease #{lease.id} has no servers now ({not_listed})."
        return f"{describe(lease, [], now, sharing)}\n{none}"
    others = f" Not listed: {not_listed}." if not_listed else ""
    if page.number == 1:
        return f"{describe(lease, [], now, sharing)}\nServers {page.words()}.{others}"
    return f"Lease #{lease.id} ({shape(lease)}), servers {page.words()}.{others}"


def _not_listed(rows: list[Server]) -> str:
    """The lease's server rows that are not servers it has now, by state: `3 deleted, 1
    vanished`; a server created again after a failed create leaves one such row."""
    states = Counter(s.state for s in rows if s.state not in CURRENT)
    return ", ".join(f"{n} {state}" for state, n in sorted(states.items()))


def _others(page: Page) -> str:
    """Where the servers not on this page are."""
    ways = []
    if page.number < page.pages:
        ways.append(f"`/lab show {page.lease_id} servers {page.number + 1}` shows the next")
    if page.number > 1:
        ways.append(f"`/lab show {page.lease_id} servers {page.number - 1}` the previous")
    return ("; ".join(ways) + ".") if ways else ""


def _past_the_end(lease_id: int, pages: int) -> Refusal:
    if pages == 1:
        return Refusal(
            Code.BAD_INPUT,
            f"Lease #{lease_id}'s servers fit on one page: `/lab show {lease_id}` shows them.",
        )
    return Refusal(
        Code.BAD_INPUT,
        f"Lease #{lease_id}'s servers fill {pages} pages; "
        f"`/lab show {lease_id} servers {pages}` is the last.",
    )


def _natural(server: Server) -> list[int | str]:
    """coredns-12-9 before coredns-12-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", server.hostname)]
