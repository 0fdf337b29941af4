"""The processes `labbot serve` runs beside its web workers, and how each of them stops.

gunicorn's arbiter starts, restarts and stops them (`Child`): the sweeper (bot.sweeper) and the
inbox workers (bot.worker). Each is a fresh interpreter started with `python -m`, not a fork of
the arbiter: a fork copies locks held by other threads (the database pool's, the metrics
files') into a child that can never release them. A child stops on SIGTERM, or when its parent
is gone (`until_stopped`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from bot.settings import SettingsError

log = logging.getLogger(__name__)

RESTART_AFTER = 5.0  # seconds between restarts of a child that keeps dying
STOP_WITHIN = 30.0


class Child:
    """The arbiter's handle on one child process (`python -m module`): started when missing,
    stopped at exit."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.process: subprocess.Popen | None = None
        self.started = float("-inf")
        self.stopping = False

    def keep_running(self) -> None:
        if self.stopping or (self.process is not None and self.process.poll() is None):
            return
        if time.monotonic() - self.started < RESTART_AFTER:
            return
        if self.process is not None:
            log.error("%s exited (%s); starting another", self.module, self.process.returncode)
        self.started = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", self.module])

    def ask_to_stop(self) -> None:
        """Send the child SIGTERM, once, without waiting (the arbiter asks every child before it
        waits for any, so their shutdowns overlap)."""
        if not self.stopping and self.process is not None:
            self.process.terminate()
        self.stopping = True

    def stop(self) -> int | None:
        """Stop the child; returns its pid (to retire its metrics files), if one ran."""
        self.ask_to_stop()
        if self.process is None:
            return None
        try:
            self.process.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.pid


def until_stopped(*, child: bool) -> None:
    """Block until SIGTERM (or, for `child`, until the arbiter that started it is gone; its
    SIGINT is the arbiter's to handle). A process run on its own stops on SIGINT too."""
    parent = os.getppid()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN if child else lambda *_: stopping.set())
    while not stopping.wait(1.0) and not (child and os.getppid() != parent):
        pass


def run_child(name: str, main: Callable[[], int]) -> NoReturn:
    """Run a child's `main` as its process's whole life (its `__main__` block): bad settings
    are one line on stderr and exit status 2, not a traceback."""
    try:
        raise SystemExit(main())
    except SettingsError as error:
        print(f"labbot {name}: {error}", file=sys.stderr)
        raise SystemExit(2) from error
