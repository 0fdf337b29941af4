"""The requests a process is acknowledging right now, which its own work lets go first.

Where one process both acks and works (Socket Mode, the demo, the tests; a web process of
`labbot serve` only for the work it could not keep), the two want the same interpreter lock and
the same SQLite write lock, and a burst of work made every ack behind it wait. The ack has
Slack's three seconds; the answer that follows has minutes (a response_url takes posts for 30).
So a piece of work starts only once no request has been acknowledged for `QUIET` (requests
come in bursts, and the count of those being answered touches zero between two of a burst), or
once it has waited `AFTER_ACKS`, so that work under a steady stream of requests is late by that
much, never starved. Work already started is not stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

AFTER_ACKS = 1.0  # seconds a piece of work waits at most for the acks in flight
QUIET = 0.02  # seconds without an ack in flight that end a burst


class Acks:
    def __init__(self) -> None:
        self._count = 0
        self._last = float("-inf")  # when the last ack went out (time.monotonic)
        self._none = threading.Condition()

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Around one request, from bolt taking it to its ack."""
        with self._none:
            self._count += 1
        try:
            yield
        finally:
            with self._none:
                self._count -= 1
                self._last = time.monotonic()
                if self._count == 0:
                    self._none.notify_all()

    def after(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """`fn(*args)` once no request has been acknowledged for `QUIET`, or after
        `AFTER_ACKS`."""
        deadline = time.monotonic() + AFTER_ACKS
        with self._none:
            while (now := time.monotonic()) < deadline:
                if self._count:
                    self._none.wait(deadline - now)
                elif (calm := self._last + QUIET - now) > 0:
                    self._none.wait(min(calm, deadline - now))
                else:
                    break
        return fn(*args, **kwargs)
