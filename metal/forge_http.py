"""`Forge` over GitHub's and GitLab's REST APIs, with `requests`.

Three read-only endpoints per forge are all labbot needs, so this is a small client on
`requests` rather than PyGithub plus python-gitlab: PyGithub's retry sleeps the calling thread
until a rate limit resets (the opposite of "never delay a request"), and two SDKs would bring
two error models for three GET calls. Every call has a (connect, read) timeout; a rate limit
(403 or 429 with `X-RateLimit-Reset`, `RateLimit-Reset` or `Retry-After`), a 404, a 5xx, a
timeout and an unreadable body each become a value (`metal.forge`), never an exception. Tokens
are optional, sent only in headers, and appear in no message, repr or log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import requests

from metal.forge import (
    ForgeName,
    KeysCheck,
    NotFound,
    RepoCheck,
    RepoFacts,
    RepoRef,
    Unchecked,
    parse_repository,
    spdx_id_for,
)
from metal.provider import Clock, utcnow

GITHUB_API_URL = "https://api.github.com"
GITLAB_API_URL = "https://gitlab.com/api/v4"
DEFAULT_TIMEOUT = (3.05, 5.0)  # (connect, read) seconds

_UNKNOWN_FORGE = (
    "labbot can check repositories on github.com and gitlab.com; "
    "give a URL like https://github.com/OWNER/REPO"
)
_REMAINING_HEADERS = ("X-RateLimit-Remaining", "RateLimit-Remaining")
_RESET_HEADERS = ("X-RateLimit-Reset", "RateLimit-Reset")
_EPOCH_FLOOR = 1e9  # a reset below this is a number of seconds, not a Unix time
_MAX_KEYS = 50


@dataclass(frozen=True)
class _Reply:
    body: Any


@dataclass
class HttpForge:
    """`Forge` on the real APIs (or any base URL, such as the fake in the tests)."""

    github_url: str = GITHUB_API_URL
    gitlab_url: str = GITLAB_API_URL
    github_token: str | None = field(default=None, repr=False)
    gitlab_token: str | None = field(default=None, repr=False)
    timeout: tuple[float, float] = DEFAULT_TIMEOUT
    clock: Clock = utcnow
    session: requests.Session = field(default_factory=requests.Session, repr=False)

    def repository(self, url: str) -> RepoCheck:
        ref = parse_repository(url)
        if ref is None:
            return Unchecked(_UNKNOWN_FORGE)
        if ref.forge is ForgeName.GITHUB:
            return self._github_repository(ref)
        return self._gitlab_repository(ref)

    def public_keys(self, forge: ForgeName, login: str) -> KeysCheck:
        if forge is ForgeName.GITHUB:
            answer = self._get(forge, f"/users/{quote(login, safe='')}/keys", what=login)
        else:
            answer = self._gitlab_user_keys(login)
        if not isinstance(answer, _Reply):
            return answer
        if not isinstance(answer.body, list):
            return Unchecked(f"{forge}.com answered with something other than a list of keys")
        keys = [k["key"].strip() for k in answer.body if isinstance(k, dict) and k.get("key")]
        return keys[:_MAX_KEYS]

    # --- the two forges ---

    def _github_repository(self, ref: RepoRef) -> RepoCheck:
        answer = self._get(ref.forge, f"/repos/{ref.path}", what=ref.path)
        if not isinstance(answer, _Reply):
            return answer
        body = answer.body
        if not isinstance(body, dict) or "private" not in body:
            return Unchecked("github.com answered with something other than a repository")
        license_ = body.get("license") or {}
        return RepoFacts(
            ref=ref,
            public=not body["private"],
            archived=bool(body.get("archived")),
            license=license_.get("spdx_id") or None,
        )

    def _gitlab_repository(self, ref: RepoRef) -> RepoCheck:
        path = f"/projects/{quote(ref.path, safe='')}"
        answer = self._get(ref.forge, path, params={"license": "true"}, what=ref.path)
        if not isinstance(answer, _Reply):
            return answer
        body = answer.body
        if not isinstance(body, dict) or "visibility" not in body:
            return Unchecked("gitlab.com answered with something other than a project")
        key = (body.get("license") or {}).get("key")
        return RepoFacts(
            ref=ref,
            public=body["visibility"] == "public",
            archived=bool(body.get("archived")),
            license=(spdx_id_for(key) or "NOASSERTION") if key else None,
        )

    def _gitlab_user_keys(self, login: str) -> _Reply | NotFound | Unchecked:
        found = self._get(ForgeName.GITLAB, "/users", params={"username": login}, what=login)
        if not isinstance(found, _Reply):
            return found
        users = found.body if isinstance(found.body, list) else []
        ids = [u["id"] for u in users if isinstance(u, dict) and isinstance(u.get("id"), int)]
        if not ids:
            return NotFound(login)
        return self._get(ForgeName.GITLAB, f"/users/{ids[0]}/keys", what=login)

    # --- one bounded GET ---

    def _get(
        self, forge: ForgeName, path: str, *, what: str, params: dict[str, str] | None = None
    ) -> _Reply | NotFound | Unchecked:
        host = f"{forge}.com"
        base, headers = self._endpoint(forge)
        try:
            response = self.session.get(
                base.rstrip("/") + path, params=params, headers=headers, timeout=self.timeout
            )
        except requests.Timeout:
            return Unchecked(f"{host} did not answer within {self.timeout[1]:g} s")
        except requests.RequestException as error:
            return Unchecked(f"{host} could not be reached ({type(error).__name__})")
        if response.status_code == 404:
            return NotFound(what)
        limited = self._rate_limit(response, host)
        if limited is not None:
            return limited
        if response.status_code != 200:
            return Unchecked(f"{host} answered HTTP {response.status_code}")
        try:
            return _Reply(response.json())
        except ValueError:
            return Unchecked(f"{host} answered with a body that is not JSON")

    def _endpoint(self, forge: ForgeName) -> tuple[str, dict[str, str]]:
        if forge is ForgeName.GITHUB:
            headers = {
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            }
            if self.github_token:
                headers["Authorization"] = f"Bearer {self.github_token}"
            return self.github_url, headers
        headers = {"Accept": "application/json"}
        if self.gitlab_token:
            headers["PRIVATE-TOKEN"] = self.gitlab_token
        return self.gitlab_url, headers

    def _rate_limit(self, response: requests.Response, host: str) -> Unchecked | None:
        """A 429, or a 403 that says it is a rate limit (GitHub answers a spent quota with 403
        and `X-RateLimit-Remaining: 0`, a secondary limit with `Retry-After`)."""
        status = response.status_code
        exhausted = any(response.headers.get(h) == "0" for h in _REMAINING_HEADERS)
        said_so = exhausted or "Retry-After" in response.headers
        if not (status == 429 or (status == 403 and said_so)):
            return None
        retry_at = _retry_at(response.headers, self.clock())
        until = f" until {retry_at:%H:%M} UTC" if retry_at else ""
        return Unchecked(f"{host} is rate limiting labbot{until}", retry_at)


def _retry_at(headers: Any, now: datetime) -> datetime | None:
    """When the forge said to come back: `Retry-After` (seconds or an HTTP date), else the
    reset time of the quota (a Unix time, or seconds from now)."""
    retry_after = headers.get("Retry-After")
    if retry_after:
        if retry_after.strip().isdigit():
            return now + timedelta(seconds=int(retry_after))
        try:
            return parsedate_to_datetime(retry_after).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    for name in _RESET_HEADERS:
        try:
            value = float(headers.get(name, ""))
        except ValueError:
            continue
        if value >= _EPOCH_FLOOR:
            return datetime.fromtimestamp(value, UTC)
        return now + timedelta(seconds=value)
    return None
