"""How big the engine benchmarks are: full size unless `ENGINE_SCALE` says otherwise.

The targets are set for full size (`ENGINE_SCALE=1`, the default), which takes minutes of both
cores. `ENGINE_SCALE=0.02 python -m benchmarks engine` builds every table at 2% of its rows (at
least a few of each kind) to check that the benchmarks run and print their rows; its figures
say nothing about the targets. The labels follow the sizes (`100k`, `1k-only` at full size).
"""

from __future__ import annotations

import os


def _scale() -> float:
    raw = os.environ.get("ENGINE_SCALE", "1")
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value <= 1:
        raise ValueError(f"ENGINE_SCALE is a fraction of full size, such as 0.02 or 1; not {raw!r}")
    return value


SCALE = _scale()


def scaled(full: int, least: int = 1) -> int:
    """`full` at the run's scale, never below `least`."""
    return max(least, round(full * SCALE))


def short(count: int) -> str:
    """A table's size in a label: `100k`, `1k`, `250`."""
    return f"{count // 1000}k" if count >= 1000 and count % 1000 == 0 else f"{count:,}"


# 1. The sweep: the due leases alone, and among the whole table.
TOTAL_LEASES = scaled(100_000, 1_000)
DUE_KINDS = {
    kind: scaled(full)
    for kind, full in (
        ("expire_request", 350),
        ("remind", 350),
        ("expire", 150),
        ("poll", 100),
        ("provision", 50),
    )
}
DUE_LEASES = sum(DUE_KINDS.values())
DUE_ID_BASE = TOTAL_LEASES - DUE_LEASES  # due leases are the newest: ids 99,001..100,000
DUE_SERVER_ID_BASE = 5_000_000  # explicit server ids, so both databases hold identical rows
LIVE_HISTORY = scaled(100)  # live leases among the history, ~300 servers running
WAITING = scaled(200)  # pending requests among the history, inside their decision window
WARM_UP = set(range(DUE_ID_BASE + 1, DUE_ID_BASE + 1 + min(20, DUE_LEASES)))
REPEATS = 3
SIZE_APPROVALS = 6  # approved on each table to show what the table size costs an approval

# 2. and 3. Approvals, and contention on one lease.
APPROVALS = scaled(160, 8)
CONTENTION_ROUNDS = scaled(200, 2)

# 4. The books with few and with many live leases.
BOOKS_LIVE = (10, scaled(1_000, 20))
BOOKS_APPROVALS = scaled(60, 10)
BOOKS_READS = 21
