"""Which SQL a sweep sent grows in cost with the table: each statement the drains sent is run again
on the small and the big database as built, and its query plan read.
"""

from __future__ import annotations

import re
import sqlite3
import textwrap
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import median, note, seconds, timed
from benchmarks.engine.labs import read_only
from benchmarks.engine.probes import StatementLog
from benchmarks.engine.sizes import DUE_LEASES, REPEATS, TOTAL_LEASES, short


@dataclass
class Growth:
    statement: str
    plan: str
    calls: int  # per drain
    small: float  # seconds per call, fetched in full, on the table of due leases only
    big: float  # the same on the whole table


def growing_statements(small: Path, big: Path, log: StatementLog) -> list[Growth]:
    """The statements of the drain whose own cost grows with the table. Each SELECT the run
    sent is run again with its first parameters on both databases as built (fetched in full,
    median of 3); an UPDATE or DELETE is flagged when its plan scans a whole table."""
    found = []
    with closing(read_only(small)) as one, closing(read_only(big)) as many:
        for statement, calls in log.calls.items():
            verb = statement.lstrip()[:6].upper()
            if verb not in ("SELECT", "UPDATE", "DELETE"):
                continue
            params = log.params[statement]
            explained = many.execute(f"EXPLAIN QUERY PLAN {statement}", params)
            plan = " | ".join(r[-1] for r in explained)
            if verb == "SELECT":
                a, b = _fetch_time(one, statement, params), _fetch_time(many, statement, params)
                grows = b > 3 * a and b - a > 0.001
            else:
                a = b = 0.0
                grows = any(p.startswith("SCAN ") for p in plan.split(" | "))
            if grows:
                found.append(Growth(statement, plan, calls // REPEATS, a, b))
    return sorted(found, key=lambda g: (g.big - g.small) * g.calls, reverse=True)


def report_growth(growth: list[Growth]) -> None:
    sizes = f"{short(DUE_LEASES)} -> {short(TOTAL_LEASES)}"
    note(f"SQL whose cost grows with the table ({len(growth)}; per call {sizes}, per drain):")
    for g in growth:
        note(f"  {seconds(g.small)} -> {seconds(g.big)} per call, {g.calls} calls per drain:")
        for line in textwrap.wrap(_outline(g.statement), 96):
            note(f"      {line}")
        for line in textwrap.wrap(f"plan: {g.plan}", 96):
            note(f"      {line}")


def _fetch_time(conn: sqlite3.Connection, statement: str, params) -> float:
    def run() -> None:
        conn.execute(statement, params).fetchall()

    run()
    return median([timed(run)[0] for _ in range(3)])


def _outline(statement: str) -> str:
    """The statement on one line, its outermost column list elided."""
    flat = " ".join(statement.split())
    flat = re.sub(r"^SELECT .+? FROM ", "SELECT ... FROM ", flat, count=1)
    return re.sub(r"\((?:\?, ){3,}\?\)", lambda m: f"({m.group(0).count('?')} values)", flat)
