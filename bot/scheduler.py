"""The sweep, on a schedule, in the serving process, and the courier beside it.

One interval job with a stable id in an in-memory store: deadlines live in our own tables, so
nothing is lost on restart and nothing runs twice. APScheduler's defaults would drop a late run
with only a warning (misfire_grace_time=1 s) and could overlap runs; these settings make a late
run happen once, never concurrently. It also runs once at start-up, to catch up on whatever
fell due while the bot was down.

The courier is a second job of the same kind, every second: it delivers the notices that waited
for a lane's room (Slack's pace of about a message a second per channel), which the sweep's
interval would otherwise hold up for a whole interval. It costs one indexed query when nothing
is due.

A third job asks the providers' metrics of the servers' use (commands.provider_activity) once
a minute, which costs a claim unless its period (15 minutes) is over: apart from the sweep, so
a slow or throttled metrics API never delays a sweep pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from bot.metrics import sweep_timer
from bot.runtime import Clock
from commands.health import record_sweep
from commands.lab import Lab
from commands.notices import deliver
from commands.provider_activity import poll_provider_activity
from commands.sweep import sweep

log = logging.getLogger(__name__)

JOB_ID = "labbot-sweep"
COURIER_ID = "labbot-courier"
COURIER_EVERY = timedelta(seconds=1)
METRICS_ID = "labbot-provider-activity"
METRICS_EVERY = timedelta(minutes=1)  # a claim each minute; the poll itself every POLL_EVERY

Also = Callable[[datetime], object]


def run_sweep(lab: Lab, clock: Clock, also: Also | None = None) -> None:
    """One pass, timed for /metrics and recorded in the database for /healthz; a failure is
    logged and the next pass tries again (the sweep is idempotent). `also` is the Slack side's
    share of the pass (pruning the inbox of requests done long ago: bot.inbox)."""
    now = clock()
    try:
        with sweep_timer():
            report = sweep(lab, now)
            if also is not None:
                also(now)
        record_sweep(lab.db, now)
    except Exception:
        log.exception("sweep failed; the next run retries")
        return
    for line in report.errors:
        log.warning("sweep: %s", line)


def run_courier(lab: Lab, clock: Clock) -> None:
    """Deliver what has room now; a failure is logged and the next tick tries again."""
    if lab.notifier is None:
        return
    try:
        deliver(lab.db, lab.notifier, clock(), owner=lab.replica)
    except Exception:
        log.exception("delivering notices failed; the next tick retries")


def run_metrics_poll(lab: Lab, clock: Clock) -> None:
    """The providers' metrics of the servers' use (commands.provider_activity), in a job of
    its own so that a slow metrics API never holds up a sweep pass; a failure is logged."""
    try:
        poll_provider_activity(lab, clock())
    except Exception:
        log.exception("polling the providers' metrics failed; the next period retries")


def start_sweeper(
    lab: Lab, clock: Clock, every: timedelta, also: Also | None = None
) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    for job, args, interval, job_id in (
        (run_sweep, (lab, clock, also), every, JOB_ID),
        (run_courier, (lab, clock), COURIER_EVERY, COURIER_ID),
        (run_metrics_poll, (lab, clock), METRICS_EVERY, METRICS_ID),
    ):
        scheduler.add_job(
            job,
            "interval",
            args=args,
            seconds=interval.total_seconds(),
            id=job_id,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=datetime.now(UTC),  # once at start-up, then every interval
        )
    scheduler.start()
    return scheduler
