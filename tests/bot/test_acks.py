"""Work done in a process that also acks lets the acks go first, for at most AFTER_ACKS."""

from __future__ import annotations

import threading
import time

from bot.acks import AFTER_ACKS, Acks
from bot.app import TrackedPool


def test_work_waits_while_a_request_is_being_acknowledged_and_starts_after_its_ack() -> None:
    acks = Acks()
    pool = TrackedPool(2, "test-work", after=acks)
    done = threading.Event()
    with acks.answering():
        pool.submit(done.set)
        assert not done.wait(0.2)  # the ack is still being answered
    assert done.wait(5)
    pool.shutdown(wait=True)


def test_work_under_a_steady_stream_of_acks_is_late_by_the_bound_not_starved() -> None:
    acks = Acks()
    pool = TrackedPool(2, "test-work", after=acks)
    done = threading.Event()
    with acks.answering():
        started = time.monotonic()
        pool.submit(done.set)
        assert done.wait(AFTER_ACKS + 5)
        assert time.monotonic() - started >= AFTER_ACKS * 0.9
    pool.shutdown(wait=True)


def test_work_with_no_ack_in_flight_starts_at_once() -> None:
    pool = TrackedPool(2, "test-work", after=Acks())
    started = time.monotonic()
    assert pool.submit(time.monotonic).result(5) - started < AFTER_ACKS / 2
    pool.shutdown(wait=True)
