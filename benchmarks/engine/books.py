"""Does reading the books cost the same in a lab of 10 live leases and of 1,000 (each among 100,000
leases of history)? Measured: the books' part of an approval (credit check and holds), approve()
end to end, `credit_report` and App Home's view, and beside them the reference computation that
reads every live lease as the previous release did. Both labs are measured in turns in one run.

Targets at 1,000 live: at least 200 approvals a second on the books, and the 1,000 / 10 cost
ratio of an approval, of credit_report and of App Home at most 1.2.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import commands.review
from benchmarks.common import heading, median, note, row, seal, seconds, target_row, timed, verdict
from benchmarks.engine.labs import approve_all, built, fresh_lab, month_load
from benchmarks.engine.leases import NOW, REVIEWERS
from benchmarks.engine.probes import PhaseClock
from benchmarks.engine.sizes import BOOKS_APPROVALS, BOOKS_LIVE, BOOKS_READS, TOTAL_LEASES, short
from benchmarks.engine.tables import history_rows, pending_rows
from commands.billing import month_key
from commands.lab import Lab

BOOKS_RATE = 200.0
BOOKS_RATIO = 1.2
# What review.approve calls for the books: the credit check, and the holds it writes.
BOOKS_PART = ["over_budget", "hold_approved"]


@dataclass
class BooksRun:
    decisions: float  # seconds per approval spent on the books: check, overrides, holds
    approve: float  # seconds per approve() end to end (provisioning and notices included)
    report: float  # seconds per credit_report()
    home: float  # seconds per App Home view (leases, credit report, blocks)
    reference: float  # seconds per reference computation of the same month's books


def bench_books(work: Path) -> bool:
    few, many = BOOKS_LIVE
    heading(f"The books with {few} and {many:,} live leases, {short(TOTAL_LEASES)} history")
    pending = pending_rows(BOOKS_APPROVALS, first_id=TOTAL_LEASES + 1)
    ids = [lease["id"] for lease in pending.leases]
    sources = {}
    for live in BOOKS_LIVE:
        sources[live] = work / f"books-{live}.db"
        history, _ = history_rows(TOTAL_LEASES, live=live)
        seal(built(sources[live], history, pending))
        running, _ = month_load(sources[live])
        note(f"{live:,} live leases ({running:,} counted), {len(ids)} approvals, one thread")
    runs = _books_runs(sources, work, ids)
    return _report_books(runs[few], runs[many])


def _report_books(small: BooksRun, big: BooksRun) -> bool:
    few, many = BOOKS_LIVE
    for name, get in (
        ("books' part of an approval", lambda r: r.decisions),
        ("approve() end to end", lambda r: r.approve),
        ("credit_report()", lambda r: r.report),
        ("App Home view", lambda r: r.home),
        ("reference books (every live lease)", lambda r: r.reference),
    ):
        row(f"  {name}", f"{seconds(get(small))} -> {seconds(get(big))}", f"{few} -> {many:,} live")
    rate = 1 / big.decisions
    met = rate >= BOOKS_RATE
    row(
        f"approvals/s on the books, {many:,} live",
        f"{rate:,.0f}/s",
        f"target >= {BOOKS_RATE:.0f}/s  {verdict(met)}",
    )
    row(
        f"approve() end to end, {many:,} live",
        f"{1 / big.approve:,.1f}/s",
        f"target >= {BOOKS_RATE:.0f}/s  {verdict(1 / big.approve >= BOOKS_RATE)}"
        " (provisioning and notices included)",
    )
    ratio = f"{many:,} / {few} live"
    met &= target_row(f"approval cost {ratio}", big.decisions / small.decisions, BOOKS_RATIO)
    met &= target_row(f"credit_report {ratio}", big.report / small.report, BOOKS_RATIO)
    met &= target_row(f"App Home view {ratio}", big.home / small.home, BOOKS_RATIO)
    row(
        f"reference books / new credit_report, {many:,}",
        f"x{big.reference / big.report:,.0f}",
        f"{seconds(big.reference)} vs {seconds(big.report)}",
    )
    return met


def _books_runs(sources: dict[int, Path], work: Path, ids: list[int]) -> dict[int, BooksRun]:
    """Both labs open at once and measured in turns (approvals ten at a time, reads one at a
    time), so a machine whose load changes during the run colours both sides alike."""
    reading = _reads()
    with ExitStack() as stack:
        labs = {
            live: stack.enter_context(fresh_lab(path, work / f"run-{live}.db"))
            for live, path in sources.items()
        }
        spent = _approve_in_turns(labs, ids)
        reads = _read_in_turns(labs, reading)
    return {
        live: BooksRun(
            spent[live][1] / len(ids),
            spent[live][0] / len(ids),
            median(reads[live]["report"]),
            median(reads[live]["home"]),
            median(reads[live]["reference"]),
        )
        for live in labs
    }


def _approve_in_turns(labs: dict[int, Lab], ids: list[int]) -> dict[int, list[float]]:
    """Per lab, the seconds approve() took and the seconds its books' part took."""
    spent = {live: [0.0, 0.0] for live in labs}
    for start in range(0, len(ids), 10):
        turn = ids[start : start + 10]
        for live, lab in labs.items():
            with PhaseClock(commands.review, BOOKS_PART) as clock:
                elapsed, failures = timed(
                    lambda lab=lab, turn=turn: approve_all(lab, turn, threads=1)
                )
            if failures:
                raise RuntimeError(f"{len(failures)} approvals failed, e.g. {failures[:3]}")
            spent[live][0] += elapsed
            spent[live][1] += sum(clock.total.values())
    return spent


def _read_in_turns(
    labs: dict[int, Lab], reading: tuple[Callable[[Lab], object], ...]
) -> dict[int, dict[str, list[float]]]:
    """Per lab, the seconds of each credit_report, App Home view and reference computation."""
    report, home, reference = reading
    reads: dict[int, dict[str, list[float]]] = {live: defaultdict(list) for live in labs}
    for n in range(BOOKS_READS):
        for live, lab in labs.items():
            reads[live]["report"].append(timed(lambda lab=lab: report(lab))[0])
            reads[live]["home"].append(timed(lambda lab=lab: home(lab))[0])
            if n < 3:
                reads[live]["reference"].append(timed(lambda lab=lab: reference(lab))[0])
    return reads


def _reads() -> tuple[Callable[[Lab], object], ...]:
    """`/lab credit`, App Home as a reviewer sees it, and the reference books. Imported here,
    when the books are measured, so the sweep before them runs without bot/ and tests/ loaded."""
    from bot.blocks.home import home_view
    from commands.credit_report import credit_report
    from commands.queue import queue
    from commands.views import leases
    from tests.commands.credit_reference import reference_books

    def report(lab: Lab) -> object:
        return credit_report(lab, NOW)

    def home(lab: Lab) -> object:
        mine = leases(lab, owner=REVIEWERS[0], limit=20)
        return home_view(mine, credit_report(lab, NOW), queue(lab, NOW), NOW)

    def reference(lab: Lab) -> object:
        with lab.db.write() as session:
            return reference_books(session, [month_key(NOW)], lab.policy, NOW)

    return report, home, reference
