"""`labbot demo` tells the story through the real App, and the manifest asks for what it uses."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from bot.demo import main

MANIFEST = Path(__file__).parents[2] / "bot" / "manifest.yaml"


def test_the_demo_ends_with_the_reclaimed_lease_and_the_months_credit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main() == 0  # as `make run` runs it: on a throwaway database
    out = capsys.readouterr().out
    page = Path(out.split("The public report (what /report serves) is in ")[1].split(":")[0])
    public = page.read_text()  # the report it wrote is kept
    assert "<h1>The lab in 2026-11</h1>" in public
    assert "The lab's credit is given by cncf and armco." in public and "by-donor" in public
    for seen in (
        "[#lab-review] @alice asks for",
        "[only bob (envoy) sees] Only reviewers",
        "[a form opens for rita (reviewer): Deny]",
        "card updated] Request #1 approved",
        "[buttons: Extend +1d | Extend +3d | Add co-owners | Release now]",
        "[only alice (coredns) sees] Saved SHA256:",
        "[DM to carol (coredns)] Lease #1 is ready: log in as root",
        "(ed25519, alice@laptop)\n• SHA256:",
        "[only carol (coredns) sees] Lease #1 extended by 12h",
        "[#lab-review] Lease #1 (3 x c1.small.x86 in ams1 for 2d12h for coredns) will be reclaimed",
        "State: reclaimed",
        "Write-up: https://coredns.io/blog/lab-scale-tests",
        "Credit for 2026-11",
        "The books balance: granted $27,000.00 = spent $746.40 + committed $3,012.80",
        # one test across three metros: one lease, listed by metro, reclaimed whole
        "Request #11 filed: 6 x c1.small.x86 in ewr1 (2), sjc1 (2), ams1 (2) for 1d",
        "Lease #11 is ready in ewr1 (2), sjc1 (2), ams1 (2): log in as root",
        "• coredns-11-6 (ams1): 147.75.",
        "sjc1: 2 server(s)\n  coredns-11-3 [active] 147.75.",
        "[lease_11_ewr1]\n        coredns-11-1 ansible_host=147.75.",
        "Lease #11 is over and every server is deleted.",
        "[DM to bob (envoy)] Lease #6 is ready: log in as root",
        "• and 110 more: every server is in the files sent with this message",
        "[files in the DM to bob (envoy)] Every server of lease #6 (120), in three files",
        "lease-6-servers.csv (121 lines):\n        hostname,address,addresses,metro,plan",
        "lease-6-ssh_config (482 lines):\n        Host envoy-6-1\n            HostName 147.75.",
        "1. [foundation project (graduated)] #1 coredns",
        "flagged: 'Globex' is not a member organization (Intel, Packet)",
        "Repository checked: public, Apache-2.0 (OSI-approved).",
        "would eat into the 20% of the month kept for other open-source projects",
        "Kept for other open-source projects (20%): kept $5,400.00",
        "The public report (what /report serves) is in ",
        "[App Home of rita (reviewer)] Showing 1 to 15 of 32.",
        "[buttons: More (17 not shown)]",
        "[App Home of rita (reviewer)] Showing 16 to 30 of 32.",
        "[buttons: Previous | More (2 not shown)]",
        "Showing 1 to 20 of 32 (page 1 of 2). `/lab queue 2` shows the next page.",
        "Showing 21 to 32 of 32 (page 2 of 2). That is the last page",
        "It ends Nov 4, 2026 09:25 UTC; you will be reminded",  # times as in the reader's zone
        # two donors: an Arm request to armco, which asks less; an x86 one to cncf
        "Request #7 filed: 2 x c1.large.arm in ams1 for 1d for kubevirt. Reviewers have been "
        "asked; you will get a DM with their decision. armco pays",
        "Other donors: armco pays only for aarch64 servers",
        "80% of armco's credit is spent or committed ($1,756.00 of $2,000.00)",
        # armco's month is nearly full: the next Arm request goes to cncf
        "Request #10 filed: 8 x c1.large.arm in ams1 for 4d for vitess. Reviewers have been "
        "asked; you will get a DM with their decision. cncf pays",
        "Other donors: armco would over-commit",
        "[buttons: Approve | Deny… | menu: cncf (or armco)]",
        # the capacity calendar: 8 of 10 held, 4 more refused with the next window that fits
        "Capacity calendar: nrt1: 0 of the lab's 10 held at the busiest moment of its window",
        "[only ivy (cortex) sees] That request would not fit the capacity calendar: 4 more "
        "c1.xlarge.x86 in nrt1 do not fit from Nov 5, 2026 04:43 UTC (8 of the lab's 10 "
        "c1.xlarge.x86 in nrt1 are held then); the next 1d that fits starts Nov 7, 2026 04:43 UTC.",
        "Fri Nov 06     8/10  ########..\nSat Nov 07     8/10  ########..\nSun Nov 08     0/10",
        # a booking for tomorrow, 09:00 in alice's Amsterdam (08:00 UTC), ready before it opens
        "It starts Nov 6, 2026 08:00 UTC; its servers will be prepared from Nov 6, 2026 07:45 UTC",
        "[buttons: Add co-owners | Cancel booking]",
        "They are being prepared for its start, Nov 6, 2026 08:00 UTC.",
        "is ready ahead of its start, Nov 6, 2026 08:00 UTC",
    ):
        assert seen in out, seen
    thanks = out.split("armco's report (labbot report --donor armco) is in ")[1]
    # told after the booking's day (the story's last step), so armco's servers ran longer
    assert "its $2,000.00 paid for 22 servers, 732 server hours so far" in thanks
    assert "for linkerd, kubevirt; no other donor's lease is on it" in thanks
    gift = Path(thanks.split(":")[0]).read_text()
    assert "What armco gave the lab in 2026-11" in gift and "vitess" not in gift
    shutil.rmtree(page.parent)
    assert list(tmp_path.iterdir()) == []  # and the database is gone


def test_the_packet_demo_provisions_through_packet_python(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    assert main(tmp_path, provider="packet") == 0
    out = capsys.readouterr().out
    assert "fake Packet API at 127.0.0.1:" in out
    assert "coredns-1-1: 147.75." in out
    assert "State: reclaimed" in out and "Credit for 2026-11" in out


def test_the_manifest_asks_for_the_scopes_events_and_surfaces_labbot_uses() -> None:
    text = MANIFEST.read_text()
    for needed in (
        "- commands",
        "- chat:write",
        "- files:write",
        "- im:write",
        "- usergroups:read",
        "- users:read",
        "- app_home_opened",
        "home_tab_enabled: true",
        "command: /lab",
        "should_escape: true",  # a typed @name arrives as the member picked
        "/slack/events",
    ):
        assert needed in text, needed
