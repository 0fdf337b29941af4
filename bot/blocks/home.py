"""App Home: a person's leases with the buttons they can press, the lab's credit this month,
and for reviewers the requests waiting for them.

A section longer than a screen shows a page of it, says which part it shows, and offers
*Next* and *Previous* buttons that publish App Home again at the next page. Where the reader is
travels in the buttons' values and in the view's private_metadata (so any other click on App
Home publishes it again at the same place): by position, and by the lease shown just before
the page, so that a list that changed since (leases added, requests decided) resumes after
what the reader last saw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from bot.blocks.cards import decision_buttons
from bot.blocks.dms import lease_buttons
from bot.blocks.kit import (
    VIEW_BLOCK_LIMIT,
    Block,
    actions,
    button,
    context,
    divider,
    escape,
    fields,
    header,
    mrkdwn,
    section,
)
from commands.billing import format_cents
from commands.capacity import Calendar
from commands.credit_report import CreditLine, CreditReport
from commands.facts import one_line
from commands.pages import shown
from commands.queue import QueueEntry, repo_words
from commands.reserve import reserve_words
from storage.models import Lease

MORE = "home_more"
MINE, PENDING = "mine", "pending"
PER_PAGE = {MINE: 20, PENDING: 15}  # two blocks an item: 70 blocks, within Slack's 100 a view
CHANGED = "This list changed since that page was shown. "

Item = TypeVar("Item")


@dataclass(frozen=True)
class Place:
    """Where a reader is in one section: the position of the first item shown, and the lease
    shown just before it (None on the first page)."""

    start: int = 0
    after: int | None = None

    def value(self, section: str) -> str:
        return f"{section}:{self.start}:{self.after or ''}"


Places = dict[str, Place]


def read_place(value: str) -> tuple[str, Place] | None:
    """A More button's value (`pending:15:482`); None for anything the button could not have
    sent."""
    section, _, rest = value.partition(":")
    start, _, after = rest.partition(":")
    if section not in PER_PAGE or not _digits(start) or not (after == "" or _digits(after)):
        return None
    return section, Place(int(start), int(after) if after else None)


def read_places(metadata: str) -> Places:
    """The places a published App Home was at (its private_metadata); what cannot be read is
    the first page."""
    found = (read_place(part) for part in metadata.split(","))
    return dict(place for place in found if place is not None)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 9


def home_view(
    mine: list[Lease],
    report: CreditReport,
    pending: list[QueueEntry] | None,
    now: datetime,
    places: Places | None = None,
    calendars: Sequence[Calendar] = (),
) -> dict[str, Any]:
    """`pending` is None for people who are not reviewers (they do not see the queue); for
    reviewers it is the queue in review order. `places` says which page of each section to
    show (the first by default)."""
    places = places or {}
    blocks = [
        header("Your leases"),
        *_paged(MINE, mine, [lease.id for lease in mine], places, _lease(now), _NO_LEASES),
        divider(),
        *_credit(report),
        *_calendars(calendars),
    ]
    if pending is not None:
        ids = [entry.lease.id for entry in pending]
        blocks += [
            divider(),
            header("Waiting for review"),
            *_paged(PENDING, pending, ids, places, _request(now), _NOTHING_WAITING),
        ]
    metadata = ",".join(place.value(section) for section, place in places.items())
    return {"type": "home", "blocks": blocks[:VIEW_BLOCK_LIMIT], "private_metadata": metadata}


_NO_LEASES = section("You have no leases yet. Ask for servers with `/lab request`.")
_NOTHING_WAITING = context("Nothing is waiting for a decision.")


def _paged(
    name: str,
    items: Sequence[Item],
    ids: list[int],
    places: Places,
    render: Callable[[Item], list[Block]],
    empty: Block,
) -> list[Block]:
    """One page of a section: which part it is, its items, and the buttons to the others."""
    if not items:
        return [empty]
    size = PER_PAGE[name]
    start, note = _resume(ids, places.get(name, Place()), size)
    page = items[start : start + size]
    blocks: list[Block] = []
    if len(items) > size:
        blocks.append(context(f"{note}Showing {shown(start, len(page), len(items))}."))
    for item in page:
        blocks += render(item)
    buttons = []
    if start > 0:
        back = max(0, start - size)
        previous = Place(back, ids[back - 1] if back else None)
        buttons.append(button("Previous", MORE, previous.value(name)))
    if start + size < len(items):
        rest = len(items) - start - size
        following = Place(start + size, ids[start + size - 1])
        buttons.append(button(f"More ({rest} not shown)", MORE, following.value(name)))
    if buttons:
        blocks.append(actions(f"more:{name}", *buttons))
    return blocks


def _resume(ids: list[int], place: Place, size: int) -> tuple[int, str]:
    """The position to show from, and a sentence when the list changed since the place was
    taken: right after the lease shown before it, if that is still listed; else at its
    position, or at the last page when the list has become shorter than that."""
    kept = place.after is None or place.after in ids
    start = ids.index(place.after) + 1 if place.after in ids else place.start
    start = min(start, (len(ids) - 1) // size * size)
    return start, ("" if kept and start == place.start else CHANGED)


def _lease(now: datetime) -> Callable[[Lease], list[Block]]:
    def render(lease: Lease) -> list[Block]:
        booked = lease.state == "approved" and lease.book_start is not None
        buttons = lease_buttons(lease.id, "booked" if booked else lease.state)
        shown_line = [section(mrkdwn(one_line(lease, now)))]
        return shown_line + ([actions(f"home:{lease.id}", *buttons)] if buttons else [])

    return render


def _request(now: datetime) -> Callable[[QueueEntry], list[Block]]:
    def render(entry: QueueEntry) -> list[Block]:
        lease = entry.lease
        return [
            section(
                f"<@{lease.owner}>: {mrkdwn(entry.line(now))}\n_{escape(lease.purpose)}_\n"
                f"Open source: {mrkdwn(repo_words(lease))}"
            ),
            decision_buttons(f"pending:{lease.id}", str(lease.id)),
        ]

    return render


def _calendars(calendars: Sequence[Calendar]) -> list[Block]:
    """The coming two weeks of the plans with a capacity limit (`/lab calendar` for others)."""
    if not calendars:
        return []
    return [
        divider(),
        header("Capacity, the coming two weeks"),
        *(section(calendar.text()) for calendar in calendars),
        context("Any plan and metro: `/lab calendar PLAN METRO`."),
    ]


def _credit(report: CreditReport) -> list[Block]:
    lab = report.lab
    return [
        header(f"The lab's credit, {report.month}"),
        fields(
            ("Granted", format_cents(lab.granted)),
            ("Spent", format_cents(lab.spent)),
            ("Committed", format_cents(lab.committed)),
            ("Available", format_cents(lab.available)),
            ("Kept for other open-source projects", reserve_words(report.reserve)),
        ),
        *(
            [fields(*((f"Donor {d.name}", _donor_words(d)) for d in report.donors))]
            if report.donors
            else []
        ),
    ]


def _donor_words(line: CreditLine) -> str:
    return (
        f"granted {format_cents(line.granted or 0)}, spent {format_cents(line.spent)}, "
        f"committed {format_cents(line.committed)}, "
        f"available {format_cents(line.available or 0)}"
    )
