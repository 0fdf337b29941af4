"""Books: the credit report, the month's books as `/lab credit`, App Home and the gauges show them:
the lab's, each donor's (when there are several), and each project's.

It sits below the reads (views, gauges) so that each of them can show it without importing the
other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlmodel import Session

from commands.billing import format_cents, month_key
from commands.credit import MonthBooks, Tally, month_tally, runs_out_at
from commands.facts import when
from commands.lab import Lab
from commands.pages import cut, not_shown
from commands.process import Reserve, format_share
from commands.reserve import month_reserves, reserve_words
from storage.db import ReadOnly


@dataclass(frozen=True)
class CreditLine:
    """One line of the books. A project without a monthly cap has no grant of its own, so
    `granted` and `available` are None for it."""

    name: str
    granted: int | None
    spent: int
    committed: int
    available: int | None


@dataclass(frozen=True)
class CreditReport:
    month: str
    lab: CreditLine
    projects: list[CreditLine]
    burn_per_day: int
    runs_out: datetime | None
    reserve: Reserve
    reserved_share: int
    donors: list[CreditLine] = field(default_factory=list)  # each donor's, when several give

    def text(self, budget: int | None = None) -> str:
        """The books in words; within `budget` characters (a Slack answer), the projects that
        do not fit are counted and the public report named, which lists every one."""
        lines = [
            f"Credit for {self.month}:",
            _line(self.lab),
            *(["By donor:", *(_line(d) for d in self.donors)] if self.donors else []),
            f"Burn rate: {format_cents(self.burn_per_day)}/day; "
            + (
                f"runs out {when(self.runs_out)} at this rate."
                if self.runs_out
                else "the month's credit lasts the month at this rate."
            ),
        ]
        lines.append(
            f"Kept for other open-source projects ({format_share(self.reserved_share)}): "
            f"{reserve_words(self.reserve)}."
        )
        if self.projects:
            lines.append("By project:")
            projects = [_line(p) for p in self.projects]
            room = len(projects)
            if budget is not None:
                room = len(cut(projects, len(projects), budget - len("\n".join(lines)))[0])
            lines += projects[:room] + not_shown(
                len(projects) - room, "the lab's public report lists every project's spend"
            )
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return asdict(self)


def _line(line: CreditLine) -> str:
    used = f"spent {format_cents(line.spent)}, committed {format_cents(line.committed)}"
    if line.granted is None:
        return f"  {line.name}: {used} (no project cap)"
    return (
        f"  {line.name}: granted {format_cents(line.granted)}, {used}, "
        f"available {format_cents(line.available)}"
    )


def credit_report(lab: Lab, now: datetime, month: str | None = None) -> CreditReport:
    """The month's books, read without writing; only a month's first look, which writes its
    grant row, takes the write lock."""
    month = month or month_key(now)
    return books_as_they_stand(lab, now, month) or _written(lab, now, month)


def books_as_they_stand(lab: Lab, now: datetime, month: str) -> CreditReport | None:
    """The month's books, never writing (what a /metrics scrape reads); None while the month
    has no grant row yet (nothing is held or spent in it)."""
    try:
        with lab.db.read_only() as session:
            return _report(session, lab, now, month)
    except ReadOnly:
        return None


def _written(lab: Lab, now: datetime, month: str) -> CreditReport:
    with lab.db.write() as session:  # write: the month's grant row is created
        return _report(session, lab, now, month)


def _report(session: Session, lab: Lab, now: datetime, month: str) -> CreditReport:
    report = month_tally(session, month, lab.policy, now)
    kept = month_reserves(session, [month], lab.policy, now)[month]
    book = report.books
    burn = report.burn_per_day if month == month_key(now) else 0
    projects = _by_project(report.projects, lab.policy.project_cap_cents)
    donors = [_donor_line(n, b) for n, b in report.donors.items()] if len(report.donors) > 1 else []
    return CreditReport(
        month,
        _donor_line("lab", book),
        projects,
        burn,
        runs_out_at(book, burn, now),
        kept,
        lab.policy.reserved_share,
        donors,
    )


def _donor_line(name: str, book: MonthBooks) -> CreditLine:
    return CreditLine(name, book.granted, book.spent, book.committed, book.available)


def _by_project(tally: Tally, cap: int | None) -> list[CreditLine]:
    spent = {p: c for (p, _), c in tally.spent.items()}
    committed = {p: c for (p, _), c in tally.committed.items()}
    lines = []
    for p in sorted(spent.keys() | committed.keys()):
        used, held = spent.get(p, 0), committed.get(p, 0)
        left = None if cap is None else cap - used - held
        lines.append(CreditLine(p, cap, used, held, left))
    return lines
