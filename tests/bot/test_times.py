"""Times as each reader sees them, through the real bolt App over HTTP: every time labbot shows
in Slack is Slack's date token, `<!date^UNIX^{date_short_pretty} {time}|Nov 4, 2026 09:03 UTC>`,
which each reader's Slack writes in their own zone; a person's words that look like one stay
inert; the CLI and the public report say UTC."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.report_html import export
from commands.sweep import sweep
from tests.bot.conftest import ADMIN_CHANNEL, REVIEW_CHANNEL, Slack, active_lease, lease_id_in
from tests.conftest import OWNER, OWNER_KEY, REVIEWER, START


def token(at: datetime) -> str:
    """What a reader's Slack turns into their own time (Slack's documented date format)."""
    at = at.astimezone(UTC)
    fallback = f"{at:%b} {at.day}, {at:%Y %H:%M} UTC"
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def sent(slack: Slack) -> str:
    """Everything labbot sent to Slack, as one string."""
    return json.dumps([c.params for c in slack.fake.calls() if c.method != "auth.test"])


def test_the_token_is_slacks_date_format_with_a_utc_fallback() -> None:
    assert token(START) == ("<!date^1793610000^{date_short_pretty} {time}|Nov 2, 2026 09:00 UTC>")


def test_dms_cards_home_list_and_show_write_times_as_date_tokens(slack: Slack) -> None:
    lease_id = active_lease(slack)
    ends = slack.lease(lease_id).ends_at
    [ready] = [m for m in slack.dms(OWNER) if "is ready" in m["text"]]
    assert f"It ends {token(ends)};" in ready["text"]
    assert token(ends) in json.dumps(ready["blocks"])

    card = slack.fake.current_message(*slack.card_ref(lease_id))
    assert f"approved by <@{REVIEWER}> at {token(START)}" in json.dumps(card)

    slack.command("list", OWNER)
    assert f"(ends {token(ends)})" in slack.replies()[-1]
    slack.command(f"show {lease_id}", OWNER)
    shown = slack.replies()[-1]
    assert f"Requested {token(START)}; decided by <@{REVIEWER}> {token(START)}" in shown
    assert f"ends {token(ends)}" in shown

    slack.sender.event({"type": "app_home_opened", "user": OWNER, "tab": "home"})
    slack.settle()
    assert f"(ends {token(ends)})" in json.dumps(slack.fake.calls("views.publish")[-1].params)

    sweep(slack.ctx.lab, ends - timedelta(hours=24))
    reminder = slack.dms(OWNER)[-1]
    assert f"ends in 1d, at {token(ends)}." in reminder["text"]

    slack.command(f"extend {lease_id} 12h", OWNER)
    assert f"it now ends {token(ends + timedelta(hours=12))}." in slack.replies()[-1]


def test_the_review_channel_and_the_admins_see_date_tokens(slack: Slack) -> None:
    lab = slack.ctx.lab
    # A lab of $60 a month: the 3-server, 48h lease takes 98% of it, so the admins are told.
    slack.ctx.lab = replace(lab, policy=replace(lab.policy, monthly_credit_cents=6_000))
    lease_id = active_lease(slack)
    sweep(slack.ctx.lab, slack.clock.advance(minutes=1))
    [low] = [m["text"] for m in slack.fake.messages(ADMIN_CHANNEL) if "credit" in m["text"]]
    assert ", runs out <!date^" in low and " UTC>." in low

    ends = slack.lease(lease_id).ends_at
    for hours_before in (24, 1):
        sweep(slack.ctx.lab, ends - timedelta(hours=hours_before))
    sweep(slack.ctx.lab, ends - timedelta(minutes=30))
    [silent] = [
        m["text"] for m in slack.fake.messages(REVIEW_CHANNEL) if "will be reclaimed" in m["text"]
    ]
    reclaim_at = ends + slack.ctx.lab.policy.grace
    assert f"will be reclaimed at {token(reclaim_at)}" in silent
    assert f"last reminder ({token(ends - timedelta(hours=1))})" in silent


FORGED = "<!date^1893456000^{date_short_pretty} {time}|Jan 1, 2030 00:00 UTC>"


def test_a_purpose_that_looks_like_a_time_or_a_broadcast_stays_inert(slack: Slack) -> None:
    purpose = f"load tests <!date^0^x|y> {FORGED} <!channel> <!here|here>"
    slack.command(
        "request 1 c1.small.x86 ams1 24h project=coredns "
        f'repo=https://github.com/coredns/coredns "{purpose}" key="{OWNER_KEY}"',
        OWNER,
    )
    lease_id = lease_id_in(slack.replies()[-1])
    assert slack.lease(lease_id).purpose == purpose
    slack.command(f"show {lease_id}", REVIEWER)
    slack.sender.event({"type": "app_home_opened", "user": REVIEWER, "tab": "home"})
    slack.settle()
    everything = sent(slack)
    for markup in ("<!date^0^x|y>", FORGED, "<!channel>", "<!here"):
        assert markup not in everything
    escaped = FORGED.replace("<", "&lt;").replace(">", "&gt;")
    assert "&lt;!date^0^x|y&gt;" in everything and "&lt;!channel&gt;" in everything
    assert escaped in slack.replies()[-1]  # `show`
    assert escaped in json.dumps(slack.fake.calls("views.publish")[-1].params)  # App Home
    assert escaped in json.dumps(slack.fake.messages(REVIEW_CHANNEL))  # the card


def test_the_cli_and_the_report_say_utc(
    slack: Slack,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lease_id = active_lease(slack)
    ends = slack.lease(lease_id).ends_at
    slack.command(f"approve {lease_id}", REVIEWER)  # refused, and audited, with a time in it
    assert f"at {token(START)}" in slack.replies()[-1]
    monkeypatch.setenv("DATABASE_URL", slack.db.url)
    for name in ("LABBOT_CONFIG", "PACKET_AUTH_TOKEN", "LABBOT_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    assert main(["show", str(lease_id)]) == 0
    out = capsys.readouterr().out
    assert "Requested Nov 2, 2026 09:00 UTC; decided by" in out
    assert f"ends {ends:%b} {ends.day}, {ends:%Y %H:%M} UTC" in out and "<!date" not in out
    assert main(["audit", "--lease", str(lease_id)]) == 0
    audited = capsys.readouterr().out
    assert "at Nov 2, 2026 09:00 UTC." in audited and "<!date" not in audited

    for page in export(slack.ctx.lab, tmp_path / "report", slack.clock.now):
        text = Path(page).read_text()
        assert "<!date" not in text and "&lt;!date" not in text
