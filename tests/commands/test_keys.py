"""Saved keys: added, listed, removed, imported from the fake forge over HTTP with its faults;
a request without a key uses them, a request with none is refused; a private key is never
stored, audited in full or echoed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlmodel import select

from commands.keys import MAX_KEYS, add_key, import_keys, list_keys, remove_key
from commands.lab import Code, Lab
from commands.pubkeys import read_key
from commands.request import request
from commands.review import approve
from commands.sweep import sweep
from fakes.forge import FakeForge
from fakes.keys import public_key
from metal.forge_http import HttpForge
from storage.models import AuditEvent, Notice, SshKey
from tests.commands.helpers import active, created_with, file
from tests.conftest import OTHER, OWNER, REVIEWER, Clock, request_input

PRIVATE = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDsecretsecretsecretsecretsecretsecretAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


def fingerprint(line: str) -> str:
    return read_key(line).fingerprint


def saved(lab: Lab, user: str) -> list[SshKey]:
    with lab.db.read() as session:
        return list(session.exec(select(SshKey).where(SshKey.user == user)).all())


def test_a_key_is_added_listed_with_its_fingerprint_and_removed(lab: Lab, clock: Clock) -> None:
    key = public_key("laptop", "me@laptop")
    added = add_key(lab, OWNER, key, clock.now)
    assert added.ok and fingerprint(key) in added.message
    assert add_key(lab, OWNER, key, clock.now).message.startswith("That key is already saved")
    listing = list_keys(lab, OWNER)
    assert f"1. {fingerprint(key)} (ed25519, me@laptop)" in listing
    assert key.split()[1] not in listing  # the fingerprint, never the whole key
    removed = remove_key(lab, OWNER, "1", clock.now)
    assert removed.ok and "Servers already running keep it" in removed.message
    assert saved(lab, OWNER) == []
    assert not remove_key(lab, OWNER, "1", clock.now).ok


def test_a_key_is_removed_by_fingerprint_and_only_its_owner_can(lab: Lab, clock: Clock) -> None:
    key = public_key("laptop")
    add_key(lab, OWNER, key, clock.now)
    assert not remove_key(lab, OTHER, fingerprint(key), clock.now).ok
    assert remove_key(lab, OWNER, fingerprint(key), clock.now).ok


def test_a_private_key_is_refused_audited_and_never_stored_or_echoed(
    lab: Lab, clock: Clock
) -> None:
    outcome = add_key(lab, OWNER, PRIVATE, clock.now)
    assert outcome.code == Code.PRIVATE_KEY
    assert "secret" not in outcome.message and "b3BlbnNzaC1" not in outcome.message
    assert saved(lab, OWNER) == []
    with lab.db.read() as session:
        [event] = session.exec(select(AuditEvent).where(AuditEvent.action == "key_add")).all()
        notices = session.exec(select(Notice)).all()
    assert event.outcome == "refused" and '"private_key": true' in event.details
    assert "secret" not in event.details and not notices


def test_a_request_carrying_a_private_key_is_refused_without_echoing_it(
    lab: Lab, clock: Clock
) -> None:
    outcome = request(lab, OWNER, request_input(ssh_key=PRIVATE), clock.now)
    assert outcome.code == Code.BAD_INPUT and "secret" not in outcome.message
    with lab.db.read() as session:
        details = [e.details for e in session.exec(select(AuditEvent)).all()]
    assert not any("secret" in d for d in details)


def test_at_most_max_keys_are_saved(lab: Lab, clock: Clock) -> None:
    for n in range(MAX_KEYS):
        assert add_key(lab, OWNER, public_key(f"k{n}"), clock.now).ok
    refused = add_key(lab, OWNER, public_key("one too many"), clock.now)
    assert refused.code == Code.TOO_MANY


def test_a_request_without_a_key_and_none_saved_is_refused_with_how_to_add_one(
    lab: Lab, clock: Clock
) -> None:
    outcome = request(lab, OWNER, request_input(ssh_key=""), clock.now)
    assert outcome.code == Code.BAD_INPUT
    assert "/lab keys add" in outcome.message and "/lab keys import github" in outcome.message


def test_a_request_without_a_key_puts_the_saved_keys_on_the_servers(lab: Lab, clock: Clock) -> None:
    keys = [public_key("laptop", "me@laptop"), public_key("desktop", "me@desktop")]
    for key in keys:
        add_key(lab, OWNER, key, clock.now)
    lease_id = active(lab, clock, ssh_key="")
    expected = " ".join(fingerprint(k) for k in keys)
    assert set(created_with(lab.db, lease_id)) == {expected}
    [ready] = lab.notifier.texts("ready")
    assert all(fingerprint(k) in ready for k in keys) and "log in as root" in ready


def test_a_request_with_a_key_puts_that_key_and_not_the_saved_ones(lab: Lab, clock: Clock) -> None:
    add_key(lab, OWNER, public_key("saved"), clock.now)
    given = public_key("given")
    lease_id = active(lab, clock, ssh_key=given)
    assert set(created_with(lab.db, lease_id)) == {fingerprint(given)}


def test_a_request_puts_the_saved_keys_checked_and_the_one_pasted_and_no_other(
    lab: Lab, clock: Clock
) -> None:
    chosen, unchecked, pasted = (public_key(n) for n in ("chosen", "unchecked", "pasted"))
    for key in (chosen, unchecked):
        add_key(lab, OWNER, key, clock.now)
    lease_id = active(lab, clock, ssh_key=pasted, saved_keys=(fingerprint(chosen),))
    assert set(created_with(lab.db, lease_id)) == {f"{fingerprint(chosen)} {fingerprint(pasted)}"}

    both = file(lab, clock, ssh_key="", saved_keys=(fingerprint(chosen), fingerprint(unchecked)))
    remove_key(lab, OWNER, fingerprint(unchecked), clock.now)  # before its servers exist
    assert approve(lab, REVIEWER, both, clock.now).ok
    sweep(lab, clock.advance(minutes=5))
    assert set(created_with(lab.db, both)) == {fingerprint(chosen)}

    remove_key(lab, OWNER, fingerprint(chosen), clock.now)
    refused = request(lab, OWNER, request_input(saved_keys=(fingerprint(chosen),)), clock.now)
    assert refused.code == Code.BAD_INPUT
    nothing = request(lab, OWNER, request_input(ssh_key="", saved_keys=()), clock.now)
    assert nothing.code == Code.BAD_INPUT


# --- import from the forge ---------------------------------------------------------------------


@pytest.fixture
def forge(clock: Clock) -> Iterator[FakeForge]:
    with FakeForge(clock=clock) as fake:
        yield fake


@pytest.fixture
def forge_lab(lab: Lab, forge: FakeForge, clock: Clock) -> Lab:
    client = HttpForge(
        github_url=forge.github_url, gitlab_url=forge.gitlab_url, timeout=(1.0, 0.5), clock=clock
    )
    return replace(lab, forge=client)


def test_keys_are_imported_from_github_and_gitlab(
    forge_lab: Lab, forge: FakeForge, clock: Clock
) -> None:
    on_github = [public_key("gh1", "ada@one"), public_key("gh2")]
    forge.add_keys("github", "ada", on_github)
    forge.add_keys("gitlab", "ada", [public_key("gl1")])
    first = import_keys(forge_lab, OWNER, "github", "ada", clock.now)
    assert first.ok and "Imported 2 of the 2 keys github publishes for ada" in first.message
    assert all(fingerprint(k) in first.message for k in on_github)
    again = import_keys(forge_lab, OWNER, "github", "ada", clock.now)
    assert "Imported 0 of the 2" in again.message and "(already saved)" in again.message
    assert import_keys(forge_lab, OWNER, "gitlab", "ada", clock.now).ok
    assert {k.source for k in saved(forge_lab, OWNER)} == {"github:ada", "gitlab:ada"}


def test_an_unknown_account_imports_nothing(forge_lab: Lab, clock: Clock) -> None:
    outcome = import_keys(forge_lab, OWNER, "github", "nobody", clock.now)
    assert outcome.code == Code.NOT_FOUND
    assert saved(forge_lab, OWNER) == []


def test_a_rate_limited_forge_imports_nothing_and_says_when_to_retry(
    forge_lab: Lab, forge: FakeForge, clock: Clock
) -> None:
    forge.add_keys("github", "ada", [public_key("gh1")])
    forge.rate_limit(reset=clock.now + timedelta(minutes=10))
    outcome = import_keys(forge_lab, OWNER, "github", "ada", clock.now)
    assert outcome.code == Code.FORGE_UNAVAILABLE
    assert "Try again after" in outcome.message
    assert saved(forge_lab, OWNER) == []
    assert import_keys(forge_lab, OWNER, "github", "ada", clock.now).ok


def test_a_slow_forge_imports_nothing_and_the_answer_comes_in_time(
    forge_lab: Lab, forge: FakeForge, clock: Clock
) -> None:
    forge.add_keys("gitlab", "ada", [public_key("gl1")])
    forge.slow(5.0)
    outcome = import_keys(forge_lab, OWNER, "gitlab", "ada", clock.now)
    assert outcome.code == Code.FORGE_UNAVAILABLE
    assert saved(forge_lab, OWNER) == []


def test_an_account_with_no_usable_keys_imports_nothing(
    forge_lab: Lab, forge: FakeForge, clock: Clock
) -> None:
    forge.add_keys("github", "ada", ["ssh-rsa AAAA-not-a-key"])
    outcome = import_keys(forge_lab, OWNER, "github", "ada", clock.now)
    assert outcome.code == Code.NOT_FOUND


def test_a_key_comment_is_shown_inert(lab: Lab, clock: Clock) -> None:
    """The comment is the person's words: a mention or a broadcast in it is shown, not sent."""
    key = public_key("sneaky", "<!channel>@<@U0VICTIM>")
    added = add_key(lab, OWNER, key, clock.now)
    assert added.ok and "&lt;!channel&gt;" in added.message and "<@U0VICTIM>" not in added.message
    assert "<@U0VICTIM>" not in list_keys(lab, OWNER)
