"""The Packet (Equinix Metal) backend, through packet-python 1.44.3.

packet-python is a thin URL builder over module-level ``requests.get/post/...`` calls: no timeout,
no retries, errors raised as ``packet.baseapi.Error``/``ResponseError`` (and UnboundLocalError or
TypeError on odd bodies). This module keeps packet-python for what it does (URLs, headers, JSON)
and adds what it lacks:

- every request goes through a per-thread ``requests.Session`` that injects a (connect, read)
  timeout; the routing is a stand-in for ``packet.baseapi.requests`` that sends a call to the
  session bound for the current thread, and to plain ``requests`` otherwise;
- the HTTP status of a failure is read from the response the session saw, never from
  packet-python's exception text, so even the bodies that crash packet-python are classified;
- 429 waits for ``X-RateLimit-Reset``; 5xx, timeouts and dropped connections are retried with
  exponential backoff and jitter; a create is only repeated after checking that the lost attempt
  did not create the device.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, TypeVar
from urllib.parse import quote

import packet
import packet.baseapi
import requests

from metal.provider import (
    TAG,
    Catalog,
    Device,
    DeviceSpec,
    DeviceState,
    Metro,
    OneAtATime,
    Plan,
    ProviderError,
    Usage,
    utcnow,
)
from metal.reporter import combined
from metal.reporter import user_data as reporter_script

JsonDict = dict[str, Any]
T = TypeVar("T")

PAGE_SIZE = 100
TRAFFIC_CALLS = 8  # devices whose traffic is asked at once
_GONE = frozenset({403, 404})  # the API answers either for a device that no longer exists
_LEAVING = frozenset({DeviceState.DEPROVISIONING, DeviceState.DELETED})
_FACILITY_CODE = re.compile(r"[a-z]{3}\d+")  # ewr1, fra2; metros are two letters (ny, am)
_ERROR_TEXT_LIMIT = 300
_EPOCH_FLOOR = 1e9  # 2001-09-09: an X-RateLimit-Reset below this is a delta, not a timestamp

_BOUND_SESSION: ContextVar[requests.Session | None] = ContextVar("packet_session", default=None)


class _RequestsRouter:
    """Stands in for the `requests` module inside packet.baseapi. packet-python calls
    `requests.get(url, headers=...)` with no session or timeout to configure; the verbs it uses
    go to the session bound for this thread, everything else (exceptions, utils) to requests."""

    _VERBS = frozenset({"get", "post", "delete", "patch"})

    def __getattr__(self, name: str) -> Any:
        session = _BOUND_SESSION.get()
        if session is not None and name in self._VERBS:
            return getattr(session, name)
        return getattr(requests, name)


def _install_router() -> None:
    if not isinstance(packet.baseapi.requests, _RequestsRouter):
        packet.baseapi.requests = _RequestsRouter()


_install_router()


class _BoundedSession(requests.Session):
    """A session whose every request has a timeout, and which remembers the last response so a
    failure can be classified by status even when packet-python chokes on the body."""

    def __init__(self, timeout: float, ca_bundle: str | None) -> None:
        super().__init__()
        self._timeout = (timeout, timeout)
        self._ca_bundle = ca_bundle
        self.last_response: requests.Response | None = None

    def request(self, method: str | bytes, url: str | bytes, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        if self._ca_bundle:
            # Per request, because a session-level `verify` loses to REQUESTS_CA_BUNDLE.
            kwargs.setdefault("verify", self._ca_bundle)
        self.last_response = super().request(method, url, **kwargs)
        return self.last_response


class _Transient(Exception):
    """A failure worth retrying: rate limit, server error, no answer, unreadable answer."""

    def __init__(self, reason: str, reset: float | None = None) -> None:
        super().__init__(reason)
        self.reset = reset  # X-RateLimit-Reset, as sent


class _Refused(ProviderError):
    """A definite 4xx answer: retrying the same request cannot help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, retryable=False)
        self.status = status


class PacketProvider(OneAtATime):
    """`Provider` on the Packet API, and `Metered` through each device's traffic. Thread safe:
    the lease engine calls it from many threads."""

    name = "packet"
    metrics_source = "packet"

    def __init__(
        self,
        token: str,
        project_id: str,
        api_url: str = "api.packet.net",
        *,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        patience: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        ca_bundle: str | None = None,
        token_name: str = "PACKET_AUTH_TOKEN",  # where the token came from, for the sentence
    ) -> None:
        self._token = token
        self._token_name = token_name
        self._project_id = project_id
        self._host = api_url
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._patience = patience
        self._clock = clock
        self._sleep = sleep
        self._ca_bundle = ca_bundle  # None: requests falls back to REQUESTS_CA_BUNDLE itself
        self._manager = packet.Manager(auth_token=token)
        self._manager.end_point = api_url
        self._local = threading.local()

    # --- Provider ---

    def catalog(self) -> Catalog:
        plans = self._request("GET", "plans").get("plans") or []
        locations = [loc for loc in self._locations() if loc.get("code")]
        oses = self._request("GET", "operating-systems").get("operating_systems") or []
        codes_by_id = {str(loc.get("id")): str(loc["code"]) for loc in locations}
        prices = [(p, _hourly(p)) for p in plans if p.get("slug")]
        priced = [_plan(p, price, codes_by_id) for p, price in prices if price is not None]
        return Catalog(
            plans={p.slug: p for p in priced},
            metros={m.code: m for m in map(_metro, locations)},
            oses=tuple(str(o["slug"]) for o in oses if o.get("slug")),
        )

    def create(self, spec: DeviceSpec) -> Device:
        """POSTed by hand because packet-python's `create_device` drops `termination_time` unless
        the device is spot. SSH keys go in `ssh_keys` as `{"label", "key"}` objects: the API
        takes public keys inline there (user_ssh_keys/project_ssh_keys want UUIDs of keys stored
        beforehand); with explicit keys the API no longer adds every project member's key, so a
        lease's servers admit the requester, not the whole lab.

        A create whose answer was lost may have created the device, so every retry first looks
        for a device with the spec's hostname under its most specific tag and adopts it. That
        guards retries inside this call; a caller re-creating after a raise must `list()` first.
        """
        body = _create_body(spec)
        path = f"projects/{self._project_id}/devices"
        posted = False

        def attempt() -> Device:
            nonlocal posted
            if posted:
                adopted = self._find(spec)
                if adopted is not None:
                    return adopted
            posted = True
            return _device(self._once("POST", path, body))

        return self._retrying(f"create {spec.hostname}", attempt)

    def get(self, device_id: str) -> Device | None:
        path = _device_path(device_id)
        try:
            device = self._retrying(f"GET {path}", lambda: _device(self._once("GET", path)))
        except _Refused as refusal:
            if refusal.status in _GONE:
                return None
            raise
        return None if device.state is DeviceState.DELETED else device

    def delete(self, device_id: str) -> None:
        try:
            self._request("DELETE", _device_path(device_id))
        except _Refused as refusal:
            if refusal.status in _GONE:
                return
            if refusal.status == 422 and "provisioning" in str(refusal).lower():
                raise ProviderError(
                    f"device {device_id} is still provisioning and cannot be deleted yet",
                    retryable=True,
                ) from refusal
            raise

    def list(self, tag: str) -> list[Device]:
        return self._retrying(f"list devices tagged {tag}", lambda: self._collect(tag))

    def capacity(self, plan: str, metro: str, quantity: int) -> bool | None:
        key = _location_key(metro)
        path = "capacity/metros" if key == "metro" else "capacity"
        body = {"servers": [{key: metro, "plan": plan, "quantity": str(quantity)}]}
        try:
            servers = self._request("POST", path, body).get("servers")
        except ProviderError:
            return None
        if not isinstance(servers, list) or not servers:
            return None
        return all(isinstance(s, dict) and bool(s.get("available")) for s in servers)

    def set_backstop(self, tag: str, metro: str, when: datetime, device_ids: Sequence[str]) -> None:
        """Packet's backstop is each device's own termination_time: devices still to come
        carry it from their create, those there now are moved one PATCH each (not PUT:
        packet-python's call_api speaks GET/POST/DELETE/PATCH only, and the API takes device
        updates on both)."""
        body = {"termination_time": _timestamp(when)}
        for device_id in device_ids:
            self._request("PATCH", _device_path(device_id), body)

    def verify(self) -> None:
        self._request("GET", f"projects/{self._project_id}")

    def usage(self, device_ids: Sequence[str], start: datetime, end: datetime) -> dict[str, Usage]:
        """Each device's bytes in and out over the window, from `GET devices/{id}/traffic`
        (one call per direction; packet-python has no wrapper for it, so its raw `call_api`),
        TRAFFIC_CALLS devices at a time. Packet keeps no CPU figure. A metrics call is tried
        once: a device whose figures fail or cannot be read (throttled, gone) is left out,
        and when all fail, the first failure is raised."""
        timeframe = {
            "timeframe[started_at]": _timestamp(start),
            "timeframe[ended_at]": _timestamp(end),
        }
        with ThreadPoolExecutor(TRAFFIC_CALLS, thread_name_prefix="packet-traffic") as pool:
            answers = dict(
                zip(
                    device_ids,
                    pool.map(lambda d: self._traffic(d, timeframe), device_ids),
                    strict=True,
                )
            )
        found = {d: Usage(net_bytes=n) for d, n in answers.items() if isinstance(n, int)}
        failures = [a for a in answers.values() if isinstance(a, Exception)]
        if failures and len(failures) == len(answers):
            raise ProviderError(f"Packet API at {self._host}: traffic not read: {failures[0]}")
        return found

    def _traffic(self, device_id: str, timeframe: JsonDict) -> int | Exception | None:
        """The device's bytes both ways, None when an answer has no figure, or what failed."""
        total = 0
        for direction in ("inbound", "outbound"):
            params = {"direction": direction, "interval": "minute", **timeframe}
            try:
                data = self._once("GET", f"{_device_path(device_id)}/traffic", params)
            except (_Transient, ProviderError) as failure:
                return failure
            counted = _traffic_bytes(data)
            if counted is None:
                return None
            total += counted
        return total

    # --- plumbing ---

    def _locations(self) -> list[JsonDict]:
        """Facilities (ams1, ewr1, ...): labbot's requests name locations the way the CNCF lab
        did. Metros only on an API that no longer lists facilities."""
        try:
            return self._request("GET", "facilities").get("facilities") or []
        except _Refused as refusal:
            if refusal.status != 404:
                raise
        return self._request("GET", "locations/metros").get("metros") or []

    def _collect(self, tag: str) -> list[Device]:
        """Every page, one attempt each; the caller retries the whole walk. The tag is also
        checked here, so a server that ignores the filter cannot leak other devices in."""
        path = f"projects/{self._project_id}/devices"
        found: dict[str, Device] = {}
        page = 1
        while True:
            params = {"tag": quote(tag, safe=""), "per_page": PAGE_SIZE, "page": page}
            data = self._once("GET", path, params)
            batch = data.get("devices") or []
            found.update((d.id, d) for d in map(_device, batch))
            if not batch or not (data.get("meta") or {}).get("next"):
                break
            page += 1
        return [d for d in found.values() if tag in d.tags and d.state is not DeviceState.DELETED]

    def _find(self, spec: DeviceSpec) -> Device | None:
        candidates = self._collect(_lookup_tag(spec))
        return next(
            (d for d in candidates if d.hostname == spec.hostname and d.state not in _LEAVING),
            None,
        )

    def _request(self, method: str, path: str, params: JsonDict | None = None) -> Any:
        return self._retrying(f"{method} {path}", lambda: self._once(method, path, params))

    def _retrying(self, what: str, attempt: Callable[[], T]) -> T:
        """Retries within one call are bounded in number and in time (`patience`: no pause
        reaches past it, no attempt starts after it), so a call never outlasts the claim its
        caller holds; what is still failing then is the caller's to try again later."""
        failures = 0
        give_up_at = time.monotonic() + self._patience
        while True:
            try:
                return attempt()
            except _Transient as failure:
                failures += 1
                pause = self._pause(failure, failures)
                if failures > self._retries or time.monotonic() + pause > give_up_at:
                    raise ProviderError(
                        self._scrub(
                            f"Packet API at {self._host}: {what} failed {failures} times, "
                            f"last: {failure}"
                        ),
                        retryable=True,
                    ) from failure
                self._sleep(pause)

    def _pause(self, failure: _Transient, failures: int) -> float:
        if failure.reset is not None:
            # Epoch seconds; read a small value as seconds from now, since APIs differ and
            # misreading a delta as an epoch would turn the wait into a burst of retries.
            wait = failure.reset
            if wait >= _EPOCH_FLOOR:
                wait -= self._clock().timestamp()
            return min(self._max_backoff, max(0.0, wait))
        ceiling = min(self._max_backoff, self._backoff * 2 ** (failures - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _once(self, method: str, path: str, params: JsonDict | None = None) -> Any:
        """One exchange through packet-python, with any failure turned into _Transient or
        _Refused. Parsing the answer is part of the exchange: a body we cannot read is as bad
        as no body."""
        session = self._session()
        session.last_response = None
        bound = _BOUND_SESSION.set(session)
        try:
            data = self._manager.call_api(path, type=method, params=params)
        except Exception as exc:  # packet-python raises Error, ResponseError, TypeError, ...
            raise self._failure(method, path, exc, session.last_response) from exc
        finally:
            _BOUND_SESSION.reset(bound)
        if method != "DELETE" and not isinstance(data, dict):
            raise _Transient(f"unreadable answer to {method} {path}")
        return data

    def _failure(
        self, method: str, path: str, exc: Exception, response: requests.Response | None
    ) -> Exception:
        if response is None:
            cause = getattr(exc, "cause", None) or exc
            return _Transient(f"no answer to {method} {path} ({type(cause).__name__})")
        status = response.status_code
        if status == 429:
            return _Transient("rate limited (429)", reset=_reset(response))
        if status >= 500:
            return _Transient(f"{status} from {method} {path}: {_error_text(response)}")
        if response.ok:
            return _Transient(f"unreadable answer to {method} {path} ({type(exc).__name__})")
        if status == 401:
            message = f"{self._token_name} was refused by the Packet API at {self._host}: "
        else:
            message = f"Packet API at {self._host} refused {method} {path} ({status}): "
        return _Refused(self._scrub(message + _error_text(response)), status)

    def _session(self) -> _BoundedSession:
        """One session per thread: requests does not promise a Session is thread safe."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = _BoundedSession(self._timeout, self._ca_bundle)
        return session

    def _scrub(self, message: str) -> str:
        return message.replace(self._token, "[token]") if self._token else message


def _create_body(spec: DeviceSpec) -> JsonDict:
    body: JsonDict = {
        "hostname": spec.hostname,
        "plan": spec.plan,
        _location_key(spec.metro): spec.metro,
        "operating_system": spec.os,
        "billing_cycle": "hourly",
        "tags": list(dict.fromkeys((TAG, *spec.tags))),
        "userdata": _userdata(spec),
    }
    if spec.termination_time is not None:
        body["termination_time"] = _timestamp(spec.termination_time)
    if spec.ssh_keys:
        body["ssh_keys"] = [
            {"label": f"{spec.hostname}-{n}", "key": key} for n, key in enumerate(spec.ssh_keys, 1)
        ]
    return body


def _traffic_bytes(data: JsonDict) -> int | None:
    """The bytes of a traffic answer: the sum of its series' points, each `{"value": N}` (or
    `[timestamp, N]`); None for an answer without a readable series. (The published API
    documents the query, not the answer's shape; fakes/packet.py answers this one.)"""
    series = data.get("series")
    if not isinstance(series, list):
        return None
    total = 0.0
    for point in series:
        value = point.get("value") if isinstance(point, dict) else None
        if isinstance(point, list) and len(point) == 2:
            value = point[1]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            return None
        total += value
    return int(total)


def _userdata(spec: DeviceSpec) -> str:
    """The spec's user data, or the activity reporter's installer (metal.reporter) where the
    server reports; a spec with both gets both, as cloud-init's multipart."""
    if spec.reporting is None:
        return spec.userdata
    reporter = reporter_script(spec.reporting.url, [spec.reporting.token])
    return combined(spec.userdata, reporter) if spec.userdata else reporter


def _lookup_tag(spec: DeviceSpec) -> str:
    """The narrowest tag the device is sure to carry (the lease's), so the lookup after a lost
    create answer reads one lease's devices, not the whole lab's."""
    return next((t for t in spec.tags if t != TAG), TAG)


def _location_key(code: str) -> str:
    return "facility" if _FACILITY_CODE.fullmatch(code) else "metro"


def _device_path(device_id: str) -> str:
    # packet-python puts the path into the URL as is.
    return f"devices/{quote(device_id, safe='')}"


def _timestamp(when: datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("termination times must be timezone-aware (UTC)")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _state(value: Any) -> DeviceState:
    """States the protocol does not name (rescue, post_provisioning, ...) read as provisioning:
    not usable yet, not gone, so the sweep keeps polling."""
    try:
        return DeviceState(value)
    except ValueError:
        return DeviceState.PROVISIONING


def _device(data: JsonDict) -> Device:
    if not data.get("id"):
        raise _Transient("device answer without an id")
    metro = (data.get("metro") or {}).get("code") or (data.get("facility") or {}).get("code")
    return Device(
        id=str(data["id"]),
        hostname=str(data.get("hostname") or ""),
        state=_state(data.get("state")),
        plan=str((data.get("plan") or {}).get("slug") or ""),
        metro=str(metro or ""),
        tags=tuple(str(t) for t in data.get("tags") or ()),
        ips=_public_first(data.get("ip_addresses") or []),
        created_at=_parse_time(data.get("created_at")),
    )


def _public_first(addresses: list[JsonDict]) -> tuple[str, ...]:
    ordered = sorted(
        (a for a in addresses if a.get("address")),
        key=lambda a: (not a.get("public"), a.get("address_family") != 4),
    )
    return tuple(str(a["address"]) for a in ordered)


def _hourly(plan: JsonDict) -> Decimal | None:
    """The hourly price as decimal text says it; plans without one (reservation-only) cannot be
    costed, so the catalog leaves them out."""
    price = (plan.get("pricing") or {}).get("hour")
    try:
        return Decimal(str(price)) if price is not None else None
    except InvalidOperation:
        return None


def _cents(dollars: Decimal) -> int:
    """Round half up on the decimal value: 0.075 $/h is 8 cents, where float rounding gives 7."""
    return int((dollars * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _metro(location: JsonDict) -> Metro:
    return Metro(code=str(location["code"]), name=str(location.get("name") or location["code"]))


def _plan(data: JsonDict, hourly: Decimal, location_codes: dict[str, str]) -> Plan:
    """Availability entries are hrefs ending in a location id (or, expanded, objects with a
    code); entries naming locations we did not list are dropped."""
    slug = str(data["slug"])
    entries = data.get("available_in") or data.get("available_in_metros") or []
    codes = (
        entry.get("code") or location_codes.get(str(entry.get("href", "")).rsplit("/", 1)[-1])
        for entry in entries
    )
    return Plan(
        slug=slug,
        name=str(data.get("name") or slug),
        hourly_cents=_cents(hourly),
        arch="aarch64" if ".arm" in slug else "x86_64",  # the API has no arch field; slugs do
        specs=_specs(data.get("specs") or {}),
        metros=tuple(sorted({str(c) for c in codes if c})),
    )


def _specs(specs: JsonDict) -> str:
    parts = [f"{c.get('count', 1)}x {c.get('type', '?')}" for c in specs.get("cpus") or []]
    memory = (specs.get("memory") or {}).get("total")
    if memory:
        parts.append(f"{memory} RAM")
    parts += [
        f"{d.get('count', 1)}x {d.get('size', '')} {d.get('type', '')}".strip()
        for d in specs.get("drives") or []
    ]
    return ", ".join(parts)


def _reset(response: requests.Response) -> float | None:
    try:
        return float(response.headers["X-RateLimit-Reset"])
    except (KeyError, ValueError):
        return None


def _error_text(response: requests.Response) -> str:
    """The API's message from `{"errors": [...]}` or `{"error": "..."}`, else the raw text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("errors"):
        text = ", ".join(map(str, body["errors"]))
    elif isinstance(body, dict) and body.get("error"):
        text = str(body["error"])
    else:
        text = response.text or response.reason or ""
    return text[:_ERROR_TEXT_LIMIT]
