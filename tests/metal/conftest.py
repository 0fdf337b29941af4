"""Fixtures for the Packet backend: a FakePacket over HTTPS and PacketProviders pointed at it.

Time is a stepped clock shared by the fake and the provider, and the provider's `sleep` only
records, so lifecycles and backoff run without waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fakes.packet import FakePacket
from metal.packet import PacketProvider

START = datetime(2017, 6, 1, 12, 0, tzinfo=UTC)


class SteppedClock:
    """Aware UTC time that only moves when a test says so."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def fake_packet(clock: SteppedClock) -> Iterator[FakePacket]:
    with FakePacket(clock=clock, provision_seconds=5) as fake:
        yield fake


@pytest.fixture
def waits() -> list[float]:
    """Every pause the provider asked for, in order."""
    return []


@pytest.fixture
def make_provider(
    fake_packet: FakePacket,
    clock: SteppedClock,
    waits: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., PacketProvider]:
    """PacketProviders on the fake, trusting its CA through REQUESTS_CA_BUNDLE as a deployment
    would; keyword arguments override the constructor's."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake_packet.ca_bundle_path)

    def make(**overrides: Any) -> PacketProvider:
        options: dict[str, Any] = {
            "timeout": 2.0,
            "retries": 3,
            "backoff": 0.5,
            "clock": clock,
            "sleep": waits.append,
        }
        options.update(overrides)
        token = options.pop("token", fake_packet.token)
        return PacketProvider(token, fake_packet.project_id, fake_packet.end_point, **options)

    return make


@pytest.fixture
def packet_provider(make_provider: Callable[..., PacketProvider]) -> PacketProvider:
    return make_provider()


from tests.ec2_server import (  # noqa: E402, F401  (fixtures for the EC2 tests)
    aws_env,
    boto_session,
    ec2_proxy,
    make_ec2,
    moto_server,
    session_proxy,
)
