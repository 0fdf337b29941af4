"""`labbot serve` as an operator runs it: a subprocess behind gunicorn, and the sweep's schedule."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta

import requests

from bot import scheduler
from fakes.slack import FakeSlack
from fakes.slack_sender import SlackSender
from tests.bot.conftest import SECRET, TOKEN

DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_env(fake: FakeSlack, database_url: str, port: int, **changes: str) -> dict[str, str]:
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake.base_url,
        "PORT": str(port),
        "DATABASE_URL": database_url,
        **changes,
    }
    env.pop("SLACK_APP_TOKEN", None)
    return {k: v for k, v in env.items() if v}


def labbot(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_healthy(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # workers still booting
            time.sleep(0.1)
    raise AssertionError("labbot serve never became healthy")


def test_serve_answers_slack_and_stops_cleanly_on_sigterm(
    fake: FakeSlack, database_url: str
) -> None:
    port = free_port()
    process = labbot("serve", env=serve_env(fake, database_url, port))
    try:
        wait_healthy(port, process)
        sender = SlackSender(f"http://127.0.0.1:{port}/slack/events", SECRET)
        answer = sender.slash_command(text="help", user_id="U0OWNER")
        assert answer.status_code == 200 and "/lab request" in answer.json()["text"]
        assert sender.slash_command(text="help", signature="bad").status_code == 401
        fake.wait_for(lambda c: c.method == "auth.test", timeout=DEADLINE)
        report = requests.get(f"http://127.0.0.1:{port}/report", timeout=DEADLINE)
        assert report.status_code == 200 and "text/html" in report.headers["Content-Type"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=DEADLINE)
    assert process.returncode == 0, err


def test_serve_without_the_signing_secret_names_it_and_exits(
    fake: FakeSlack, database_url: str
) -> None:
    env = serve_env(fake, database_url, free_port(), SLACK_SIGNING_SECRET="")
    process = labbot("serve", env=env)
    _, err = process.communicate(timeout=DEADLINE)
    assert process.returncode == 2
    assert "SLACK_SIGNING_SECRET is not set" in err


def test_the_sweep_job_runs_at_start_up_once_at_a_time_and_never_drops_a_late_run(
    monkeypatch, lab, clock
) -> None:
    ran = []
    monkeypatch.setattr(scheduler, "sweep", lambda lab, now: ran.append(now) or _Report())
    running = scheduler.start_sweeper(lab, clock, timedelta(hours=1))
    try:
        deadline = time.monotonic() + 5
        while not ran and time.monotonic() < deadline:
            time.sleep(0.01)
        jobs = {job.id: job for job in running.get_jobs()}
    finally:
        running.shutdown(wait=True)
    assert ran == [clock.now]
    assert set(jobs) == {scheduler.JOB_ID, scheduler.COURIER_ID, scheduler.METRICS_ID}
    for job in jobs.values():
        assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, None)
    assert str(running.timezone) == "UTC"


class _Report:
    errors: list[str] = []
