"""What the engine benchmarks attach to a run to see inside it: the time spent in named functions
of a module, every SQL statement sent, and the time spent waiting to write.

Each costs a clock read or a counter per call, cheap enough to leave on during measured runs.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from contextlib import contextmanager

from sqlalchemy import event

from storage.db import Database


class PhaseClock:
    """Wall time spent in named module-level functions, by wrapping them for the duration of
    a `with` block (one clock read on each side of each call). A name the module does not have
    is an error: a renamed function must not quietly measure nothing."""

    def __init__(self, module, names: Iterable[str]) -> None:
        self.module = module
        self.names = list(names)
        missing = [n for n in self.names if not callable(getattr(module, n, None))]
        if missing:
            raise RuntimeError(f"{module.__name__} has no {', '.join(missing)} to time")
        self.total: dict[str, float] = defaultdict(float)
        self.calls: Counter = Counter()
        self._saved: dict[str, Callable] = {}

    def __enter__(self) -> PhaseClock:
        for name in self.names:
            original = self._saved[name] = getattr(self.module, name)
            setattr(self.module, name, self._timed(name, original))
        return self

    def __exit__(self, *exc) -> None:
        for name, original in self._saved.items():
            setattr(self.module, name, original)

    def _timed(self, name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed_call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total[name] += time.perf_counter() - start
                self.calls[name] += 1

        return timed_call


class StatementLog:
    """Every distinct SQL statement a run sent, with its first parameters and how often, from
    the driver's cursor events (cheap enough to leave on during the measured runs)."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()
        self.params: dict[str, object] = {}

    def attach(self, db: Database) -> None:
        event.listen(db.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.calls[statement] += 1
        # An executemany's parameters are one set per row; the statement is re-run with the first.
        self.params.setdefault(statement, parameters[0] if executemany else parameters)


class LockClock:
    """Time spent waiting to write: from entering `Database.write()` until its
    `BEGIN IMMEDIATE` has returned, which covers both the process's own writer queue and
    SQLite's busy wait (summed over threads), and how many write transactions ran."""

    def __init__(self, db: Database) -> None:
        self.waited = 0.0
        self.begins = 0
        self._lock = threading.Lock()
        self._entered = threading.local()
        write = db.write

        @contextmanager
        def timed_write():
            self._entered.at = time.perf_counter()
            with write() as session:
                yield session

        db.write = timed_write  # type: ignore[method-assign]
        event.listen(db.engine, "after_cursor_execute", self._after)

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if statement != "BEGIN IMMEDIATE":
            return
        entered = getattr(self._entered, "at", None)
        self._entered.at = None
        with self._lock:
            self.begins += 1
            if entered is not None:
                self.waited += time.perf_counter() - entered
