"""The public report, as a visitor sees it: exported as a static site and served at /report,
opened in headless Chromium; its numbers are the books', its charts render without JavaScript,
and nothing private is on it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import requests

from bot.app import create_app
from bot.cli import main
from bot.report_html import BURN_COLOUR, export, report_app
from bot.serve import local_server
from commands.credit_report import credit_report
from commands.report import public_month, public_text
from commands.review import approve
from commands.writeups import submit_writeup
from fakes.keys import public_key
from tests.bot.browser import dump_dom, pixels, screenshot
from tests.commands.helpers import file, lease, sweep_until_quiet
from tests.conftest import ADMIN, OTHER, OWNER, REVIEWER, with_policy

KEY = public_key("ada", "ada@lab")  # a well-formed key: requests check the blob
SLACK_IDS = (OWNER, OTHER, REVIEWER, ADMIN)
IPV4 = re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")
BURN_RGB = tuple(int(BURN_COLOUR[i : i + 2], 16) for i in (1, 3, 5))


@pytest.fixture
def story(lab, clock):
    """A month with a finished foundation lease that was written up, a running lease of
    another project whose servers have addresses, and a request still waiting."""
    lab = with_policy(lab, foundation_projects=(("coredns", "graduated"),))
    said = f"scale tests; ask <@{OTHER}> or ops@example.org about 10.1.2.3"
    done = file(lab, clock, OWNER, applicant="foundation", ssh_key=KEY,
                duration=timedelta(hours=6), purpose=said)  # fmt: skip
    assert approve(lab, REVIEWER, done, clock.now).ok
    sweep_until_quiet(lab, clock, timedelta(hours=2), limit=6)
    assert submit_writeup(lab, OWNER, done, "https://coredns.io/blog/lab", clock.now).ok
    running = file(lab, clock, OTHER, project="envoy", repo_url="https://github.com/envoyproxy/envoy",
                   ssh_key=KEY, count=2, purpose="ARM CI")  # fmt: skip
    assert approve(lab, REVIEWER, running, clock.now).ok
    sweep_until_quiet(lab, clock, timedelta(minutes=5), limit=3)
    assert lease(lab.db, running).state == "active"
    file(lab, clock, ADMIN, project="waiting-project")
    clock.advance(hours=3)
    return lab


def _private_things(page: str) -> list[str]:
    found = [i for i in SLACK_IDS if i in page]
    found += [m for m in ("ssh-ed25519", "AAAAC3Nza", "ops@example.org") if m in page]
    return found + IPV4.findall(page)


def test_the_report_adds_up_to_the_books(story, clock):
    report = public_month(story, "2026-11", clock.now)
    books = credit_report(story, clock.now).lab
    assert (report.granted, report.spent, report.committed) == (
        books.granted, books.spent, books.committed
    )  # fmt: skip
    assert sum(row.cents for row in report.leases) == report.spent + report.committed
    assert sum(c for _, c in report.by_project) == sum(c for _, c in report.by_class)
    assert report.burn[-1][1] == report.spent
    assert report.granted == report.spent + report.committed + report.available
    assert report.reserve.kept == report.reserve.used + report.reserve.left
    assert [row.project for row in report.leases] == ["envoy", "coredns"]


def test_people_words_lose_what_is_private():
    said = public_text(f"ping <@{OWNER}> or {OWNER}, ops@example.org, 10.0.0.1, fe80::1:2, {KEY}")
    assert _private_things(said) == [] and "fe80::1:2" not in said


def test_the_exported_site_in_a_browser(story, clock, tmp_path):
    written = export(story, tmp_path / "site", clock.now)
    assert [p.name for p in written] == ["index.html", "2026-11.html"]
    page = dump_dom(written[0].as_uri())
    assert "<h1>The lab in 2026-11</h1>" in page
    leases_table = page[page.index('id="leases"') :]
    assert "coredns" in leases_table and "envoy" in leases_table
    assert "waiting-project" not in page  # a request nobody granted is not spend
    assert 'href="https://coredns.io/blog/lab"' in page and "pending" in leases_table
    assert "foundation project (graduated)" in page and "other open-source project" in page
    assert re.search(r"<polyline id=\"burn-line\" points=\"[\d., ]+\"", page)
    assert page.count('class="bar"') == 2
    assert "<script" not in page
    assert _private_things(page) == []
    shot = pixels(screenshot(written[0].as_uri(), tmp_path / "shot.png", (760, 900)))
    burn_pixels = sum(row.count(BURN_RGB) for row in shot)
    assert burn_pixels > 200, "the burn line is not drawn"


def test_served_read_only_at_report(story, clock, slack):
    secret = slack.ctx.settings.slack_signing_secret
    with local_server(create_app(slack.ctx), secret, report_app(story, clock)) as url:
        base = url.removesuffix("/slack/events")
        answer = requests.get(f"{base}/report", timeout=10)
        assert answer.status_code == 200 and "text/html" in answer.headers["Content-Type"]
        assert _private_things(answer.text) == []
        assert requests.get(f"{base}/report/2026-11.html", timeout=10).text == answer.text
        assert requests.get(f"{base}/report/1999-01.html", timeout=10).status_code == 404
        assert requests.get(f"{base}/report/..%2F..%2Fetc", timeout=10).status_code == 404
        assert requests.post(f"{base}/report", data="x", timeout=10).status_code == 405
        page = dump_dom(f"{base}/report")
        assert "<h1>The lab in 2026-11</h1>" in page and 'id="burn"' in page


def test_labbot_report_exports_and_refuses_a_bad_month(tmp_path, monkeypatch, capsys):
    db_file = tmp_path / "cli.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db_file}")
    assert main(["credit"]) == 0  # opens this month's books
    capsys.readouterr()
    assert main(["report", "--out", str(tmp_path / "out")]) == 0
    assert f"The report is in {tmp_path / 'out' / 'index.html'}" in capsys.readouterr().out
    assert main(["report", "--month", "2026-13", "--out", str(tmp_path / "x")]) == 2
    assert "--month takes YYYY-MM of a month the books have opened" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
