"""Choosing and checking the metal backend at start-up."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bot.runtime import build_lab
from bot.settings import Settings, SettingsError, from_env
from fakes.notifier import RecordingNotifier
from fakes.packet import FakePacket
from metal.packet import PacketProvider
from metal.simulated import SimulatedProvider


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
