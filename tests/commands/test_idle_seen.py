"""Idle servers as the operator and the public see them: idle server-hours per project in the
gauges (/metrics) and, per month, the share of each project's server-hours that was idle in the
public report."""

from __future__ import annotations

from bot.metrics import registry_for, render
from commands.gauges import gauges
from commands.report import public_month
from commands.sweep import sweep
from tests.commands.helpers import active
from tests.commands.samples import BUSY, QUIET, report


def test_idle_server_hours_per_project_and_the_month_s_idle_share(lab, clock):
    lease_id = active(lab, clock)
    start = clock.now
    report(lab.db, lease_id, start, clock.advance(hours=6, minutes=5), **QUIET)
    sweep(lab, clock.now)
    # 3 servers quiet for 6h05m each, from the moment they came up
    assert gauges(lab, clock.now).idle_server_hours == {"coredns": 3 * (6 + 5 / 60)}
    scraped = render(registry_for(lab, lambda: clock.now)).decode()
    assert 'labbot_idle_server_hours{project="coredns"} 18.25' in scraped
    [share] = public_month(lab, "2026-11", clock.now).idle
    assert (share.project, share.share) == ("coredns", 1.0)

    report(lab.db, lease_id, clock.now, clock.advance(hours=6, minutes=5), **BUSY)
    sweep(lab, clock.now)
    assert gauges(lab, clock.now).idle_server_hours == {"coredns": 3 * (6 + 5 / 60)}
    [share] = public_month(lab, "2026-11", clock.now).idle
    assert share.server_hours == 3 * (12 + 10 / 60)
    assert share.share == 0.5
