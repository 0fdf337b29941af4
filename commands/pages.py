"""Vocabulary: lists in pages.

A list labbot shows a person either shows everything or says how many it leaves out and how to
see them; this module cuts a list's lines into pages that fit one Slack answer (`/lab list 2`,
`/lab queue 2`) and writes the words that say where the reader is.

Pages are cut greedily from the first line, so the same list always gives the same pages, and
every line is on exactly one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

PER_PAGE = 20
ANSWER_BUDGET = 3400  # characters of lines per answer: Slack takes 4,000 with the title and footer
MAX_PAGE_DIGITS = 6


@dataclass(frozen=True)
class Page:
    """One page of a list of lines: the lines, which page of how many, where it starts."""

    lines: list[str]
    number: int
    pages: int
    start: int  # index in the whole list of the page's first line
    total: int


def cut(lines: list[str], per_page: int = PER_PAGE, budget: int = ANSWER_BUDGET) -> list[range]:
    """The pages of `lines`: at most `per_page` lines and `budget` characters each (a single
    line longer than the budget gets a page of its own)."""
    pages: list[range] = []
    start = size = 0
    for index, line in enumerate(lines):
        if index > start and (index - start == per_page or size + len(line) + 1 > budget):
            pages.append(range(start, index))
            start, size = index, 0
        size += len(line) + 1
    if lines:
        pages.append(range(start, len(lines)))
    return pages


def page(lines: list[str], number: int) -> Page | None:
    """Page `number` (from 1), or None when the list has no such page."""
    pages = cut(lines)
    if not 1 <= number <= len(pages):
        return None
    where = pages[number - 1]
    return Page([lines[i] for i in where], number, len(pages), where.start, len(lines))


def shown(start: int, count: int, total: int) -> str:
    """`21 to 40 of 64`"""
    last = f" to {start + count}" if count > 1 else ""
    return f"{start + 1}{last} of {total}"


def footer(at: Page, command: str) -> str:
    """What a page that does not show everything says under its lines: which part it is and
    the command that shows the next page (or the first again, after the last)."""
    if at.pages == 1:
        return ""
    where = f"Showing {shown(at.start, len(at.lines), at.total)} (page {at.number} of {at.pages})."
    if at.number < at.pages:
        return f"{where} `{command} {at.number + 1}` shows the next page."
    return f"{where} That is the last page; `{command}` shows the first."


def no_such_page(number: int, pages: int, what: str, command: str) -> str:
    """The sentence for a page past the end."""
    if pages == 1:
        return f"There is no page {number}: {what} fit on one page, which `{command}` shows."
    return (
        f"There is no page {number}: {what} fit on {pages} pages; "
        f"`{command} {pages}` shows the last."
    )


def not_shown(count: int, way: str) -> list[str]:
    """The last item of a short list that leaves `count` out: how many, and `way` to see
    them; nothing when it leaves none out."""
    return [f"and {count} more: {way}"] if count > 0 else []
