"""`labbot demo --provider ec2` tells the story through boto3 against moto's server."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.demo import main
from fakes.ec2 import CREDENTIALS


def test_the_ec2_demo_provisions_extends_and_reclaims_through_boto3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)  # restored afterwards: the demo sets them for itself
    assert main(tmp_path, provider="ec2") == 0
    out = capsys.readouterr().out
    assert "from moto's EC2 at http://127.0.0.1:" in out
    assert "request 3 c7g.metal us-east-1 48h" in out
    console = "[EC2 console] 3 running; backstop schedules labbot-lease-1 at(2026-11-05T12:20:00)"
    assert console in out
    assert "labbot-lease-1 at(2026-11-05T22:25:00) UTC" in out  # moved by the extension
    assert "[EC2 console] no instances" in out
    assert "State: reclaimed" in out and "The books balance" in out
