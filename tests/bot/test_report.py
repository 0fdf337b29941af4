"""The public report, as a visitor sees it: exported as a static site and served at /report,
opened in headless Chromium; its numbers are the books', its charts render without JavaScript,
and nothing private is on it. With several donors it shows what each one's money paid for, and
`labbot report --donor` writes one donor's pages alone."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest
import requests
from sqlmodel import update

from bot.app import create_app
from bot.cli import main
from bot.report_html import BURN_COLOUR, export, render_month, report_app
from bot.serve import local_server
from commands.credit import books
from commands.credit_report import credit_report
from commands.donors import Donor
from commands.reclaim import release
from commands.report import donor_month, public_month, public_text
from commands.reserve import irregular_leases
from commands.review import approve
from commands.sweep import sweep
from commands.writeups import submit_writeup
from fakes.keys import public_key
from storage.models import Lease
from tests.bot.browser import dump_dom, pixels, screenshot
from tests.commands.helpers import PROVISION, file, lease, servers, sweep_until_quiet
from tests.conftest import ADMIN, OTHER, OWNER, REVIEWER, with_policy

KEY = public_key("ada", "ada@lab")  # a well-formed key: requests check the blob
SLACK_IDS = (OWNER, OTHER, REVIEWER, ADMIN)
IPV4 = re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")
BURN_RGB = tuple(int(BURN_COLOUR[i : i + 2], 16) for i in (1, 3, 5))


DONORS = (
    Donor("cncf", monthly_grant_cents=2_000_000),
    Donor("armco", monthly_grant_cents=500_000, architectures=frozenset({"aarch64"})),
)


def _tell(lab, clock, donors: dict[str, str] | None = None):
    """A month with a finished foundation lease that was written up, a running lease of
    another project whose servers have addresses, and a request still waiting; with `donors`,
    each lease is billed to the donor named for its project (set before approval, as a
    reviewer's pick on the card does)."""
    said = f"scale tests; ask <@{OTHER}> or ops@example.org about 10.1.2.3"
    done = file(lab, clock, OWNER, applicant="foundation", ssh_key=KEY,
                duration=timedelta(hours=6), purpose=said)  # fmt: skip
    _bill(lab, done, (donors or {}).get("coredns"))
    assert approve(lab, REVIEWER, done, clock.now).ok
    sweep_until_quiet(lab, clock, timedelta(hours=2), limit=6)
    assert submit_writeup(lab, OWNER, done, "https://coredns.io/blog/lab", clock.now).ok
    running = file(lab, clock, OTHER, project="envoy", repo_url="https://github.com/envoyproxy/envoy",
                   ssh_key=KEY, count=2, purpose="ARM CI", plan="c1.large.arm")  # fmt: skip
    _bill(lab, running, (donors or {}).get("envoy"))
    assert approve(lab, REVIEWER, running, clock.now).ok
    sweep_until_quiet(lab, clock, timedelta(minutes=5), limit=3)
    assert lease(lab.db, running).state == "active"
    file(lab, clock, ADMIN, project="waiting-project")
    clock.advance(hours=3)
    return lab


def _bill(lab, lease_id: int, donor: str | None) -> None:
    if donor is not None:
        with lab.db.write() as session:
            session.exec(update(Lease).where(Lease.id == lease_id).values(donor=donor))


@pytest.fixture
def story(lab, clock):
    return _tell(with_policy(lab, foundation_projects=(("coredns", "graduated"),)), clock)


@pytest.fixture
def two_donors(lab, clock):
    """The same month with two donors: coredns's lease on cncf, envoy's Arm servers on armco."""
    lab = with_policy(lab, foundation_projects=(("coredns", "graduated"),), donor_list=DONORS)
    lab = replace(lab, providers={donor.name: lab.provider for donor in DONORS})
    return _tell(lab, clock, {"coredns": "cncf", "envoy": "armco"})


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
    [donor] = report.by_donor  # one donor: all of it, under the donor's name
    assert (donor.name, donor.granted) == ("lab", report.granted)
    assert (donor.cents, donor.by_project) == (report.spent + report.committed, report.by_project)


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
    assert "credit is given by" not in page  # a lab without [[donor]] tables: as before donors
    assert 'id="by-donor"' not in page and "Paid by" not in page
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


def test_spend_by_donor_and_by_project_within_each(two_donors, clock):
    report = public_month(two_donors, "2026-11", clock.now)
    cncf, armco = report.by_donor
    assert (cncf.name, cncf.granted, armco.name, armco.granted) == (
        "cncf",
        2_000_000,
        "armco",
        500_000,
    )
    assert [p for p, _ in cncf.by_project] == ["coredns"]
    assert [p for p, _ in armco.by_project] == ["envoy"]
    assert cncf.cents + armco.cents == report.spent + report.committed
    with two_donors.db.read() as session:
        for donor in report.by_donor:  # each donor's part is its books'
            book = books(session, ["2026-11"], two_donors.policy, clock.now, donor=donor.name)
            spent, committed = book["2026-11"].spent, book["2026-11"].committed
            assert (donor.granted, donor.cents) == (book["2026-11"].granted, spent + committed)
            assert sum(c for _, c in donor.by_project) == donor.cents
    assert {row.project: row.donor for row in report.leases} == {
        "coredns": "cncf",
        "envoy": "armco",
    }


def test_a_donor_s_month_is_what_its_money_paid_for(two_donors, clock):
    cncf, armco = DONORS
    public = public_month(two_donors, "2026-11", clock.now)
    done = donor_month(two_donors, cncf, "2026-11", clock.now)
    running = donor_month(two_donors, armco, "2026-11", clock.now)
    assert [row.project for row in done.leases] == ["coredns"]
    assert [row.project for row in running.leases] == ["envoy"]
    # a 6 h lease reclaimed by the 2-hourly sweep after its end: 3 servers ran 8 h at $0.40
    assert (done.servers, done.server_hours, done.writeups) == (3, 24, 1)
    assert done.spent == done.cents == 24 * 40
    # two Arm servers up 3 h 15 min each so far (billed by the started hour: 4 h at $0.50 each),
    # the rest of the lease held
    assert (running.servers, running.server_hours, running.writeups) == (2, 6, 0)
    assert running.spent == 2 * 4 * 50 and running.cents > running.spent
    assert done.cents + running.cents == public.spent + public.committed
    assert done.spent + running.spent == public.spent
    assert (done.granted, running.granted) == (2_000_000, 500_000)


def test_a_lease_billing_past_its_released_holds_is_reported(two_donors, clock):
    """A released lease whose servers will not delete: its holds went back, but its servers
    bill on until they are gone, and the report (and its donor's month) counts what they billed."""
    cncf, _ = DONORS
    stuck = file(two_donors, clock, OWNER, project="etcd", repo_url="https://github.com/etcd-io/etcd",
                 ssh_key=KEY, count=2, purpose="raft soak")  # fmt: skip
    _bill(two_donors, stuck, "cncf")
    assert approve(two_donors, REVIEWER, stuck, clock.now).ok
    clock.advance(seconds=PROVISION.total_seconds() + 30)
    sweep(two_donors, clock.now)
    for server in servers(two_donors.db, stuck):
        two_donors.provider.fail_deletes(server.provider_id, 100)
    clock.advance(minutes=20)
    assert release(two_donors, OWNER, stuck, clock.now).ok
    clock.advance(hours=2)
    with two_donors.db.read() as session:
        assert stuck in irregular_leases(session, clock.now)
    public = public_month(two_donors, "2026-11", clock.now)
    month = donor_month(two_donors, cncf, "2026-11", clock.now)
    # two servers up 2 h 20 min each (billed by the started hour: 3 h at $0.40 each), nothing held
    etcd = 2 * 3 * 40
    [row] = [row for row in public.leases if row.id == stuck]
    assert (row.project, row.donor, row.state, row.cents) == ("etcd", "cncf", "releasing", etcd)
    assert dict(public.by_project)["etcd"] == etcd
    assert sum(row.cents for row in public.leases) == public.spent + public.committed
    ledger = credit_report(two_donors, clock.now).lab
    assert (public.spent, public.committed) == (ledger.spent, ledger.committed)
    [paid, _] = public.by_donor
    assert paid.by_project == [("coredns", 24 * 40), ("etcd", etcd)]
    assert paid.cents == 24 * 40 + etcd
    assert [(row.project, row.cents) for row in month.leases] == [
        ("coredns", 24 * 40),
        ("etcd", etcd),
    ]
    assert month.cents == month.spent == paid.cents


def test_the_report_with_two_donors_in_a_browser(two_donors, clock, tmp_path):
    [index, _] = export(two_donors, tmp_path / "site", clock.now)
    page = dump_dom(index.as_uri())
    assert "The lab's credit is given by cncf and armco." in page
    chart = page[page.index('id="by-donor"') :]
    assert chart[: chart.index("</svg>")].count('class="bar"') == 2
    donors_table = page[page.index('id="donors"') :]
    assert donors_table.index("cncf") < donors_table.index("coredns") < donors_table.index(
        "armco"
    ) < donors_table.index("envoy")  # fmt: skip
    assert "Paid by" in page
    assert _private_things(page) == []


def test_one_donor_s_pages_hold_only_its_leases(two_donors, clock, tmp_path):
    written = export(two_donors, tmp_path / "armco", clock.now, donor=DONORS[1])
    assert [p.name for p in written] == ["index.html", "2026-11.html"]
    page = dump_dom(written[0].as_uri())
    assert "<h1>What armco gave the lab in 2026-11</h1>" in page
    gift = page[page.index('id="gift"') :]
    assert "Servers that ran on it" in gift and "$5,000.00" in gift
    leases_table = page[page.index('id="leases"') :]
    assert "envoy" in leases_table and "coredns" not in page
    assert "foundation and members stop here" not in page  # the lab's reserve is not its own
    assert "<script" not in page and _private_things(page) == []
    shot = pixels(screenshot(written[0].as_uri(), tmp_path / "shot.png", (760, 900)))
    assert sum(row.count(BURN_RGB) for row in shot) > 200, "the donor's burn line is not drawn"


def test_labbot_report_for_a_donor_and_an_unknown_one(tmp_path, monkeypatch, capsys):
    config = tmp_path / "labbot.toml"
    config.write_text(
        '[[donor]]\nname = "cncf"\nprovider = "simulated"\nmonthly_grant = 20000\n\n'
        '[[donor]]\nname = "armco"\nprovider = "simulated"\nmonthly_grant = 5000\n'
        'architectures = ["aarch64"]\n'
    )
    monkeypatch.setenv("LABBOT_CONFIG", str(config))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    assert main(["credit"]) == 0  # opens this month's books
    capsys.readouterr()
    assert main(["report", "--donor", "armco", "--out", str(tmp_path / "armco")]) == 0
    index = tmp_path / "armco" / "index.html"
    assert f"armco's report is in {index} (1 month pages)" in capsys.readouterr().out
    assert "What armco gave the lab in" in index.read_text() and "$5,000.00" in index.read_text()
    assert main(["report", "--donor", "nobody", "--out", str(tmp_path / "x")]) == 2
    said = capsys.readouterr().err
    assert "--donor takes one of the lab's donors (cncf, armco), not 'nobody'" in said
    assert not (tmp_path / "x").exists()


def test_a_lab_with_one_named_donor_names_it(lab, clock):
    cncf = DONORS[0]
    lab = replace(with_policy(lab, donor_list=(cncf,)), providers={cncf.name: lab.provider})
    lease_id = file(lab, clock, count=1, duration=timedelta(hours=4))
    assert approve(lab, REVIEWER, lease_id, clock.now).ok
    report = public_month(lab, "2026-11", clock.now)
    page = render_month(report, ["2026-11"], lambda m: f"{m}.html")
    assert "The lab's credit is given by cncf." in page
    assert "by-donor" not in page and "Paid by" not in page  # no section of one row


def test_the_capacity_calendar_is_charted_in_a_browser(story, clock, tmp_path):
    lab = with_policy(story, capacity=(("c1.large.arm", "ams1", 4),))
    [calendar] = public_month(lab, "2026-11", clock.now).calendars
    assert (calendar.plan, calendar.metro) == ("c1.large.arm", "ams1")
    assert [d.held for d in calendar.days[:2]] == [2, 2]  # envoy's two Arm servers, 48h
    written = export(lab, tmp_path / "site", clock.now)
    page = dump_dom(written[0].as_uri())
    assert "c1.large.arm in ams1, the coming 14 days" in page
    assert page.count('class="held"') == 14
    assert 'id="calendar-c1-large-arm-ams1-limit"' in page
    assert "Tue Nov 03: 2 of 4 held" in page
    shot = pixels(screenshot(written[0].as_uri(), tmp_path / "shot.png", (760, 2400)))
    assert sum(row.count(BURN_RGB) for row in shot) > 400, "the limit line is not drawn"
