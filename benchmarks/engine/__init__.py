"""The lease engine on SQLite: does the sweep's cost follow the work that is due, how fast do
approvals go, alone and from 8 threads at once, and do the books cost the same with 10 live
leases and with 1,000? `python -m benchmarks engine` runs the four, each in a module of its own:

1. `sweep`: the same 1,000 due leases, once alone in a table and once among 99,000 other leases
   (years of history: reclaimed, denied, expired and cancelled requests with their deleted
   servers, audit events and delivered notices, plus live leases and pending requests that are
   not due yet). `commands.sweep.sweep` is called until nothing is due (it takes BATCH=500
   leases a call) on a fresh copy of each database; median of 3. Targets: 100k / 1k <= 1.5,
   and the 100k drain in at most 3 s. Then: which phase of the sweep and which SQL grew
   (`growth`), and what one approval costs on each table.
2. `approvals`: `commands.review.approve` of N pending requests, one thread and then 8 threads
   taking distinct leases from a queue: the real approval path, provisioning included.
3. `approvals`, contention: 8 threads approving the same lease at once, 200 rounds; exactly one
   may win.
4. `books`: the books with 10 and with 1,000 live leases among 100,000 leases of history: the
   books' part of an approval (target >= 200/s at 1,000 live and a 1,000/10 cost ratio <= 1.2),
   approve() end to end, `credit_report` and App Home's view (ratio <= 1.2), and the reference
   computation (every live lease, as the previous release read them) beside them.

They share one setup: `sizes` (how big; `ENGINE_SCALE=0.02` for a small run that only checks
they work), `leases` and `tables` (the rows), `rows` and `labs` (the databases, built as the
previous release wrote them (schema 0001) and upgraded by the migrations, so live leases carry
the holds an upgraded lab has; filled with one executemany per table and copied byte for byte
for each run, since a sweep or an approval changes what it touches), and `probes` (the clocks
and the SQL log attached to a run).
"""

from __future__ import annotations

from benchmarks.common import note, section, workdir
from benchmarks.engine.approvals import bench_approvals
from benchmarks.engine.books import bench_books
from benchmarks.engine.sizes import SCALE
from benchmarks.engine.sweep import SWEEP_SECONDS, SWEEP_TARGET, bench_sweep


def main() -> int:
    section("engine: sweep cost vs table size; the books; approvals on SQLite")
    if SCALE != 1:
        note(f"ENGINE_SCALE={SCALE:g}: smaller tables than the targets are set for")
    with workdir() as work:
        met = bench_sweep(work)
        books_met = bench_books(work)
        bench_approvals(work)
    print()
    note(
        f"sweep targets (<= {SWEEP_SECONDS:.0f} s, ratio <= {SWEEP_TARGET}): "
        + ("PASS" if met else "MISS")
    )
    note(f"books targets: {'PASS' if books_met else 'MISS'}")
    return 0
