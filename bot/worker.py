"""Worker processes: they claim what the web processes kept in the inbox, and do it.

`labbot serve` starts LABBOT_WORKERS of them beside its sweeper (`python -m bot.worker`, watched
by gunicorn's arbiter: bot.children), so that a web process only verifies, keeps and acks, and
no ack waits in an interpreter busy with the work of another request. `labbot work` runs one on
its own: the Procfile's `worker` type, to add workers apart from the web processes.

A worker asks the inbox every POLL seconds whether anything waits (a read), claims as many
requests as it has free threads, and does each once (bot.work.run); it renews its claims while
it lives (bot.inbox.Renewal), so another worker takes over only the requests of one that died.
"""

from __future__ import annotations

import logging
import os
import threading

from bot.app import WORKER_THREADS, AppContext, build_context
from bot.children import run_child, until_stopped
from bot.inbox import Kept, Renewal, claim_due, due
from bot.logs import configure
from bot.settings import from_env
from bot.work import run

log = logging.getLogger(__name__)

POLL = 0.1  # seconds between looks at an empty inbox: the most a reply waits for a worker


class Worker:
    """Claims kept requests and does them on the context's pool, until stopped."""

    def __init__(self, ctx: AppContext, threads: int = WORKER_THREADS) -> None:
        self.ctx = ctx
        self._threads = threads
        self._busy = 0
        self._finished: list[int] = []  # done without a write: marked with the next claim
        self._free = threading.Condition()
        self._stopping = threading.Event()
        self._renewal = Renewal(ctx.lab, ctx.clock)
        self._loop = threading.Thread(target=self._claiming, name="inbox-worker", daemon=True)
        self._loop.start()

    def _claiming(self) -> None:
        while not self._stopping.is_set():
            with self._free:
                self._free.wait_for(lambda: self._busy < self._threads or self._stopping.is_set())
                free = self._threads - self._busy
                finished, self._finished = self._finished, []
            try:
                now = self.ctx.clock()
                waiting = due(self.ctx.lab, now)
                items = claim_due(self.ctx.lab, now, free, finished) if waiting or finished else []
            except Exception:
                log.exception("claiming kept requests failed; the next look tries again")
                items = []
            if not items:
                self._stopping.wait(POLL)
            for item in items:
                with self._free:
                    self._busy += 1
                self.ctx.work.submit(self._do, item)

    def _do(self, item: Kept) -> None:
        try:
            run(self.ctx, item, self._finish)
        finally:
            with self._free:
                self._busy -= 1
                self._free.notify_all()

    def _finish(self, ctx: AppContext, item_id: int) -> None:
        """A request that wrote nothing (a read) is marked done in the next claim's
        transaction rather than one of its own: a worker dying first only has it read again."""
        with self._free:
            self._finished.append(item_id)

    def stop(self) -> None:
        """Claim nothing more, finish what was claimed."""
        self._stopping.set()
        with self._free:
            self._free.notify_all()
        self._loop.join(timeout=5)
        self.ctx.work.wait_idle(30)
        with self._free:
            finished, self._finished = self._finished, []
        if finished:
            claim_due(self.ctx.lab, self.ctx.clock(), 0, finished)
        self._renewal.stop()


def main(*, child: bool = True) -> int:
    settings = from_env()
    configure(settings.log_format)
    if child:  # beside `labbot serve`'s web processes: their acks come first
        os.nice(settings.worker_niceness)
    ctx = build_context(settings)
    worker = Worker(ctx)
    log.info("worker doing kept requests on %s threads", WORKER_THREADS)
    until_stopped(child=child)
    worker.stop()
    ctx.shutdown()
    ctx.lab.db.dispose()
    return 0


if __name__ == "__main__":
    run_child("worker", main)
