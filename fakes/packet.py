"""A fake Packet (Equinix Metal) API served over HTTPS on 127.0.0.1.

packet-python always builds ``https://`` URLs, so the fake speaks TLS with a throwaway CA from
trustme; point ``REQUESTS_CA_BUNDLE`` (or ``verify=``) at ``ca_bundle_path``. It answers with the
real API's JSON shapes and error bodies, validates what the API validates (plan, location, OS,
tags as a list, termination_time in the future), and runs device lifecycles off an injected clock,
so tests step time instead of sleeping. Fault injection covers what the real API did to us: rate
limits, 5xx, requests that never answer, creates whose answer is lost, deletes refused while a
device provisions, devices that vanish.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, urlsplit

import trustme

from fakes.served import Served
from metal.provider import Clock, utcnow

JsonDict = dict[str, Any]
_Route = Callable[["_Call"], "_Answer"]

_HANDLER_SOCKET_TIMEOUT = 10.0
_DEFAULT_PER_PAGE = 10
_DEFAULT_CAPACITY = 100
_TRAFFIC_INTERVALS = ("minute", "hour", "day", "week", "month", "year")


def _stable_id(kind: str, key: str) -> str:
    """Catalog ids stay the same across runs so hrefs in recorded requests are comparable."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fakepacket/{kind}/{key}"))


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the 2017 CNCF community lab catalog -------------------------------------------------------

_ALL = "*"
_FACILITIES: tuple[tuple[str, str, str, str, str], ...] = (
    # facility code, facility name, metro code, metro name, country
    ("ewr1", "Parsippany, NJ", "ny", "New York", "US"),
    ("sjc1", "Sunnyvale, CA", "sv", "Silicon Valley", "US"),
    ("ams1", "Amsterdam, NL", "am", "Amsterdam", "NL"),
    ("nrt1", "Tokyo, JP", "ty", "Tokyo", "JP"),
    ("atl1", "Atlanta, GA", "at", "Atlanta", "US"),
    ("dfw1", "Dallas, TX", "da", "Dallas", "US"),
    ("iad1", "Ashburn, VA", "dc", "Washington DC", "US"),
    ("lax1", "Los Angeles, CA", "la", "Los Angeles", "US"),
    ("ord1", "Chicago, IL", "ch", "Chicago", "US"),
    ("sea1", "Seattle, WA", "se", "Seattle", "US"),
    ("fra2", "Frankfurt, DE", "fr", "Frankfurt", "DE"),
    ("sin3", "Singapore, SG", "sg", "Singapore", "SG"),
    ("syd2", "Sydney, AU", "sy", "Sydney", "AU"),
    ("hkg1", "Hong Kong, HK", "hk", "Hong Kong", "HK"),
    ("yyz1", "Toronto, ON", "tr", "Toronto", "CA"),
)


class _PlanRow(NamedTuple):
    slug: str
    name: str
    hour: float
    cpu: str
    cpus: int
    memory: str
    drives: tuple[tuple[int, str, str], ...]
    facilities: str  # space-separated codes, or _ALL


_PLANS = (
    _PlanRow("t1.small.x86", "Type 0", 0.07, "Intel Atom C2550 @ 2.4GHz", 1, "8GB",
             ((1, "80GB", "SSD"),), _ALL),
    _PlanRow("c1.small.x86", "Type 1", 0.40, "Intel E3-1240 v3 @ 3.4GHz", 1, "32GB",
             ((2, "120GB", "SSD"),), _ALL),
    _PlanRow("m1.xlarge.x86", "Type 2", 1.25, "Intel E5-2650 v4 @ 2.2GHz", 2, "256GB",
             ((6, "480GB", "SSD"),), "ewr1 sjc1 ams1 nrt1 dfw1 iad1 fra2 sin3"),
    _PlanRow("c1.large.arm", "Type 2A", 0.50, "Cavium ThunderX CN8890 @ 2.0GHz", 2, "128GB",
             ((1, "340GB", "SSD"),), "ewr1 sjc1 ams1 nrt1"),
    _PlanRow("c1.xlarge.x86", "Type 3", 1.75, "Intel E5-2640 v3 @ 2.6GHz", 2, "128GB",
             ((2, "120GB", "SSD"), (1, "1.6TB", "NVMe")),
             "ewr1 sjc1 ams1 nrt1 dfw1 ord1 fra2 syd2"),
)  # fmt: skip

_X86_ONLY = "x86"
_OSES: tuple[tuple[str, str, str, str, str], ...] = (
    # slug, name, distro, version, provisionable on
    ("ubuntu_16_04", "Ubuntu 16.04 LTS", "ubuntu", "16.04", _ALL),
    ("ubuntu_18_04", "Ubuntu 18.04 LTS", "ubuntu", "18.04", _ALL),
    ("centos_7", "CentOS 7", "centos", "7", _ALL),
    ("debian_9", "Debian 9", "debian", "9", _ALL),
    ("coreos_stable", "Container Linux (stable)", "coreos", "stable", _X86_ONLY),
    ("freebsd_11_1", "FreeBSD 11.1", "freebsd", "11.1", _X86_ONLY),
)


def _metro_json(code: str, name: str, country: str) -> JsonDict:
    return {"id": _stable_id("metro", code), "code": code, "name": name, "country": country}


def _facility_json(code: str, name: str, metro: JsonDict) -> JsonDict:
    return {
        "id": _stable_id("facility", code),
        "code": code,
        "name": name,
        "features": ["baremetal", "layer_2"],
        "address": {"country": metro["country"]},
        "metro": metro,
        "href": f"/facilities/{_stable_id('facility', code)}",
    }


def _offered_in(row: _PlanRow) -> list[str]:
    return [f[0] for f in _FACILITIES] if row.facilities == _ALL else row.facilities.split()


def _plan_json(row: _PlanRow, facilities: dict[str, JsonDict]) -> JsonDict:
    codes = _offered_in(row)
    price = {"hour": row.hour}
    metro_ids = sorted({facilities[code]["metro"]["id"] for code in codes})
    return {
        "id": _stable_id("plan", row.slug),
        "slug": row.slug,
        "name": row.name,
        "class": row.slug,
        "line": "baremetal",
        "description": f"Our {row.name} configuration",
        "specs": {
            "cpus": [{"count": row.cpus, "type": row.cpu}],
            "memory": {"total": row.memory},
            "drives": [{"count": n, "size": size, "type": kind} for n, size, kind in row.drives],
        },
        "pricing": price,
        "available_in": [
            {"href": f"/facilities/{facilities[code]['id']}", "price": price} for code in codes
        ],
        "available_in_metros": [
            {"href": f"/locations/metros/{metro_id}", "price": price} for metro_id in metro_ids
        ],
    }


def _os_json(row: tuple[str, str, str, str, str]) -> JsonDict:
    slug, name, distro, version, on = row
    plans = [p.slug for p in _PLANS if on == _ALL or p.slug.endswith("." + on)]
    return {
        "id": _stable_id("os", slug),
        "slug": slug,
        "name": name,
        "distro": distro,
        "version": version,
        "provisionable_on": plans,
    }


# --- requests, answers and faults --------------------------------------------------------------


class Recorded(NamedTuple):
    """One request as the fake saw it, and when (by its clock). `status` is None when no answer
    was sent (hung, lost)."""

    method: str
    path: str
    body: Any
    status: int | None
    at: datetime


@dataclass(frozen=True)
class _Answer:
    status: int | None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


_LOST = _Answer(None)
_INVALID = object()  # stands for a body that is not JSON


class _ApiError(Exception):
    """Raised by a route to answer with the API's `{"errors": [...]}` body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> _Answer:
    return _Answer(status, {"errors": [message]}, dict(headers or {}))


@dataclass
class _Rule:
    """A fault armed for the next `remaining` requests whose method and path match."""

    method: str
    prefix: str
    remaining: int
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None

    def matches(self, method: str, path: str) -> bool:
        return self.method == method.upper() and path.startswith(self.prefix)


def _take(rules: list[_Rule], method: str, path: str) -> _Rule | None:
    """Consume one use of the first matching rule, so `times=N` means exactly N requests."""
    for rule in rules:
        if rule.matches(method, path):
            rule.remaining -= 1
            if rule.remaining <= 0:
                rules.remove(rule)
            return rule
    return None


def _normalize(path: str) -> str:
    """packet-python sends `//capacity` for some calls: collapse slashes, drop the leading one."""
    return re.sub(r"/{2,}", "/", path).lstrip("/")


def _split(target: str) -> tuple[str, str]:
    parts = urlsplit(target)
    return _normalize(parts.path), parts.query


def _decode(raw: bytes) -> tuple[Any, bool]:
    """The body as JSON when it parses, else as text: recorded either way, refused if invalid."""
    if not raw:
        return None, True
    try:
        return json.loads(raw), True
    except ValueError:
        return raw.decode("utf-8", "replace"), False


class _Call(NamedTuple):
    """What a route needs from a request."""

    params: dict[str, str]  # named groups of the route's path pattern
    query: dict[str, str]
    body: Any
    now: datetime


def _parse_time(value: Any, now: datetime) -> datetime | None:
    """termination_time as the API takes it: ISO 8601, in the future, or null to clear it."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise _ApiError(422, f"termination_time {value!r} is not a valid timestamp") from exc
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment <= now:
        raise _ApiError(422, "termination_time must be in the future")
    return moment


def _object(body: Any) -> JsonDict:
    if not isinstance(body, dict):
        raise _ApiError(422, "Request body must be a JSON object")
    return body


def _tags(value: Any) -> list[str]:
    """The API takes a list of strings; packet-python's default `{}` is the classic mistake."""
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise _ApiError(422, "tags must be a list of strings")
    return value


def _positive(value: str | None, default: int) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError:
        return default
    return number if number > 0 else default


@dataclass
class _Device:
    id: str
    number: int
    hostname: str
    plan: JsonDict
    facility: JsonDict
    os: JsonDict
    tags: list[str]
    userdata: str
    ssh_keys: list[JsonDict]
    created_at: datetime
    termination_time: datetime | None
    fails: bool
    description: str = ""
    locked: bool = False
    deleting_at: datetime | None = None


# --- the server ---------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _TLSServer
    timeout = _HANDLER_SOCKET_TIMEOUT

    def setup(self) -> None:
        super().setup()
        # The handshake runs here, in the request's thread, so a stalled client cannot block
        # the accept loop.
        self.connection.do_handshake()

    def _serve(self) -> None:
        self.server.fake._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `FakePacket.requests`, not stderr."""


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakePacket, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
        self._context = context

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        return self._context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: clients that time out or hang up mid-request are what the tests provoke."""


class FakePacket(Served):
    """The Packet API labbot uses, on 127.0.0.1 over HTTPS. Thread safe."""

    name = "fakepacket"

    def __init__(
        self,
        *,
        token: str = "fake-packet-token",
        project_id: str | None = None,
        clock: Clock = utcnow,
        provision_seconds: float = 5.0,
        deprovision_seconds: float = 0.0,
        max_per_page: int = 1000,
        reject_delete_while_provisioning: bool = True,
        gone_status: int = 404,
    ) -> None:
        self.token = token
        self.project_id = project_id or str(uuid.uuid4())
        self.clock = clock
        self.provision_seconds = provision_seconds
        self.deprovision_seconds = deprovision_seconds
        self.max_per_page = max_per_page
        self.reject_delete_while_provisioning = reject_delete_while_provisioning
        self.gone_status = gone_status
        self.requests: list[Recorded] = []
        self.backstop_deleted: set[str] = set()

        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._devices: dict[str, _Device] = {}
        self._numbers = itertools.count(1)
        self._failures: list[_Rule] = []
        self._hangs: list[_Rule] = []
        self._lost_answers: list[_Rule] = []
        self._provision_failures: list[_Rule] = []
        self._latencies: dict[str, float] = {}
        self._capacity: dict[tuple[str, str], int] = {}
        self._traffic_bytes: dict[tuple[str, str], int] = {}

        self._metros = {m: _metro_json(m, name, country) for _, _, m, name, country in _FACILITIES}
        self._facilities = {
            code: _facility_json(code, name, self._metros[m]) for code, name, m, _, _ in _FACILITIES
        }
        self._plans = {row.slug: _plan_json(row, self._facilities) for row in _PLANS}
        self._offers = {row.slug: set(_offered_in(row)) for row in _PLANS}
        self._oses = {row[0]: _os_json(row) for row in _OSES}
        self._routes = self._route_table()

        self._server: _TLSServer | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: Path | None = None

    # --- lifecycle ---

    def start(self) -> FakePacket:
        ca = trustme.CA()
        self._tmpdir = Path(tempfile.mkdtemp(prefix="fakepacket-"))
        ca.cert_pem.write_to_path(str(self._tmpdir / "ca.pem"))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self._serve_on(_TLSServer(self, context))
        return self

    def close(self) -> None:
        """Stop serving; requests held by `hang_next` are released without an answer."""
        self._closed.set()
        self._stop_serving()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    @property
    def end_point(self) -> str:
        """host:port, as packet-python's `Manager.end_point` and `PACKET_API_URL` take it."""
        return f"127.0.0.1:{self._port()}"

    @property
    def ca_bundle_path(self) -> str:
        if self._tmpdir is None:
            raise RuntimeError("FakePacket is not started")
        return str(self._tmpdir / "ca.pem")

    # --- fault injection ---

    def latency(self, seconds: float, path_prefix: str | None = None) -> None:
        """Delay every matching request by `seconds` (0 removes the delay)."""
        with self._lock:
            key = _normalize(path_prefix or "")
            if seconds > 0:
                self._latencies[key] = seconds
            else:
                self._latencies.pop(key, None)

    def fail_next(
        self,
        method: str,
        path_prefix: str,
        status: int,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next `times` matching requests with `status`, before authentication or
        routing, as a rate limiter or load balancer would. The body is `{"errors": [reason]}`
        unless `body` gives another shape (the API also sends `{"error": ...}` and worse)."""
        rule = _Rule(
            method.upper(), _normalize(path_prefix), times, status, dict(headers or {}), body
        )
        with self._lock:
            self._failures.append(rule)

    def clear_faults(self) -> None:
        """The outage is over: forget every injected failure that has not fired yet."""
        with self._lock:
            self._failures.clear()
            self._hangs.clear()
            self._lost_answers.clear()
            self._provision_failures.clear()

    def hang_next(self, method: str, path_prefix: str, times: int = 1) -> None:
        """Hold the next `times` matching requests open without answering until close()."""
        with self._lock:
            self._hangs.append(_Rule(method.upper(), _normalize(path_prefix), times))

    def lose_create_answer(self, times: int = 1) -> None:
        """Create the device, then hang up without answering: the server acted, the client
        cannot know."""
        with self._lock:
            self._lost_answers.append(_Rule("POST", "", times))

    def fail_delete(self, device_id: str | None = None, times: int = 1, status: int = 500) -> None:
        """Refuse the next `times` deletes of `device_id` (any device when None) with `status`."""
        self.fail_next("DELETE", f"devices/{device_id or ''}", status, times)

    def fail_provisioning(self, hostname_prefix: str | None = None, times: int = 1) -> None:
        """The next `times` devices created with a matching hostname end in state `failed`."""
        with self._lock:
            self._provision_failures.append(_Rule("POST", hostname_prefix or "", times))

    def vanish(self, device_id: str) -> None:
        """Remove a device behind labbot's back: gone from lists, 404 from then on."""
        with self._lock:
            self._devices.pop(device_id, None)

    def retag(self, device_id: str, tags: list[str]) -> None:
        """Someone edits a device's tags in the provider's console: it still exists (and bills)
        but no longer shows up under its old tags."""
        with self._lock:
            self._devices[device_id].tags = list(tags)

    def set_capacity(self, plan: str, location: str, servers: int) -> None:
        """How many more `plan` servers fit in a metro or facility (default 100 each)."""
        with self._lock:
            self._capacity[plan, self._metro_code(location)] = servers

    def set_traffic(self, device_id: str, inbound: int, outbound: int) -> None:
        """The bytes a device moved in each direction, spread over any timeframe asked for."""
        with self._lock:
            self._traffic_bytes[device_id, "inbound"] = inbound
            self._traffic_bytes[device_id, "outbound"] = outbound

    # --- inspection ---

    def count(self, method: str, path_prefix: str = "") -> int:
        prefix = _normalize(path_prefix)
        with self._lock:
            return sum(
                1 for r in self.requests if r.method == method.upper() and r.path.startswith(prefix)
            )

    def devices(self) -> list[JsonDict]:
        """The live devices (deprovisioning ones included), as the API would show them."""
        with self._lock:
            now = self.clock()
            self._settle(now)
            return [self._device_json(d, now) for d in self._ordered()]

    # --- request handling ---

    def _serve(self, handler: _Handler) -> None:
        method = handler.command
        path, query = _split(handler.path)
        body, valid = _decode(handler.rfile.read(int(handler.headers.get("Content-Length") or 0)))
        self._delay(path)
        with self._lock:
            answer = self._answer(method, path, query, body if valid else _INVALID, handler.headers)
            shown = f"{path}?{query}" if query else path
            self.requests.append(Recorded(method, shown, body, answer.status, self.clock()))
        if answer.hang:
            self._closed.wait()
        if answer.status is not None:
            _write(handler, answer.status, answer)

    def _delay(self, path: str) -> None:
        with self._lock:
            delays = [s for prefix, s in self._latencies.items() if path.startswith(prefix)]
        if delays:
            time.sleep(max(delays))

    def _answer(self, method: str, path: str, query: str, body: Any, headers: Any) -> _Answer:
        if _take(self._hangs, method, path):
            return _Answer(None, hang=True)
        rule = _take(self._failures, method, path)
        if rule and rule.body is not None:
            return _Answer(rule.status, rule.body, dict(rule.headers))
        if rule:
            return _error(rule.status, HTTPStatus(rule.status).phrase, rule.headers)
        if headers.get("X-Auth-Token") != self.token:
            return _error(401, "Invalid authentication token")
        if body is _INVALID:
            return _error(422, "Request body is not valid JSON")
        try:
            return self._route(method, path, dict(parse_qsl(query)), body)
        except _ApiError as exc:
            return _error(exc.status, str(exc))
        except Exception as exc:  # a bug in the fake must look like the API's 500, not a hang
            return _error(500, f"fake packet error: {exc!r}")

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> _Answer:
        now = self.clock()
        self._settle(now)
        for verbs, pattern, route in self._routes:
            match = pattern.fullmatch(path)
            if match and method in verbs:
                return route(_Call(match.groupdict(), query, body, now))
        raise _ApiError(404, "Not found")

    def _route_table(self) -> list[tuple[tuple[str, ...], re.Pattern[str], _Route]]:
        device = r"devices/(?P<device>[^/]+)"
        project = r"projects/(?P<project>[^/]+)"
        table: list[tuple[tuple[str, ...], str, _Route]] = [
            (("GET",), r"user", self._get_user),
            (("GET",), project, self._get_project),
            (("GET",), project + "/devices", self._list_devices),
            (("POST",), project + "/devices", self._create_device),
            (("GET",), device, self._get_device),
            (("GET",), device + "/traffic", self._traffic),
            (("DELETE",), device, self._delete_device),
            (("PUT", "PATCH"), device, self._update_device),
            (("GET",), r"plans", self._list_plans),
            (("GET",), r"(?:locations/)?metros", self._list_metros),
            (("GET",), r"facilities", self._list_facilities),
            (("GET",), r"operating-systems", self._list_oses),
            (("GET",), r"capacity(?P<metros>/metros)?", self._capacity_report),
            (("POST",), r"capacity(?P<metros>/metros)?", self._capacity_check),
        ]
        return [(verbs, re.compile(pattern), route) for verbs, pattern, route in table]

    # --- routes ---

    def _get_user(self, call: _Call) -> _Answer:
        user_id = _stable_id("user", self.project_id)
        return _Answer(
            200,
            {"id": user_id, "full_name": "labbot", "email": "labbot@example.org",
             "href": f"/users/{user_id}"},
        )  # fmt: skip

    def _get_project(self, call: _Call) -> _Answer:
        self._own_project(call.params["project"])
        return _Answer(
            200,
            {"id": self.project_id, "name": "CNCF Community Infrastructure Lab",
             "href": f"/projects/{self.project_id}"},
        )  # fmt: skip

    def _list_devices(self, call: _Call) -> _Answer:
        self._own_project(call.params["project"])
        tag = call.query.get("tag")
        per_page = min(_positive(call.query.get("per_page"), _DEFAULT_PER_PAGE), self.max_per_page)
        page = _positive(call.query.get("page"), 1)
        matching = [d for d in self._ordered() if tag is None or tag in d.tags]
        last = max(1, math.ceil(len(matching) / per_page))
        chunk = matching[(page - 1) * per_page : page * per_page]

        def link(number: int) -> JsonDict | None:
            if not 1 <= number <= last:
                return None
            suffix = f"&tag={quote(tag, safe='')}" if tag is not None else ""
            href = f"/projects/{self.project_id}/devices?page={number}&per_page={per_page}"
            return {"href": href + suffix}

        meta = {
            "first": link(1),
            "previous": link(page - 1),
            "self": link(page),
            "next": link(page + 1),
            "last": link(last),
            "current_page": page,
            "last_page": last,
            "total": len(matching),
        }
        devices = [self._device_json(d, call.now) for d in chunk]
        return _Answer(200, {"devices": devices, "meta": meta})

    def _create_device(self, call: _Call) -> _Answer:
        self._own_project(call.params["project"])
        body = _object(call.body)
        plan = self._plans.get(body.get("plan"))
        if plan is None:
            raise _ApiError(422, f"{body.get('plan')!r} is not a valid plan")
        os = self._oses.get(body.get("operating_system"))
        if os is None or plan["slug"] not in os["provisionable_on"]:
            raise _ApiError(
                422,
                f"{body.get('operating_system')!r} is not a valid operating system for "
                f"{plan['slug']}",
            )
        number = next(self._numbers)
        hostname = str(body.get("hostname") or f"device-{number}")
        device = _Device(
            id=str(uuid.uuid4()),
            number=number,
            hostname=hostname,
            plan=plan,
            facility=self._place(body, plan["slug"]),
            os=os,
            tags=_tags(body.get("tags", [])),
            userdata=str(body.get("userdata") or ""),
            ssh_keys=list(body.get("ssh_keys") or []),
            created_at=call.now,
            termination_time=_parse_time(body.get("termination_time"), call.now),
            fails=_take(self._provision_failures, "POST", hostname) is not None,
            description=str(body.get("description") or ""),
            locked=bool(body.get("locked")),
        )
        self._devices[device.id] = device
        if _take(self._lost_answers, "POST", ""):
            return _LOST
        return _Answer(201, self._device_json(device, call.now))

    def _get_device(self, call: _Call) -> _Answer:
        return _Answer(200, self._device_json(self._live(call.params["device"]), call.now))

    def _delete_device(self, call: _Call) -> _Answer:
        """`?force_delete=` is accepted and, like the API for on-demand devices, changes nothing
        labbot can see."""
        device = self._live(call.params["device"])
        state = self._state(device, call.now)
        if self.reject_delete_while_provisioning and state in ("queued", "provisioning"):
            raise _ApiError(422, "Cannot delete a device while it is provisioning")
        if device.locked:
            raise _ApiError(422, "Cannot delete a locked device")
        device.deleting_at = device.deleting_at or call.now
        self._settle(call.now)
        return _Answer(204)

    def _update_device(self, call: _Call) -> _Answer:
        device = self._live(call.params["device"])
        body = _object(call.body)
        if "termination_time" in body:
            device.termination_time = _parse_time(body["termination_time"], call.now)
        if "tags" in body:
            device.tags = _tags(body["tags"])
        device.hostname = str(body.get("hostname") or device.hostname)
        device.description = str(body.get("description") or device.description)
        device.locked = bool(body.get("locked", device.locked))
        return _Answer(200, self._device_json(device, call.now))

    def _traffic(self, call: _Call) -> _Answer:
        """`GET /devices/{id}/traffic`: `direction` (inbound or outbound) is required, as are
        `timeframe[started_at]` and `timeframe[ended_at]` here. The API documents the query,
        not the answer's shape; this one gives the bytes as a series of points per minute."""
        device = self._live(call.params["device"])
        direction = call.query.get("direction")
        if direction not in ("inbound", "outbound"):
            raise _ApiError(422, "direction must be inbound or outbound")
        if call.query.get("interval", "minute") not in _TRAFFIC_INTERVALS:
            raise _ApiError(422, "interval is not one the API knows")
        try:
            started = datetime.fromisoformat(call.query["timeframe[started_at]"])
            ended = datetime.fromisoformat(call.query["timeframe[ended_at]"])
        except (KeyError, ValueError) as exc:
            raise _ApiError(
                422, "timeframe[started_at] and timeframe[ended_at] are required"
            ) from exc
        minutes = max(1, int((ended - started).total_seconds() // 60))
        total = self._traffic_bytes.get((device.id, direction), 0)
        points = [
            {"timestamp": _stamp(started + timedelta(minutes=n)), "value": total // minutes}
            for n in range(minutes)
        ]
        points[-1]["value"] += total - total // minutes * minutes
        return _Answer(
            200,
            {
                "direction": direction,
                "interval": call.query.get("interval", "minute"),
                "timeframe": {"started_at": _stamp(started), "ended_at": _stamp(ended)},
                "unit": "bytes",
                "series": points,
            },
        )

    def _list_plans(self, call: _Call) -> _Answer:
        return _Answer(200, {"plans": list(self._plans.values())})

    def _list_metros(self, call: _Call) -> _Answer:
        return _Answer(200, {"metros": list(self._metros.values())})

    def _list_facilities(self, call: _Call) -> _Answer:
        return _Answer(200, {"facilities": list(self._facilities.values())})

    def _list_oses(self, call: _Call) -> _Answer:
        return _Answer(200, {"operating_systems": list(self._oses.values())})

    def _capacity_report(self, call: _Call) -> _Answer:
        """Levels per location and plan, as `GET capacity` (facilities) or `capacity/metros`."""
        by_metro = bool(call.params.get("metros"))
        report: JsonDict = {}
        for code, facility in self._facilities.items():
            metro = facility["metro"]["code"]
            for slug in self._plans:
                if code in self._offers[slug]:
                    level = _level(self._remaining(slug, metro))
                    report.setdefault(metro if by_metro else code, {})[slug] = {"level": level}
        return _Answer(200, {"capacity": report})

    def _capacity_check(self, call: _Call) -> _Answer:
        key = "metro" if call.params.get("metros") else "facility"
        servers = _object(call.body).get("servers")
        if not isinstance(servers, list) or not servers:
            raise _ApiError(422, "servers is required")
        answered = []
        for server in servers:
            location, slug = str(server.get(key, "")), str(server.get("plan", ""))
            quantity = _positive(str(server.get("quantity", 1)), 1)
            offered = bool(self._offers.get(slug, set()) & set(self._facility_codes(location)))
            fits = offered and quantity <= self._remaining(slug, self._metro_code(location))
            answered.append({**server, "available": fits})
        return _Answer(200, {"servers": answered})

    # --- model ---

    def _own_project(self, project_id: str) -> None:
        if project_id != self.project_id:
            raise _ApiError(404, "Not found")

    def _live(self, device_id: str) -> _Device:
        device = self._devices.get(device_id)
        if device is None:
            message = "Not found" if self.gone_status == 404 else "You are not authorized"
            raise _ApiError(self.gone_status, message)
        return device

    def _ordered(self) -> list[_Device]:
        return sorted(self._devices.values(), key=lambda d: d.number)

    def _state(self, device: _Device, now: datetime) -> str:
        if device.deleting_at is not None:
            return "deprovisioning"
        elapsed = (now - device.created_at).total_seconds()
        if elapsed >= self.provision_seconds:
            return "failed" if device.fails else "active"
        # Real devices sit in the queue for a while before the installer starts.
        return "queued" if elapsed < self.provision_seconds / 5 else "provisioning"

    def _settle(self, now: datetime) -> None:
        """Apply what the clock says happened: termination_time deletions, finished deletes."""
        for device in list(self._devices.values()):
            expired = device.termination_time is not None and now >= device.termination_time
            if device.deleting_at is None and expired:
                device.deleting_at = device.termination_time
                self.backstop_deleted.add(device.id)
            if device.deleting_at is not None and now >= device.deleting_at + timedelta(
                seconds=self.deprovision_seconds
            ):
                del self._devices[device.id]

    def _place(self, body: JsonDict, slug: str) -> JsonDict:
        """The facility a create lands in: the named facility (or the first of a prioritized
        list) that offers the plan, or the first such facility of the named metro."""
        wanted = body.get("facility") or body.get("metro")
        if not wanted:
            raise _ApiError(422, "Either a metro or a facility is required")
        names = [str(n) for n in (wanted if isinstance(wanted, list) else [wanted])]
        codes = [code for name in names for code in self._facility_codes(name)]
        if not codes:
            raise _ApiError(422, f"{wanted!r} is not a valid metro or facility")
        offered = [code for code in codes if code in self._offers[slug]]
        if not offered:
            raise _ApiError(422, f"{slug} is not available in {wanted!r}")
        return self._facilities[offered[0]]

    def _facility_codes(self, location: str) -> list[str]:
        if location in self._facilities:
            return [location]
        return [c for c, f in self._facilities.items() if f["metro"]["code"] == location]

    def _metro_code(self, location: str) -> str:
        facility = self._facilities.get(location)
        return facility["metro"]["code"] if facility else location

    def _remaining(self, slug: str, metro_code: str) -> int:
        used = sum(
            1
            for d in self._devices.values()
            if d.plan["slug"] == slug and d.facility["metro"]["code"] == metro_code
        )
        return self._capacity.get((slug, metro_code), _DEFAULT_CAPACITY) - used

    def _device_json(self, device: _Device, now: datetime) -> JsonDict:
        return {
            "id": device.id,
            "short_id": device.id[:8],
            "hostname": device.hostname,
            "description": device.description,
            "state": self._state(device, now),
            "tags": list(device.tags),
            "billing_cycle": "hourly",
            "locked": device.locked,
            "spot_instance": False,
            "created_at": _stamp(device.created_at),
            "updated_at": _stamp(now),
            "termination_time": _stamp(device.termination_time),
            "plan": device.plan,
            "facility": device.facility,
            "metro": device.facility["metro"],
            "operating_system": device.os,
            "ip_addresses": _addresses(device.number),
            "ssh_keys": [
                {"href": f"/ssh-keys/{_stable_id('key', str(k))}"} for k in device.ssh_keys
            ],
            "userdata": device.userdata,
            "project": {"href": f"/projects/{self.project_id}"},
            "href": f"/devices/{device.id}",
        }


def _level(remaining: int) -> str:
    if remaining >= 20:
        return "normal"
    if remaining >= 5:
        return "limited"
    return "critical" if remaining > 0 else "unavailable"


def _addresses(number: int) -> list[JsonDict]:
    """Private first, as the API often lists them, so clients must pick the public ones."""
    high, low = divmod(number, 250)
    return [
        {"address": f"10.88.{high}.{low + 1}", "public": False, "address_family": 4,
         "cidr": 31, "management": True},
        {"address": f"147.75.{high}.{low + 1}", "public": True, "address_family": 4,
         "cidr": 31, "management": True},
        {"address": f"2604:1380:{number:x}::1", "public": True, "address_family": 6,
         "cidr": 127, "management": True},
    ]  # fmt: skip


def _write(handler: _Handler, status: int, answer: _Answer) -> None:
    payload = b"" if answer.body is None else json.dumps(answer.body).encode()
    try:
        handler.send_response(status)
        if payload:
            handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)
    except OSError:
        pass  # the client gave up (its timeout fired); nothing left to tell it
