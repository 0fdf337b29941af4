"""The forge client through real HTTP against the fake Forge API, with its faults."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from fakes.forge import FakeForge
from metal.forge import (
    Forge,
    ForgeName,
    NotFound,
    RepoFacts,
    RepoRef,
    Unchecked,
    osi_approved,
    parse_repository,
)
from metal.forge_http import HttpForge

NOW = datetime(2017, 6, 1, 12, 0, tzinfo=UTC)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB8Ht8Z3j6yDWPBHQtOp/R9rvWbBQ/JBzUqLQl8rS6N ada"


@pytest.fixture
def fake() -> Iterator[FakeForge]:
    with FakeForge(clock=lambda: NOW) as forge:
        yield forge


@pytest.fixture
def client(fake: FakeForge) -> HttpForge:
    return HttpForge(
        github_url=fake.github_url,
        gitlab_url=fake.gitlab_url,
        timeout=(1.0, 0.3),
        clock=lambda: NOW,
    )


def test_the_client_is_a_forge(client: HttpForge) -> None:
    assert isinstance(client, Forge)


@pytest.mark.parametrize(
    ("url", "ref"),
    [
        ("https://github.com/coredns/coredns", RepoRef(ForgeName.GITHUB, "coredns/coredns")),
        ("https://github.com/coredns/coredns.git", RepoRef(ForgeName.GITHUB, "coredns/coredns")),
        ("https://github.com/a/b/tree/main/x", RepoRef(ForgeName.GITHUB, "a/b")),
        ("https://gitlab.com/g/sub/p/-/tree/main", RepoRef(ForgeName.GITLAB, "g/sub/p")),
        ("https://gitlab.com/g/p.git", RepoRef(ForgeName.GITLAB, "g/p")),
    ],
)
def test_repository_urls_people_paste_are_understood(url: str, ref: RepoRef) -> None:
    assert parse_repository(url) == ref


@pytest.mark.parametrize(
    "url",
    ["https://bitbucket.org/a/b", "https://github.com/onlyowner", "ftp://github.com/a/b", "", "x"],
)
def test_urls_on_forges_labbot_cannot_check_are_not_repositories(url: str) -> None:
    assert parse_repository(url) is None


def test_public_github_repository_with_an_osi_license(fake: FakeForge, client: HttpForge) -> None:
    fake.add_repo("github", "coredns/coredns", license="Apache-2.0")
    facts = client.repository("https://github.com/coredns/coredns")
    assert facts == RepoFacts(
        RepoRef(ForgeName.GITHUB, "coredns/coredns"), public=True, archived=False,
        license="Apache-2.0",
    )  # fmt: skip
    assert facts.describe() == "public, Apache-2.0 (OSI-approved)"


@pytest.mark.parametrize(
    ("facts", "said"),
    [
        ({"private": True}, "private"),
        ({"archived": True}, "archived"),
        ({"license": None}, "no license"),
        ({"license": "NOASSERTION"}, "NOASSERTION is not OSI-approved"),
        ({"license": "CC-BY-NC-4.0"}, "CC-BY-NC-4.0 is not OSI-approved"),
    ],
)
def test_problems_are_named(fake: FakeForge, client: HttpForge, facts: dict, said: str) -> None:
    fake.add_repo("github", "acme/thing", **facts)
    assert client.repository("https://github.com/acme/thing").describe() == said


def test_gitlab_project_by_its_encoded_path(fake: FakeForge, client: HttpForge) -> None:
    fake.add_repo("gitlab", "fdroid/sub/client", license="GPL-3.0", archived=True)
    facts = client.repository("https://gitlab.com/fdroid/sub/client/-/tree/master")
    assert isinstance(facts, RepoFacts)
    assert (facts.license, facts.public, facts.archived) == ("GPL-3.0", True, True)
    assert facts.osi_approved
    assert fake.requests[-1].path == "/gitlab/api/v4/projects/fdroid%2Fsub%2Fclient"


def test_missing_repository_is_not_found(client: HttpForge) -> None:
    assert client.repository("https://github.com/nobody/nothing") == NotFound("nobody/nothing")
    assert client.repository("https://gitlab.com/nobody/nothing") == NotFound("nobody/nothing")


def test_unknown_forge_is_unchecked_with_a_sentence(client: HttpForge, fake: FakeForge) -> None:
    result = client.repository("https://bitbucket.org/a/b")
    assert isinstance(result, Unchecked)
    assert "github.com and gitlab.com" in result.reason
    assert fake.requests == []


@pytest.mark.parametrize("status", [403, 429])
def test_rate_limit_is_unchecked_until_the_reset(
    fake: FakeForge, client: HttpForge, status: int
) -> None:
    fake.add_repo("github", "a/b")
    reset = NOW + timedelta(minutes=7)
    fake.rate_limit(reset=reset, status=status)
    result = client.repository("https://github.com/a/b")
    assert result == Unchecked("github.com is rate limiting labbot until 12:07 UTC", reset)
    assert isinstance(client.repository("https://github.com/a/b"), RepoFacts)


def test_a_plain_forbidden_is_not_taken_for_a_rate_limit(
    fake: FakeForge, client: HttpForge
) -> None:
    fake.fail_next(403)
    assert client.repository("https://github.com/a/b") == Unchecked("github.com answered HTTP 403")


def test_server_error_is_unchecked(fake: FakeForge, client: HttpForge) -> None:
    fake.fail_next(502)
    assert client.repository("https://gitlab.com/a/b") == Unchecked("gitlab.com answered HTTP 502")


def test_a_slow_forge_is_given_up_on_in_time(fake: FakeForge, client: HttpForge) -> None:
    fake.add_repo("github", "a/b")
    fake.slow(5.0)
    result = client.repository("https://github.com/a/b")
    assert result == Unchecked("github.com did not answer within 0.3 s")


def test_unreachable_forge_is_unchecked() -> None:
    client = HttpForge(github_url="http://127.0.0.1:9", timeout=(0.5, 0.5))
    result = client.repository("https://github.com/a/b")
    assert isinstance(result, Unchecked)
    assert result.reason.startswith("github.com could not be reached")


def test_the_token_is_sent_but_never_shown(fake: FakeForge) -> None:
    fake.add_repo("github", "a/b")
    client = HttpForge(github_url=fake.github_url, github_token="ghp_secret123")
    fake.fail_next(500)
    result = client.repository("https://github.com/a/b")
    assert fake.requests[-1].authorized
    assert "ghp_secret123" not in repr(client) + repr(result)


def test_github_public_keys(fake: FakeForge, client: HttpForge) -> None:
    fake.add_keys("github", "ada", [KEY, "ssh-rsa AAAAB3Nza second"])
    assert client.public_keys(ForgeName.GITHUB, "ada") == [KEY, "ssh-rsa AAAAB3Nza second"]
    assert client.public_keys(ForgeName.GITHUB, "nobody") == NotFound("nobody")


def test_gitlab_public_keys_by_username_then_id(fake: FakeForge, client: HttpForge) -> None:
    fake.add_keys("gitlab", "ada", [KEY])
    assert client.public_keys(ForgeName.GITLAB, "ada") == [KEY]
    assert client.public_keys(ForgeName.GITLAB, "nobody") == NotFound("nobody")


def test_keys_rate_limited(fake: FakeForge, client: HttpForge) -> None:
    fake.add_keys("github", "ada", [KEY])
    fake.rate_limit(reset=NOW + timedelta(seconds=30), status=429)
    result = client.public_keys(ForgeName.GITHUB, "ada")
    assert isinstance(result, Unchecked)
    assert result.retry_at == NOW + timedelta(seconds=30)


def test_osi_approval_comes_from_the_spdx_list() -> None:
    assert osi_approved("Apache-2.0") and osi_approved("MIT")
    assert not osi_approved("CC-BY-NC-4.0") and not osi_approved(None)
    assert not osi_approved("NOASSERTION")
