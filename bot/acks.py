"""The requests a process is acknowledging right now, which its own work lets go first.

Where one process both acks and works (Socket Mode, the demo, the tests; a web process of
`labbot serve` only for the work it could not keep), the two want the same interpreter lock and
the same SQLite write lock, and a burst of work made every ack behind it wait. The ack has
Slack's three seconds; the answer that follows has minutes (a response_url takes posts for 30).
So a piece of work starts only when no request is being acknowledged, or once it has waited
`AFTER_ACKS`, so that work under a steady stream of requests is late by that much, never
starved. Work already started is not stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

AFTER_ACKS = 1.0  # seconds a piece of work waits at most for the acks in flight


class Acks:
    def __init__(self) -> None:
        self._count = 0
        self._none = threading.Condition()

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Around one request, from the gate's verdict to its ack."""
        with self._none:
            self._count += 1
        try:
            yield
        finally:
            with self._none:
                self._count -= 1
                if self._count == 0:
                    self._none.notify_all()

    def after(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """`fn(*args)` once no request is being acknowledged, or after `AFTER_ACKS`."""
        with self._none:
            self._none.wait_for(lambda: self._count == 0, AFTER_ACKS)
        return fn(*args, **kwargs)
