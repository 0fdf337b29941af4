"""Vocabulary: which lease the current thread is working on, for log lines.

A context variable rather than an argument: the log record is made deep inside libraries that
know nothing of leases. Product code marks the lease where it starts working on one (a sweep
step, a notice's delivery); the log formatter reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_lease: ContextVar[int | None] = ContextVar("labbot_lease_id", default=None)


@contextmanager
def about_lease(lease_id: int | None) -> Iterator[None]:
    token = _lease.set(lease_id)
    try:
        yield
    finally:
        _lease.reset(token)


def current_lease() -> int | None:
    return _lease.get()
