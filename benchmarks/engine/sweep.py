"""Does the sweep's cost follow the work that is due? The same due leases are drained once alone
in a table and once among years of history (`commands.sweep.sweep` called until nothing is
due, on a fresh copy of each database, median of `REPEATS`), with where the time went by phase
of the sweep and by SQL statement; then what one approval costs on each table.

Targets: the whole table's drain at most 1.5 times the due-only one's, and at most 3 s.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import commands.review
import commands.sweep
from benchmarks.common import heading, median, note, row, seal, seconds, target_row, timed
from benchmarks.engine.growth import growing_statements, report_growth
from benchmarks.engine.labs import approve_all, built, fresh_lab, month_load, table_sizes
from benchmarks.engine.leases import NOW, RICH
from benchmarks.engine.probes import PhaseClock, StatementLog
from benchmarks.engine.rows import Rows
from benchmarks.engine.sizes import (
    DUE_LEASES,
    REPEATS,
    SIZE_APPROVALS,
    TOTAL_LEASES,
    WARM_UP,
    short,
)
from benchmarks.engine.tables import due_rows, history_rows
from commands.lab import Lab
from commands.sweep import BATCH, due_leases, sweep

SWEEP_TARGET = 1.5
SWEEP_SECONDS = 3.0

# The phases of one sweep call, timed by wrapping the names `commands.sweep.sweep` calls.
PHASES = ("step_all", "_process", "reconcile_if_due", "credit_alerts", "deliver")


@dataclass
class Drain:
    seconds: float
    calls: int
    stepped: Counter
    phases: dict[str, float] = field(default_factory=dict)


@dataclass
class Tables:
    small: Path  # the due leases alone
    big: Path  # the same due leases among the history
    warm_up: Path  # a few due leases, to warm imports, mappers and statements
    due: Rows


def bench_sweep(work: Path) -> bool:
    heading(f"Sweep: {DUE_LEASES:,} due leases alone vs among {TOTAL_LEASES:,}")
    tables = _build(work)
    scratch = work / "run.db"
    sweep_run(tables.warm_up, scratch)  # warm-up: imports, mappers, first statements; not counted
    runs: dict[str, list[Drain]] = {"small": [], "big": []}
    log = StatementLog()
    for _ in range(REPEATS):
        runs["small"].append(sweep_run(tables.small, scratch))
        runs["big"].append(sweep_run(tables.big, scratch, log))
    met = _report_drains(runs)
    report_growth(growing_statements(tables.small, tables.big, log))
    _approval_cost(tables, scratch)
    return met


def _build(work: Path) -> Tables:
    tables = Tables(work / "due-only.db", work / "full.db", work / "warm-up.db", Rows())
    build_start = time.perf_counter()
    due, due_kinds = due_rows()
    history, history_kinds = history_rows(TOTAL_LEASES - DUE_LEASES)
    db = built(tables.big, history, due)
    big_sizes = table_sizes(db)
    seal(db)
    db = built(tables.small, due)
    small_sizes = table_sizes(db)
    seal(db)
    seal(built(tables.warm_up, due.subset(WARM_UP)))
    tables.due = due
    note(f"built the databases in {time.perf_counter() - build_start:.1f} s (bulk inserts)")
    note("due, the same rows in both: " + _counts(due_kinds))
    note("history, not due: " + _counts(history_kinds))
    for name, sizes in (
        (f"{short(DUE_LEASES)}-only", small_sizes),
        (short(TOTAL_LEASES), big_sizes),
    ):
        note(f"{name:>7} tables: " + ", ".join(f"{t} {n:,}" for t, n in sizes.items()))
    note(
        f"now {NOW:%Y-%m-%d %H:%M} UTC; sweep() called until nothing is due (BATCH={BATCH}); "
        f"reconcile ENABLED in both (reconcile_every={RICH.reconcile_every}: the first call "
        "lists the provider's devices); credit set high so no credit alert fires in either"
    )
    return tables


def _counts(kinds: Counter) -> str:
    return ", ".join(f"{n:,} {kind.replace('_', ' ')}" for kind, n in kinds.most_common())


def sweep_run(source: Path, scratch: Path, log: StatementLog | None = None) -> Drain:
    with fresh_lab(source, scratch, log) as lab, PhaseClock(commands.sweep, PHASES) as clock:
        result = drain(lab, NOW)
    result.phases = dict(clock.total)
    return result


def drain(lab: Lab, now: datetime) -> Drain:
    """Sweep until nothing is due (the sweep takes BATCH leases per call)."""
    stepped: Counter = Counter()
    calls = 0
    start = time.perf_counter()
    while calls < 10:
        report = sweep(lab, now)
        calls += 1
        if report.errors:
            raise RuntimeError(f"the sweep reported errors: {report.errors[:3]}")
        stepped.update(_kind_of_step(what) for _, what in report.stepped)
        if not due_leases(lab, now, limit=1):
            break
    elapsed = time.perf_counter() - start
    if due_leases(lab, now, limit=1):
        raise RuntimeError("leases are still due after 10 sweeps")
    return Drain(elapsed, calls, stepped)


def _kind_of_step(what: str) -> str:
    """What a sweep step did, without the lease number or counts in its sentence."""
    if what.startswith("Lease #") and "provisioning" in what:
        return "provisioned"
    return what.split(" (")[0]


def _report_drains(runs: dict[str, list[Drain]]) -> bool:
    """The drains' times against the targets, and where they went by phase."""
    work_small, work_big = runs["small"][0].stepped, runs["big"][0].stepped
    if any(r.stepped != work_small for r in runs["small"] + runs["big"]):
        raise RuntimeError(f"the sweeps did different work: {work_small} vs {work_big}")
    note(
        f"work per drain, identical in every run: {sum(work_small.values()):,} steps ("
        + ", ".join(f"{n} {what}" for what, n in work_small.most_common())
        + ")"
    )
    t_small = median([r.seconds for r in runs["small"]])
    t_big = median([r.seconds for r in runs["big"]])
    for name, size in (("small", DUE_LEASES), ("big", TOTAL_LEASES)):
        row(
            f"sweep, {size:,}-lease table ({runs[name][0].calls} calls)",
            seconds(median([r.seconds for r in runs[name]])),
            "runs: " + " / ".join(seconds(r.seconds) for r in runs[name]),
        )
    big, small = short(TOTAL_LEASES), short(DUE_LEASES)
    met = target_row(f"ratio {big} / {small} (median of {REPEATS})", t_big / t_small, SWEEP_TARGET)
    met &= target_row(f"{big} drain, seconds (median of {REPEATS})", t_big, SWEEP_SECONDS)
    note(f"where a drain's time goes, by phase of sweep() (median; {small}-only -> {big}):")
    for phase in PHASES:
        a = median([r.phases.get(phase, 0.0) for r in runs["small"]])
        b = median([r.phases.get(phase, 0.0) for r in runs["big"]])
        row(f"  {phase}", f"{seconds(a)} -> {seconds(b)}", f"({b - a:+.3f} s)")
    return met


def _approval_cost(tables: Tables, scratch: Path) -> None:
    heading("Approval cost vs table size (the credit check reads the month's books)")
    pending = [lid for lid, kind in sorted(tables.due.kinds.items()) if kind == "expire_request"]
    sample = pending[:SIZE_APPROVALS]
    tables_by_name = {
        f"{short(DUE_LEASES)}-only": tables.small,
        short(TOTAL_LEASES): tables.big,
    }
    measured = {name: _approve_some(path, scratch, sample) for name, path in tables_by_name.items()}
    note(f"the same {len(sample)} pending requests approved, one thread, on a fresh copy of each")
    for name, path in tables_by_name.items():
        rate, check = measured[name]
        live, billed = month_load(path)
        row(
            f"approvals/s, {name} table",
            f"{rate:,.1f}/s",
            f"credit check {seconds(check)} each; {live} live leases, {billed:,} billed this month",
        )
    (small_rate, _), (big_rate, _) = measured.values()
    row(f"slowdown {short(TOTAL_LEASES)} / {short(DUE_LEASES)}", f"x{small_rate / big_rate:.2f}")


def _approve_some(source: Path, scratch: Path, ids: list[int]) -> tuple[float, float]:
    """Approvals per second of the given pending leases (one thread), and the seconds per
    approval spent in the credit check."""
    with (
        fresh_lab(source, scratch) as lab,
        PhaseClock(commands.review, ["over_budget"]) as clock,
    ):
        elapsed, failures = timed(lambda: approve_all(lab, ids, threads=1))
    if failures:
        raise RuntimeError(f"{len(failures)} approvals failed, e.g. {failures[:3]}")
    return len(ids) / elapsed, clock.total.get("over_budget", 0.0) / len(ids)
