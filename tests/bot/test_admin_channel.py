"""What the admins see in their channel: a quarantined lease, an orphaned device, credit
running low."""

from __future__ import annotations

from dataclasses import replace

from commands.sweep import sweep
from metal.provider import TAG, DeviceSpec
from tests.bot.conftest import ADMIN_CHANNEL, Slack, active_lease


def admin_texts(slack: Slack) -> list[str]:
    return [m["text"] for m in slack.fake.messages(ADMIN_CHANNEL)]


def test_a_lease_whose_deletes_keep_failing_is_reported_to_the_admins(slack: Slack) -> None:
    lease_id = active_lease(slack)
    for server in slack.ctx.lab.provider.list(f"lease-{lease_id}"):
        slack.ctx.lab.provider.inner.fail_deletes(server.id, times=100)
    slack.command(f"release {lease_id}", "U0OWNER")
    for _ in range(slack.ctx.lab.policy.delete_attempts + 1):
        sweep(slack.ctx.lab, slack.clock.advance(hours=1))
    assert slack.lease(lease_id).state == "quarantined"
    alerts = [t for t in admin_texts(slack) if "quarantined" in t]
    assert len(alerts) == 1 and f"#{lease_id}" in alerts[0]


def test_an_orphaned_device_is_deleted_and_reported(slack: Slack) -> None:
    lab = slack.ctx.lab
    stray = lab.provider.create(
        DeviceSpec("forgotten-7", "t1.small.x86", "ams1", "ubuntu_16_04", tags=(TAG,))
    )
    sweep(lab, slack.clock.now)
    sweep(lab, slack.clock.advance(hours=2))
    assert lab.provider.get(stray.id) is None
    assert any("forgotten-7" in t for t in admin_texts(slack))


def test_credit_running_low_is_reported_once_at_each_threshold(slack: Slack) -> None:
    lab = slack.ctx.lab
    # A lab of $60 a month: the 3-server, 48h lease ($58.80 with grace) takes 98% of it.
    slack.ctx.lab = replace(lab, policy=replace(lab.policy, monthly_credit_cents=6_000))
    active_lease(slack)
    sweep(slack.ctx.lab, slack.clock.advance(minutes=1))
    sweep(slack.ctx.lab, slack.clock.advance(minutes=1))
    low = [t for t in admin_texts(slack) if "of the lab's credit is spent or committed" in t]
    assert len(low) == 1 and "80%" in low[0]
