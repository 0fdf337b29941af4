"""The fake Forge API answers in the forges' shapes and injects their faults."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from fakes.forge import FakeForge

NOW = datetime(2017, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeForge]:
    with FakeForge(clock=lambda: NOW) as forge:
        yield forge


def test_github_repository_shape(fake: FakeForge) -> None:
    fake.add_repo("github", "coredns/coredns", license="Apache-2.0")
    body = requests.get(f"{fake.github_url}/repos/coredns/coredns", timeout=5).json()
    assert body["private"] is False and body["archived"] is False
    assert body["license"]["spdx_id"] == "Apache-2.0"


def test_gitlab_license_only_when_asked(fake: FakeForge) -> None:
    fake.add_repo("gitlab", "g/p", license="MIT")
    url = f"{fake.gitlab_url}/projects/g%2Fp"
    assert "license" not in requests.get(url, timeout=5).json()
    assert (
        requests.get(url, params={"license": "true"}, timeout=5).json()["license"]["key"] == "mit"
    )


def test_gitlab_hides_private_projects(fake: FakeForge) -> None:
    fake.add_repo("gitlab", "g/secret", private=True)
    assert requests.get(f"{fake.gitlab_url}/projects/g%2Fsecret", timeout=5).status_code == 404


def test_unknown_paths_are_404(fake: FakeForge) -> None:
    assert requests.get(f"{fake.github_url}/repos/a/b", timeout=5).status_code == 404
    assert requests.get(f"{fake.github_url}/nothing", timeout=5).status_code == 404


def test_rate_limit_headers(fake: FakeForge) -> None:
    reset = NOW + timedelta(minutes=2)
    fake.rate_limit(reset=reset)
    fake.rate_limit(reset=reset, status=429)
    first = requests.get(f"{fake.github_url}/users/ada/keys", timeout=5)
    second = requests.get(f"{fake.github_url}/users/ada/keys", timeout=5)
    assert first.status_code == 403 and first.headers["X-RateLimit-Remaining"] == "0"
    assert first.headers["X-RateLimit-Reset"] == str(int(reset.timestamp()))
    assert second.status_code == 429 and second.headers["Retry-After"] == "120"
    assert requests.get(f"{fake.github_url}/users/ada/keys", timeout=5).status_code == 404


def test_slow_answers_are_slow_and_released_on_close() -> None:
    fake = FakeForge().start()
    fake.slow(30.0)
    with pytest.raises(requests.Timeout):
        requests.get(f"{fake.github_url}/repos/a/b", timeout=(1, 0.2))
    started = time.monotonic()
    fake.close()
    assert time.monotonic() - started < 5


def test_requests_are_recorded_without_tokens(fake: FakeForge) -> None:
    requests.get(f"{fake.github_url}/repos/a/b", headers={"Authorization": "Bearer t"}, timeout=5)
    assert fake.requests[-1].path == "/repos/a/b" and fake.requests[-1].authorized
    assert "Bearer" not in repr(fake.requests)
