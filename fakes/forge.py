"""A fake Forge API (GitHub's REST API and GitLab's v4 API) on 127.0.0.1, plain HTTP.

It serves what labbot reads, in the real JSON shapes: a repository (`GET /repos/{owner}/{repo}`;
GitLab `GET /projects/{url-encoded path}?license=true`) and a user's public SSH keys (`GET
/users/{login}/keys`; GitLab `GET /users?username=` then `/users/{id}/keys`). GitHub answers at
`github_url`, GitLab at `gitlab_url` on the same server. Faults are what forges do to a client:
rate limits (403 with `X-RateLimit-Remaining: 0` and a reset time, or 429 with `Retry-After`),
404 for anything unknown, server errors, and answers slower than the client will wait.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from fakes.served import Served
from metal.provider import Clock, utcnow

JsonDict = dict[str, Any]

_GITLAB_PREFIX = "/gitlab/api/v4"
_HANDLER_SOCKET_TIMEOUT = 10.0
_GITLAB_LICENSES = {  # GitLab names licenses by lower-case keys, not SPDX ids
    "Apache-2.0": ("apache-2.0", "Apache License 2.0"),
    "MIT": ("mit", "MIT License"),
    "GPL-3.0": ("gpl-3.0", "GNU General Public License v3.0"),
    "BSD-3-Clause": ("bsd-3-clause", 'BSD 3-Clause "New" or "Revised" License'),
}


@dataclass
class Repo:
    """A repository as the fake keeps it; `license` is an SPDX id, or "NOASSERTION", or None."""

    path: str
    private: bool = False
    archived: bool = False
    license: str | None = "Apache-2.0"


@dataclass
class _Fault:
    status: int
    times: int
    path_prefix: str
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Recorded:
    """A request the fake saw: the path and whether a token came (never the token itself)."""

    path: str
    authorized: bool


class FakeForge(Served):
    """Thread safe; a context manager that starts and stops the server."""

    name = "fakeforge"

    def __init__(self, *, clock: Clock = utcnow) -> None:
        self.clock = clock
        self.requests: list[Recorded] = []
        self._repos: dict[tuple[str, str], Repo] = {}
        self._keys: dict[tuple[str, str], list[str]] = {}
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> FakeForge:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            timeout = _HANDLER_SOCKET_TIMEOUT

            def do_GET(self) -> None:
                fake._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read `FakeForge.requests`."""

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._serve_on(server)
        return self

    def close(self) -> None:
        """Stop serving; slow answers still waiting are released at once."""
        self._closed.set()
        self._stop_serving()

    @property
    def github_url(self) -> str:
        """The base URL to give as GITHUB_API_URL."""
        return f"http://127.0.0.1:{self._port()}"

    @property
    def gitlab_url(self) -> str:
        """The base URL to give as GITLAB_API_URL."""
        return self.github_url + _GITLAB_PREFIX

    # --- what the forges hold ---

    def add_repo(self, forge: str, path: str, **facts: Any) -> Repo:
        repo = Repo(path, **facts)
        with self._lock:
            self._repos[(forge, path.lower())] = repo
        return repo

    def add_keys(self, forge: str, login: str, keys: list[str]) -> None:
        with self._lock:
            self._keys[(forge, login.lower())] = list(keys)

    # --- faults ---

    def rate_limit(
        self, *, reset: datetime, status: int = 403, times: int = 1, path_prefix: str = ""
    ) -> None:
        """Refuse the next `times` matching requests as a spent quota: GitHub's 403 with
        `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset`, or a 429 with `Retry-After` (and
        GitLab's `RateLimit-Reset`)."""
        seconds = max(0, int((reset - self.clock()).total_seconds()))
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(reset.timestamp()))}
        if status == 429:
            headers = {"Retry-After": str(seconds), "RateLimit-Reset": str(int(reset.timestamp()))}
        self._add(_Fault(status, times, path_prefix, headers))

    def fail_next(self, status: int = 502, *, times: int = 1, path_prefix: str = "") -> None:
        self._add(_Fault(status, times, path_prefix))

    def slow(self, seconds: float, *, times: int = 1, path_prefix: str = "") -> None:
        """Answer the next `times` matching requests only after `seconds`."""
        self._add(_Fault(200, times, path_prefix, delay=seconds))

    def count(self, path_prefix: str = "") -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path.startswith(path_prefix))

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.path_prefix):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # --- serving ---

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        headers = handler.headers
        authorized = bool(headers.get("Authorization") or headers.get("PRIVATE-TOKEN"))
        with self._lock:
            self.requests.append(Recorded(parts.path, authorized))
        fault = self._take_fault(parts.path)
        if fault is not None and fault.delay:
            self._closed.wait(fault.delay)
        if fault is not None and fault.status != 200:
            message = "API rate limit exceeded" if fault.headers else "Server Error"
            _write(handler, fault.status, {"message": message}, fault.headers)
            return
        status, body = self._route(parts.path, dict(parse_qsl(parts.query)))
        _write(handler, status, body)

    def _route(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path.startswith(_GITLAB_PREFIX + "/"):
            return self._gitlab(path.removeprefix(_GITLAB_PREFIX).split("/")[1:], query)
        return self._github(path.split("/")[1:])

    def _github(self, segments: list[str]) -> tuple[int, Any]:
        match segments:
            case ["repos", owner, name]:
                repo = self._repo("github", f"{owner}/{name}")
                return (200, _github_repo(repo)) if repo else _NOT_FOUND
            case ["users", login, "keys"]:
                keys = self._user_keys("github", login)
                if keys is None:
                    return _NOT_FOUND
                return 200, [{"id": n + 1, "key": k} for n, k in enumerate(keys)]
        return _NOT_FOUND

    def _gitlab(self, segments: list[str], query: dict[str, str]) -> tuple[int, Any]:
        match segments:
            case ["projects", encoded]:
                repo = self._repo("gitlab", unquote(encoded))
                if repo is None or repo.private:  # GitLab hides private projects as 404
                    return 404, {"message": "404 Project Not Found"}
                return 200, _gitlab_project(repo, with_license=query.get("license") == "true")
            case ["users"]:
                login = query.get("username", "")
                found = self._user_keys("gitlab", login) is not None
                return 200, [{"id": _user_id(login), "username": login}] if found else []
            case ["users", user_id, "keys"]:
                for (forge, login), keys in self._keys.items():
                    if forge == "gitlab" and str(_user_id(login)) == user_id:
                        return 200, [
                            {"id": n + 1, "title": "key", "key": k} for n, k in enumerate(keys)
                        ]
                return 404, {"message": "404 User Not Found"}
        return 404, {"message": "404 Not Found"}

    def _repo(self, forge: str, path: str) -> Repo | None:
        with self._lock:
            return self._repos.get((forge, path.lower()))

    def _user_keys(self, forge: str, login: str) -> list[str] | None:
        with self._lock:
            return self._keys.get((forge, login.lower()))


_NOT_FOUND = (404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})


def _user_id(login: str) -> int:
    return 1000 + sum(map(ord, login.lower()))


def _github_repo(repo: Repo) -> JsonDict:
    owner, name = repo.path.split("/", 1)
    license_ = None
    if repo.license:
        license_ = {"key": repo.license.lower(), "name": repo.license, "spdx_id": repo.license}
    return {
        "id": _user_id(repo.path),
        "name": name,
        "full_name": repo.path,
        "owner": {"login": owner},
        "private": repo.private,
        "visibility": "private" if repo.private else "public",
        "archived": repo.archived,
        "html_url": f"https://github.com/{repo.path}",
        "license": license_,
    }


def _gitlab_project(repo: Repo, *, with_license: bool) -> JsonDict:
    body: JsonDict = {
        "id": _user_id(repo.path),
        "path_with_namespace": repo.path,
        "visibility": "private" if repo.private else "public",
        "archived": repo.archived,
        "web_url": f"https://gitlab.com/{repo.path}",
    }
    if with_license:
        key, name = _GITLAB_LICENSES.get(repo.license or "", (repo.license, repo.license))
        body["license"] = {"key": key, "name": name} if repo.license else None
    return body


def _write(
    handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    payload = json.dumps(body).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)
    except OSError:
        pass  # the client gave up waiting; nothing left to tell it
