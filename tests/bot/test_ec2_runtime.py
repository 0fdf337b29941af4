"""Choosing and checking the EC2 backend at start-up, against moto's server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.runtime import build_lab
from bot.settings import Settings, SettingsError, from_env
from commands.lab import Code
from commands.policy import RequestInput
from commands.request import request
from fakes.ec2 import SCHEDULER_ROLE, FaultProxy, MotoServer, backstop_role
from fakes.keys import public_key
from fakes.notifier import RecordingNotifier
from metal.ec2 import Ec2Provider
from metal.ec2_catalog import EXAMPLE
from storage.models import Lease


@pytest.fixture(autouse=True)
def role(moto_server: MotoServer, ec2_proxy: FaultProxy) -> str:
    """The backstop role, made in moto's IAM as docs/providers.md says (a test names another)."""
    return backstop_role(moto_server.url)


def ec2_settings(proxy: FaultProxy, tmp_path: Path, **env: str) -> Settings:
    base = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'labbot.db'}",
        "LABBOT_PROVIDER": "ec2",
        "LABBOT_EC2_CATALOG": str(EXAMPLE),
        "LABBOT_EC2_BACKSTOP_ROLE": SCHEDULER_ROLE,
        "LABBOT_EC2_MAX_ATTEMPTS": "2",
        "AWS_ENDPOINT_URL": proxy.url,
    }
    return from_env({**base, **env})


def test_ec2_is_chosen_by_name_with_the_operators_catalog(
    ec2_proxy: FaultProxy, tmp_path: Path
) -> None:
    settings = ec2_settings(ec2_proxy, tmp_path, LABBOT_EC2_RETRY_MODE="adaptive")
    lab = build_lab(settings, RecordingNotifier())
    assert isinstance(lab.provider.inner, Ec2Provider)
    plans = lab.plans().plans
    assert plans["c7g.metal"].hourly_cents == 232 and plans["c7g.metal"].arch == "aarch64"
    assert plans["m5.metal"].hourly_cents == 461
    assert set(lab.plans().metros) == {"us-east-1", "us-west-2"}
    assert ec2_proxy.calls("DescribeRegions") == 2  # the credential was checked in each region


def test_a_refused_credential_stops_start_up_naming_the_setting(
    ec2_proxy: FaultProxy, tmp_path: Path
) -> None:
    ec2_proxy.fail("DescribeRegions", 401)
    with pytest.raises(SettingsError) as refused:
        build_lab(ec2_settings(ec2_proxy, tmp_path), RecordingNotifier())
    assert "AWS_ACCESS_KEY_ID" in str(refused.value)
    assert "testing" not in str(refused.value)


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"LABBOT_EC2_CATALOG": ""}, "LABBOT_EC2_CATALOG is not set"),
        ({"LABBOT_EC2_BACKSTOP_ROLE": ""}, "LABBOT_EC2_BACKSTOP_ROLE is not set"),
        ({"LABBOT_EC2_RETRY_MODE": "legacy"}, "LABBOT_EC2_RETRY_MODE must be one of"),
        ({"LABBOT_EC2_MAX_ATTEMPTS": "0"}, "LABBOT_EC2_MAX_ATTEMPTS must be a whole number"),
    ],
)
def test_ec2_settings_are_refused_by_name(
    ec2_proxy: FaultProxy, tmp_path: Path, env: dict[str, str], said: str
) -> None:
    with pytest.raises(SettingsError, match=said):
        build_lab(ec2_settings(ec2_proxy, tmp_path, **env), RecordingNotifier())


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            '[regions.us-east-1]\n[types."c7g.metal"]\narch = "aarch64"\n',
            "c7g.metal in .* has no hourly price",
        ),
        (
            '[regions.us-east-1]\n[types."c7g.metal"]\nhourly = 2.32\narch = "aarch64"\n',
            "no \\[\\[images\\]\\] entry for ubuntu_24_04 on aarch64 in us-east-1",
        ),
    ],
)
def test_a_catalog_with_a_gap_stops_start_up_saying_where(
    ec2_proxy: FaultProxy, tmp_path: Path, text: str, said: str
) -> None:
    path = tmp_path / "ec2.toml"
    path.write_text('os = ["ubuntu_24_04"]\n' + text)
    settings = ec2_settings(ec2_proxy, tmp_path, LABBOT_EC2_CATALOG=str(path))
    with pytest.raises(SettingsError, match=f"LABBOT_EC2_CATALOG: .*{said}"):
        build_lab(settings, RecordingNotifier())


def test_a_missing_backstop_role_stops_start_up_naming_the_setting(
    ec2_proxy: FaultProxy, moto_server: MotoServer, tmp_path: Path
) -> None:
    missing = SCHEDULER_ROLE.replace("labbot-backstop", "labbot-nobody")
    settings = ec2_settings(ec2_proxy, tmp_path, LABBOT_EC2_BACKSTOP_ROLE=missing)
    with pytest.raises(SettingsError) as refused:
        build_lab(settings, RecordingNotifier())
    assert str(refused.value) == (
        f"LABBOT_EC2_BACKSTOP_ROLE ({missing}) names no role in this account"
    )


def test_a_request_on_ec2_gets_the_catalogs_os_and_a_sentence_for_another(
    ec2_proxy: FaultProxy, tmp_path: Path
) -> None:
    lab = build_lab(ec2_settings(ec2_proxy, tmp_path), RecordingNotifier())
    assert lab.policy.default_os == ""  # nothing set by hand

    def ask(os: str):
        return request(
            lab,
            "U0ALICE",
            RequestInput(
                project="coredns",
                repo_url="https://github.com/coredns/coredns",
                purpose="CI",
                plan="c7g.metal",
                metro="us-east-1",
                os=os,
                count=1,
                duration=timedelta(hours=4),
                ssh_key=public_key("alice"),
            ),
            datetime(2026, 11, 5, 9, 0, tzinfo=UTC),
        )

    filed = ask("")
    assert filed.ok, filed.message
    with lab.db.read() as session:
        assert session.get(Lease, filed.lease_id).os == "ubuntu_24_04"
    refused = ask("ubuntu_16_04")
    assert refused.code == Code.BAD_INPUT  # and it says what would be accepted:
    assert "unknown OS 'ubuntu_16_04'; choose one of ubuntu_24_04" in refused.message


def test_a_default_os_the_catalog_does_not_offer_stops_start_up(
    ec2_proxy: FaultProxy, tmp_path: Path
) -> None:
    config = tmp_path / "labbot.toml"
    config.write_text('[policy]\ndefault_os = "ubuntu_16_04"\n')
    settings = ec2_settings(ec2_proxy, tmp_path, LABBOT_CONFIG=str(config))
    with pytest.raises(SettingsError) as refused:
        build_lab(settings, RecordingNotifier())
    assert str(refused.value) == (
        "LABBOT_CONFIG: [policy] default_os 'ubuntu_16_04' is not offered by the provider's "
        "catalog; choose one of ubuntu_24_04, or leave it out for ubuntu_24_04."
    )
