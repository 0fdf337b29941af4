"""The sweep, on a schedule, in the serving process.

One interval job with a stable id in an in-memory store: deadlines live in our own tables, so
nothing is lost on restart and nothing runs twice. APScheduler's defaults would drop a late run
with only a warning (misfire_grace_time=1 s) and could overlap runs; these settings make a late
run happen once, never concurrently. It also runs once at start-up, to catch up on whatever
fell due while the bot was down.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from bot.metrics import sweep_timer
from bot.runtime import Clock
from commands.health import record_sweep
from commands.lab import Lab
from commands.sweep import sweep

log = logging.getLogger(__name__)

JOB_ID = "labbot-sweep"


def run_sweep(lab: Lab, clock: Clock) -> None:
    """One pass, timed for /metrics and recorded in the database for /healthz; a failure is
    logged and the next pass tries again (the sweep is idempotent)."""
    now = clock()
    try:
        with sweep_timer():
            report = sweep(lab, now)
        record_sweep(lab.db, now)
    except Exception:
        log.exception("sweep failed; the next run retries")
        return
    for line in report.errors:
        log.warning("sweep: %s", line)


def start_sweeper(lab: Lab, clock: Clock, every: timedelta) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(
        run_sweep,
        "interval",
        args=(lab, clock),
        seconds=every.total_seconds(),
        id=JOB_ID,
        replace_existing=True,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        next_run_time=datetime.now(UTC),  # once at start-up, then every interval
    )
    scheduler.start()
    return scheduler
