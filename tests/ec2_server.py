"""Fixtures for the EC2 backend: one moto server and one fault proxy per test session, reset
before each test (moto through /moto-api/reset, the proxy by forgetting its faults), and the
AWS credential chain pointed at fake keys and nothing else on this machine.

Imported by the conftest files that need them, so a session that runs no EC2 test starts no
server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from fakes.ec2 import CREDENTIALS, SCHEDULER_ROLE, FaultProxy, MotoServer
from metal.ec2 import Ec2Provider
from metal.ec2_catalog import Ec2Offer, parse_offer

OFFER = {
    "os": ["ubuntu_24_04"],
    "regions": {"us-east-1": {"name": "N. Virginia"}, "us-west-2": {"name": "Oregon"}},
    "types": {
        "c5.metal": {"name": "c5.metal", "hourly": 4.08, "specs": "96 vCPU, 192 GiB"},
        "m5.metal": {"name": "m5.metal", "hourly": 4.608},
        "c7g.metal": {"name": "c7g.metal", "hourly": 2.32, "arch": "aarch64"},
        "m7g.metal": {"name": "m7g.metal", "hourly": 2.6112, "arch": "aarch64"},
    },
    "images": [
        {"os": "ubuntu_24_04", "region": region, "arch": arch, "ami": ami}
        for region in ("us-east-1", "us-west-2")
        for arch, ami in (("x86_64", "ami-0a1b2c3d4e5f60718"), ("aarch64", "ami-0f1e2d3c4b5a69788"))
    ],
}


def offer() -> Ec2Offer:
    return parse_offer(OFFER, "the test catalog")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def session_proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.url) as proxy:
        yield proxy


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """boto3's chain finds the fake keys in the environment and no profile or file of the
    machine's."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def ec2_proxy(
    moto_server: MotoServer, session_proxy: FaultProxy, aws_env: None
) -> Iterator[FaultProxy]:
    """The proxy in front of a clean moto account, with no faults and no pending time."""
    moto_server.reset()
    session_proxy.clear()
    session_proxy.pending_seconds = 0.0
    yield session_proxy
    session_proxy.clear()


@pytest.fixture(scope="session")
def boto_session() -> boto3.session.Session:
    """One boto3 session for the providers the tests build, so EC2's service model (several
    megabytes of JSON) is parsed once, not once per test. Its keys are the fake ones, given
    directly; the start-up tests go through boto3's chain instead."""
    return boto3.session.Session(
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def make_ec2(
    ec2_proxy: FaultProxy, boto_session: boto3.session.Session
) -> Callable[..., Ec2Provider]:
    """Ec2Providers through the proxy; keyword arguments override the constructor's."""

    def make(**overrides: Any) -> Ec2Provider:
        options: dict[str, Any] = {
            # The product's default: under a loaded machine moto can take seconds to answer,
            # and a timed-out launch that moto then completes is one that only the ClientToken
            # moto ignores would have made idempotent.
            "timeout": 30.0,
            "max_attempts": 3,
            "endpoint_url": ec2_proxy.url,
            "session": boto_session,
        }
        options.update(overrides)
        return Ec2Provider(options.pop("offer", offer()), SCHEDULER_ROLE, **options)

    return make
