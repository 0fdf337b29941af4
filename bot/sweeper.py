"""The sweep's own process: one per `labbot serve`, started and watched by gunicorn's arbiter.

Not in a web worker: there are several of those, and a sweep pass would compete with acks for
that worker's interpreter lock. Not a thread in the arbiter: the arbiter forks every worker it
starts or replaces, and a fork copies locks held by other threads (the database pool's, the
metrics files') into a child that can never release them. So a fresh interpreter, whose
counters land in the same metrics directory as the workers'.

    python -m bot.sweeper    (run by `labbot serve`; not a command of its own)
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial

from bot.app import build_context
from bot.logs import configure
from bot.scheduler import start_sweeper
from bot.settings import SettingsError, from_env
from bot.takeover import take_over

log = logging.getLogger(__name__)

RESTART_AFTER = 5.0  # seconds between restarts of a sweeper that keeps dying
STOP_WITHIN = 30.0


def main() -> int:
    settings = from_env()
    configure(settings.log_format)
    parent = os.getppid()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the arbiter stops us when it stops
    ctx = build_context(settings)
    scheduler = start_sweeper(
        ctx.lab, ctx.clock, settings.sweep_interval, also=partial(take_over, ctx)
    )
    log.info("sweeper running every %s", settings.sweep_interval)
    while not stopping.wait(1.0) and os.getppid() == parent:
        pass
    scheduler.shutdown(wait=True)
    ctx.shutdown()
    ctx.lab.db.dispose()
    return 0


class Sweeper:
    """The arbiter's handle on the sweeper process: started when missing, stopped at exit."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.started = float("-inf")
        self.stopping = False

    def keep_running(self) -> None:
        if self.stopping or (self.process is not None and self.process.poll() is None):
            return
        if time.monotonic() - self.started < RESTART_AFTER:
            return
        if self.process is not None:
            log.error("the sweeper exited (%s); starting another", self.process.returncode)
        self.started = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", "bot.sweeper"])

    def stop(self) -> int | None:
        """Stop the sweeper; returns its pid (to retire its metrics files), if one ran."""
        self.stopping = True
        if self.process is None:
            return None
        self.process.terminate()
        try:
            self.process.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.pid


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except SettingsError as error:
        print(f"labbot sweeper: {error}", file=sys.stderr)
        raise SystemExit(2) from error
