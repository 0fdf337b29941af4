"""The servers' activity reports over real HTTP to a running `labbot serve` (issue 23): the user
data a server is created with, run as cloud-init would (under another root), installs the
reporter; the reporter, run against fixture /proc files, POSTs with curl and its samples are
written. Reports with a forged token, for a lease that ended, oversized, malformed, out of
range or far too frequent are refused with nothing written, and an ack during a flood of them
still answers. Where servers cannot report (no public URL, Socket Mode, turned off) they get
no reporter and no token."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlmodel import col, select

from bot.activity import BURST
from bot.settings import Settings, from_env
from commands.activity import new_token
from commands.lab import Lab
from commands.policy import Policy
from commands.reclaim import release
from commands.request import request
from commands.review import approve
from commands.sweep import sweep
from fakes.slack import FakeSlack
from fakes.slack_sender import SlackSender
from metal.provider import utcnow
from metal.simulated import SimulatedProvider
from storage.db import Database
from storage.models import ActivitySample, ActivityToken, Server
from tests.bot.conftest import SECRET
from tests.bot.test_serve import DEADLINE, free_port, labbot, serve_env, wait_healthy
from tests.conftest import OWNER, REVIEWER, Clock, make_lab, request_input

LOADAVG = "0.52 0.40 0.30 1/123 4567\n"
NET_DEV = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs "
    "drop fifo colls carrier compressed\n"
    "    lo: {lo} 10 0 0 0 0 0 0 {lo} 10 0 0 0 0 0 0\n"
    "  eth0: {rx} 50 0 0 0 0 0 0 {tx} 30 0 0 0 0 0 0\n"
)


@pytest.fixture
def served(fake: FakeSlack, database_url: str) -> Iterator[tuple[str, Lab, Clock]]:
    """`labbot serve` with a public URL, on a database with an active two-server lease made
    by a lab whose servers report there (its clock near the wall clock, so the serving
    sweeper finds nothing due)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db = Database(database_url)
    clock = Clock(utcnow())
    lab = make_lab(db, clock, Policy(activity_url=f"{base}/activity"))
    filed = request(lab, OWNER, request_input(count=2), clock.now)
    approve(lab, REVIEWER, filed.lease_id, clock.now)
    sweep(lab, clock.advance(minutes=3))
    process = labbot("serve", env=serve_env(fake, database_url, port, LABBOT_PUBLIC_URL=base))
    try:
        wait_healthy(port, process)
        yield base, lab, clock
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=DEADLINE)
        db.dispose()
    assert process.returncode == 0, err


def installed(lab: Lab, server: Server, root: Path) -> dict[str, str]:
    """Run the server's user data as cloud-init would, under `root`, with a systemctl that
    only notes what it was asked; returns the reporter's environment file."""
    assert isinstance(lab.provider, SimulatedProvider)
    script = root / "user-data"
    script.write_text(lab.provider.userdata[server.provider_id])
    bin_dir = root / "bin"
    bin_dir.mkdir()
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(f'#!/bin/sh\necho "$@" >>"{root}/systemctl.log"\n')
    systemctl.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LABBOT_ROOT": str(root)}
    subprocess.run(["sh", str(script)], env=env, check=True, timeout=DEADLINE)
    assert (root / "systemctl.log").read_text().splitlines() == [
        "daemon-reload",
        "enable --now labbot-activity.timer",
    ]
    assert (root / "etc/systemd/system/labbot-activity.timer").exists()
    env_file = root / "etc/labbot/activity.env"
    assert env_file.stat().st_mode & 0o077 == 0  # the token: root's alone
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines())


def proc_files(root: Path, *, user: int, system: int, idle: int, rx: int, tx: int) -> Path:
    proc = root / "proc"
    (proc / "net").mkdir(parents=True, exist_ok=True)
    (proc / "loadavg").write_text(LOADAVG)
    (proc / "stat").write_text(f"cpu  {user} 0 {system} {idle} 50 0 0 0 0 0\ncpu0 1 2 3 4\n")
    (proc / "net/dev").write_text(NET_DEV.format(lo=rx * 7, rx=rx, tx=tx))
    return proc


def report(root: Path, env: dict[str, str], proc: Path) -> subprocess.CompletedProcess:
    who = root / "who"
    who.write_text("#!/bin/sh\necho 'alice pts/0 2026-12-07 10:00'\necho 'bob pts/1'\n")
    who.chmod(0o755)
    return subprocess.run(
        [str(root / "usr/local/lib/labbot/report-activity")],
        env={
            "PATH": "/usr/bin:/bin",
            **env,
            "LABBOT_PROC": str(proc),
            "LABBOT_WHO": str(who),
            "STATE_DIRECTORY": str(root / "state"),
        },
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )


def samples(db: Database) -> list[ActivitySample]:
    with db.read() as session:
        return list(session.exec(select(ActivitySample).order_by(col(ActivitySample.id))).all())


def wait_for(check: Callable[[], bool], what: str) -> None:
    """labbot serve writes a report's sample a moment after it answers (another process)."""
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"waited in vain for {what}"
        time.sleep(0.05)


def post(base: str, body: bytes | str, token: str | None, **headers: str) -> requests.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(f"{base}/activity", data=body, headers=headers, timeout=DEADLINE)


GOOD = '{"interval_s": 300, "load_1m": 0.1, "cpu_busy": 0.02, "net_bytes": 1000, "sessions": 0}'


def test_a_server_reports_through_its_reporter_and_everything_else_is_refused(
    served: tuple[str, Lab, Clock], tmp_path: Path, fake: FakeSlack
) -> None:
    base, lab, clock = served
    with lab.db.read() as session:
        first, second = session.exec(select(Server).order_by(col(Server.id))).all()
    root = tmp_path / "first"
    root.mkdir()
    env = installed(lab, first, root)
    assert env["LABBOT_ACTIVITY_URL"] == f"{base}/activity"

    # The first run has nothing to compare the counters with: load and sessions only.
    proc = proc_files(root, user=100, system=50, idle=800, rx=5000, tx=3000)
    ran = report(root, env, proc)
    assert ran.returncode == 0, ran.stderr
    wait_for(lambda: len(samples(lab.db)) == 1, "the first report")
    one = samples(lab.db)[0]
    assert (one.server_id, one.lease_id, one.source) == (first.id, first.lease_id, "server")
    assert (one.interval_s, one.load_1m, one.sessions) == (300, 0.52, 2)
    assert (one.cpu_busy, one.net_bytes) == (None, None)  # unknown, not 0

    # Five minutes later: the CPU was busy 350 of 850 ticks; eth0 moved 80,000 bytes (lo,
    # which moved seven times as much, is not counted).
    state = root / "state/activity.state"
    then, *counters = state.read_text().split()
    state.write_text(" ".join([str(int(then) - 300), *counters]) + "\n")
    proc = proc_files(root, user=400, system=100, idle=1300, rx=65_000, tx=23_000)
    ran = report(root, env, proc)
    assert ran.returncode == 0, ran.stderr
    wait_for(lambda: len(samples(lab.db)) == 2, "the second report")
    two = samples(lab.db)[1]
    assert 300 <= two.interval_s <= 330  # five minutes, and the seconds between the runs
    assert two.cpu_busy == pytest.approx(350 / 850, abs=1e-4)
    assert two.net_bytes == 80_000

    forged = new_token()
    assert post(base, GOOD, forged).status_code == 401
    assert post(base, GOOD, None).status_code == 401
    assert post(base, "x" * 2000, forged).status_code == 413
    with lab.db.read() as session:
        token_rows = session.exec(select(ActivityToken)).all()
    assert len(token_rows) == 2  # hashes only: the test cannot even post as the second server
    second_token = _token_of(lab, second)
    assert post(base, "{not json", second_token).status_code == 400
    assert post(base, '{"interval_s": 300, "cpu_busy": 7}', second_token).status_code == 422
    assert post(base, '{"interval_s": 300, "why": "me"}', second_token).status_code == 422

    # A flood from one server: refused with 429 and Retry-After, while Slack's acks go on.
    sender = SlackSender(f"{base}/slack/events", SECRET)
    with ThreadPoolExecutor(8) as pool:
        flood = [pool.submit(post, base, GOOD, second_token) for _ in range(40)]
        ack = sender.slash_command(text="help", user_id=OWNER)
        answers = [f.result() for f in flood]
    assert ack.status_code == 200 and "/lab request" in ack.json()["text"]
    limited = [a for a in answers if a.status_code == 429]
    # Each web process (WEB_CONCURRENCY) keeps its own count: a burst of BURST in each.
    assert len(answers) - len(limited) <= BURST * Settings().web_concurrency
    assert all(int(a.headers["Retry-After"]) > 0 for a in limited)
    assert {a.status_code for a in answers} <= {202, 429}
    accepted = 2 + sum(a.status_code == 202 for a in answers)
    wait_for(lambda: len(samples(lab.db)) == accepted, "the flood's accepted reports written")

    # The lease is released: its servers' tokens are stale.
    release(lab, OWNER, first.lease_id, clock.advance(minutes=10))
    ran = report(root, env, proc)
    assert ran.returncode != 0 and "401" in ran.stderr
    kept = samples(lab.db)
    assert len(kept) == accepted  # the stale report wrote nothing
    assert all(s.server_id in (first.id, second.id) for s in kept)


def _token_of(lab: Lab, server: Server) -> str:
    """The second server's token, read from its user data as the server itself would."""
    assert isinstance(lab.provider, SimulatedProvider)
    userdata = lab.provider.userdata[server.provider_id]
    return userdata.split("\nset -- ", 1)[1].split("\n", 1)[0]


def test_without_a_public_url_or_in_socket_mode_servers_get_no_reporter(
    db: Database, clock: Clock
) -> None:
    env = {"LABBOT_PUBLIC_URL": "https://labbot.example.org/"}
    assert from_env(env).policy.activity_url == "https://labbot.example.org/activity"
    assert from_env({**env, "SLACK_APP_TOKEN": "xapp-1"}).policy.activity_url == ""
    assert from_env({**env, "LABBOT_ACTIVITY_REPORTS": "no"}).policy.activity_url == ""
    assert from_env({}).policy.activity_url == ""

    lab = make_lab(db, clock)
    filed = request(lab, OWNER, request_input(count=2), clock.now)
    approve(lab, REVIEWER, filed.lease_id, clock.now)
    assert isinstance(lab.provider, SimulatedProvider)
    assert lab.provider.userdata == {}
    with db.read() as session:
        assert session.exec(select(ActivityToken)).all() == []
        assert len(session.exec(select(Server)).all()) == 2


def test_a_public_url_a_shell_would_misread_is_refused_at_start_up() -> None:
    from bot.settings import SettingsError

    with pytest.raises(SettingsError, match="LABBOT_PUBLIC_URL"):
        from_env({"LABBOT_PUBLIC_URL": "https://lab.example.org/$(reboot)"})


def test_activity_is_not_served_without_a_public_url(fake: FakeSlack, database_url: str) -> None:
    port = free_port()
    process = labbot("serve", env=serve_env(fake, database_url, port))
    try:
        wait_healthy(port, process)
        answer = post(f"http://127.0.0.1:{port}", GOOD, new_token())
        assert answer.status_code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=DEADLINE)
    assert process.returncode == 0
