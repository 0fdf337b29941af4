"""Choosing and checking the metal backend at start-up."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import select

from bot.runtime import build_lab
from bot.settings import Settings, SettingsError, from_env
from commands.lab import Lab
from commands.notices import Kind
from fakes.notifier import RecordingNotifier
from fakes.packet import FakePacket
from metal.packet import PacketProvider
from metal.simulated import SimulatedProvider
from storage.models import Lease, Notice
from tests.commands.helpers import file
from tests.conftest import Clock


def packet_settings(fake: FakePacket, tmp_path: Path, **env: str) -> Settings:
    base = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'labbot.db'}",
        "PACKET_AUTH_TOKEN": fake.token,
        "PACKET_PROJECT_ID": fake.project_id,
        "PACKET_API_URL": fake.end_point,
        "PACKET_TIMEOUT": "5s",
    }
    return from_env({**base, **env})


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakePacket:
    with FakePacket() as running:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", running.ca_bundle_path)
        yield running


def test_a_packet_token_selects_the_packet_backend_and_its_catalog(
    fake: FakePacket, tmp_path: Path
) -> None:
    settings = packet_settings(fake, tmp_path)
    assert settings.provider == "packet"
    lab = build_lab(settings, RecordingNotifier())
    assert isinstance(lab.provider.inner, PacketProvider)
    assert lab.plans().plans["c1.small.x86"].hourly_cents == 40
    assert "ams1" in lab.plans().metros


def test_a_bad_token_stops_start_up_with_a_sentence_and_no_secret(
    fake: FakePacket, tmp_path: Path
) -> None:
    settings = packet_settings(fake, tmp_path, PACKET_AUTH_TOKEN="wrong-secret-value")
    with pytest.raises(SettingsError) as refused:
        build_lab(settings, RecordingNotifier())
    assert "PACKET_AUTH_TOKEN" in str(refused.value)
    assert "wrong-secret-value" not in str(refused.value)
    assert "wrong-secret-value" not in repr(settings)


def test_packet_without_a_project_is_refused_by_name(tmp_path: Path) -> None:
    settings = from_env({"LABBOT_PROVIDER": "packet", "PACKET_AUTH_TOKEN": "t"})
    with pytest.raises(SettingsError, match="PACKET_PROJECT_ID"):
        build_lab(
            replace(settings, database_url=f"sqlite:///{tmp_path / 'x.db'}"), RecordingNotifier()
        )


def test_no_token_means_the_simulated_backend(tmp_path: Path) -> None:
    settings = from_env({"DATABASE_URL": f"sqlite:///{tmp_path / 'labbot.db'}"})
    assert isinstance(build_lab(settings, RecordingNotifier()).provider.inner, SimulatedProvider)


# Several donors ------------------------------------------------------------------------------

SIMULATED_DONOR = '[[donor]]\nname = "{name}"\nprovider = "simulated"\nmonthly_grant = 10000\n'


def donors_settings(tmp_path: Path, text: str, **env: str) -> Settings:
    config = tmp_path / "labbot.toml"
    config.write_text(text)
    return from_env(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'labbot.db'}", "LABBOT_CONFIG": str(config), **env}
    )


def packet_donor(fake: FakePacket, name: str = "cloud-b") -> str:
    return (
        f'[[donor]]\nname = "{name}"\nprovider = "packet"\nmonthly_grant = 5000\n'
        f'token_env = "PACKET_TOKEN_B"\nproject_id = "{fake.project_id}"\n'
        f'api_url = "{fake.end_point}"\n'
    )


def test_each_donor_gets_its_own_provider_account(fake: FakePacket, tmp_path: Path) -> None:
    (tmp_path / "arm.toml").write_text('[plans."c2.arm"]\nhourly = 0.9\narch = "aarch64"\n')
    text = SIMULATED_DONOR.format(name="arm") + 'catalog = "arm.toml"\n' + packet_donor(fake)
    lab = build_lab(donors_settings(tmp_path, text, PACKET_TOKEN_B=fake.token), RecordingNotifier())
    assert list(lab.providers) == ["arm", "cloud-b"]
    assert lab.provider is lab.provider_of("arm")
    assert isinstance(lab.provider_of("arm").inner, SimulatedProvider)
    assert "c2.arm" in lab.provider_of("arm").catalog().plans
    assert isinstance(lab.provider_of("cloud-b").inner, PacketProvider)
    assert [d.name for d in lab.policy.donors()] == ["arm", "cloud-b"]


def test_a_donor_whose_provider_refuses_holds_up_no_other(fake: FakePacket, tmp_path: Path) -> None:
    text = SIMULATED_DONOR.format(name="lab") + packet_donor(fake)
    settings = donors_settings(tmp_path, text, PACKET_TOKEN_B="wrong-secret-value")
    lab = build_lab(settings, RecordingNotifier())
    assert list(lab.providers) == ["lab", "cloud-b"]  # it stays: its leases wait for it
    with lab.db.read() as session:
        (notice,) = session.exec(select(Notice).where(Notice.kind == Kind.ADMIN_ALERT)).all()
    assert notice.payload.startswith('{"alert": "donor-failing", "donor": "cloud-b"')
    assert "Donor cloud-b's provider failed at start-up: PACKET_TOKEN_B was refused" in (
        notice.payload
    )
    assert "wrong-secret-value" not in notice.payload


def test_no_donor_answering_stops_start_up(fake: FakePacket, tmp_path: Path) -> None:
    text = packet_donor(fake, "cloud-a") + packet_donor(fake)
    settings = donors_settings(tmp_path, text, PACKET_TOKEN_B="wrong-secret-value")
    with pytest.raises(SettingsError, match="no donor's provider answered: cloud-a: ") as refused:
        build_lab(settings, RecordingNotifier())
    assert "wrong-secret-value" not in str(refused.value)


def test_a_donor_removed_while_it_pays_for_leases_stops_start_up(
    lab: Lab, clock: Clock, tmp_path: Path
) -> None:
    lease_id = file(lab, clock)
    with lab.db.write() as session:
        session.execute(update(Lease).where(Lease.id == lease_id).values(donor="cloud-x"))
    settings = donors_settings(tmp_path, SIMULATED_DONOR.format(name="lab"))
    with pytest.raises(SettingsError) as refused:
        build_lab(settings, RecordingNotifier(), db=lab.db)
    assert str(refused.value) == (
        f"LABBOT_CONFIG names no donor cloud-x, but leases still need it (cloud-x pays for "
        f"#{lease_id}); put its [[donor]] table back until they end."
    )
    with lab.db.write() as session:
        session.execute(update(Lease).where(Lease.id == lease_id).values(state="cancelled"))
    assert build_lab(settings, RecordingNotifier(), db=lab.db).providers.keys() == {"lab"}
