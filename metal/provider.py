"""The seam between labbot and a bare-metal provider.

Everything the lease engine needs from a provider is in `Provider`; the simulated backend, the
Packet backend and any other operator-supplied backend implement it. Calls may raise
`ProviderError`; the sweep treats every raise as "not done yet" and retries later, so a backend
never has to decide policy, only to report what happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, TypeVar, runtime_checkable

from metal.reporter import Reporting

TAG = "labbot"

T = TypeVar("T")
R = TypeVar("R")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The wall clock, aware UTC: the default wherever a clock can be injected."""
    return datetime.now(UTC)


def lease_tag(lease_id: int) -> str:
    """The tag that ties a device to its lease, so a lost create answer can be found again."""
    return f"lease-{lease_id}"


class DeviceState(StrEnum):
    """Device states as the Packet API names them."""

    QUEUED = "queued"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    POWERING_OFF = "powering_off"
    INACTIVE = "inactive"
    POWERING_ON = "powering_on"
    REINSTALLING = "reinstalling"
    DEPROVISIONING = "deprovisioning"
    FAILED = "failed"
    DELETED = "deleted"


@dataclass(frozen=True)
class Plan:
    slug: str
    name: str
    hourly_cents: int
    arch: str = "x86_64"
    specs: str = ""
    metros: tuple[str, ...] = ()  # empty: available everywhere the catalog lists


@dataclass(frozen=True)
class Metro:
    code: str
    name: str


@dataclass(frozen=True)
class Catalog:
    plans: dict[str, Plan]
    metros: dict[str, Metro]
    oses: tuple[str, ...]
    # OS slug -> the user to log in as; Packet's images all take root, an EC2 AMI may not.
    logins: dict[str, str] = field(default_factory=dict)

    def login_user(self, os: str) -> str:
        return self.logins.get(os, "root")

    def default_os(self) -> str:
        """What a request gets when it names no OS: the first the catalog lists (the seed's and
        Packet's ubuntu_16_04, the first `os` of an EC2 catalog file)."""
        return self.oses[0] if self.oses else ""

    def plan_available(self, plan: str, metro: str) -> bool:
        found = self.plans.get(plan)
        return (
            found is not None
            and metro in self.metros
            and (not found.metros or metro in found.metros)
        )


def union(catalogs: Sequence[Catalog]) -> Catalog:
    """Several donors' catalogs as one, for the request form and the menus: every plan any of
    them offers, where any offers it, at the cheapest price asked (what a donor charges is in its
    own catalog); the operating systems and logins in the order the donors come."""
    if len(catalogs) == 1:
        return catalogs[0]
    plans: dict[str, Plan] = {}
    metros: dict[str, Metro] = {}
    for catalog in catalogs:
        metros.update({code: m for code, m in catalog.metros.items() if code not in metros})
        for slug, plan in catalog.plans.items():
            where = plan.metros or tuple(catalog.metros)
            known = plans.get(slug)
            if known is None:
                plans[slug] = replace(plan, metros=where)
                continue
            cheaper = plan if plan.hourly_cents < known.hourly_cents else known
            together = known.metros + tuple(m for m in where if m not in known.metros)
            plans[slug] = replace(cheaper, metros=together)
    oses = tuple(dict.fromkeys(os for catalog in catalogs for os in catalog.oses))
    logins: dict[str, str] = {}
    for catalog in catalogs:
        logins = {**catalog.logins, **logins}
    return Catalog(plans, metros, oses, logins)


@dataclass(frozen=True)
class DeviceSpec:
    hostname: str
    plan: str
    metro: str
    os: str
    ssh_keys: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    termination_time: datetime | None = None
    userdata: str = ""
    # The activity reporter to install (metal.reporter): None where servers do not report.
    reporting: Reporting | None = None


@dataclass(frozen=True)
class Device:
    id: str
    hostname: str
    state: DeviceState
    plan: str = ""
    metro: str = ""
    tags: tuple[str, ...] = ()
    ips: tuple[str, ...] = field(default_factory=tuple)
    created_at: datetime | None = None


class ProviderError(Exception):
    """A provider call did not do what was asked. `retryable` False means retrying is pointless
    (bad plan, bad token); the message is safe to show to people: no secrets in it."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class NoCapacity(ProviderError):
    """The provider has no room for the device now (EC2's InsufficientInstanceCapacity). Not a
    failed attempt: the engine waits and creates again until the provisioning deadline."""


@runtime_checkable
class Provider(Protocol):
    name: str
    # How many devices one create_many/delete_many call may carry: 1 where the API makes and
    # deletes one device per call (Packet), more where one call can do several (EC2).
    max_batch: int

    def catalog(self) -> Catalog:
        """Plans with hourly prices, metros and operating systems."""

    def create(self, spec: DeviceSpec) -> Device:
        """Start creating a device; returns as soon as the provider accepted it."""

    def create_many(self, specs: Sequence[DeviceSpec]) -> list[Device | Exception]:
        """Start creating devices of one lease (at most `max_batch`), answering for each spec in
        order: its device, or the error that kept it from being made."""

    def get(self, device_id: str) -> Device | None:
        """The device, or None once it is gone."""

    def delete(self, device_id: str) -> None:
        """Ask for deletion. Idempotent: a device already gone is success."""

    def delete_many(self, device_ids: Sequence[str]) -> list[Exception | None]:
        """`delete` for several devices (at most `max_batch`): None for each one deleted or
        already gone, in order, or the error that kept it."""

    def list(self, tag: str) -> list[Device]:
        """Every device carrying `tag`, across all pages."""

    def capacity(self, plan: str, metro: str, quantity: int) -> bool | None:
        """Whether `quantity` devices of `plan` fit in `metro` now; None when the provider
        cannot say. Advisory: shown to reviewers and checked again before creating."""

    def set_backstop(self, tag: str, metro: str, when: datetime, device_ids: Sequence[str]) -> None:
        """Make the provider delete the lease's devices by itself at `when`, even if labbot is
        down: those it has now (`device_ids`, every one carrying `tag`, in `metro`) and those
        created for it later with `termination_time=when`. One call per lease: the engine
        makes it before a lease's creates and before its end moves later; it is idempotent.
        Packet moves each device's termination time (new devices carry theirs from their
        create); EC2 keeps one schedule per lease that terminates whatever carries the tag.
        Raises ProviderError(retryable=False) where the provider cannot."""

    def verify(self) -> None:
        """One cheap call that proves the credentials work; raises ProviderError otherwise."""


@dataclass(frozen=True)
class Usage:
    """What a provider's own metrics say of one device over a window: the busy share of its
    CPUs (0 to 1) and the bytes in and out. None: the provider did not say (unknown, not 0)."""

    cpu_busy: float | None = None
    net_bytes: int | None = None


@runtime_checkable
class Metered(Protocol):
    """A provider that keeps metrics of its devices' use (EC2's CloudWatch, Packet's traffic);
    others do not implement it, and their servers' only signal is their own reports."""

    metrics_source: str  # ActivitySample.source of what it says: "cloudwatch", "packet"

    def usage(self, device_ids: Sequence[str], start: datetime, end: datetime) -> dict[str, Usage]:
        """Each device's use from `start` to `end`, for those the provider has figures of (a
        device it says nothing about is left out). Raises ProviderError when the metrics
        cannot be read at all (down, throttled, refused)."""


def capacity_in(provider: Provider, plan: str, counts: dict[str, int]) -> bool | None:
    """`capacity` for servers in several metros (a count in each): False when any metro is
    short, None when the provider cannot say for some and none is short, else True."""
    answers = [provider.capacity(plan, metro, count) for metro, count in counts.items()]
    if False in answers:
        return False
    return None if None in answers else True


def short_metros(provider: Provider, plan: str, counts: dict[str, int]) -> list[str]:
    """The metros among `counts` where the provider says the servers do not fit now (a
    provider that cannot say, or fails to, is not taken for one that is full)."""
    short = []
    for metro, count in counts.items():
        try:
            if provider.capacity(plan, metro, count) is False:
                short.append(metro)
        except Exception:
            continue
    return short


class OneAtATime:
    """`create_many` and `delete_many` for a provider whose API makes and deletes one device
    per call (Packet, the simulated backend): the engine sends one device per call, as many
    calls in flight as its concurrency allows."""

    max_batch = 1

    def create_many(self, specs: Sequence[DeviceSpec]) -> list[Device | Exception]:
        return [_attempt(self.create, spec) for spec in specs]  # type: ignore[attr-defined]

    def delete_many(self, device_ids: Sequence[str]) -> list[Exception | None]:
        return [_attempt(self.delete, device_id) for device_id in device_ids]  # type: ignore[attr-defined]


def _attempt(call: Callable[[T], R], argument: T) -> R | Exception:
    """The call's answer, or what it raised: one device's failure is that device's answer."""
    try:
        return call(argument)
    except Exception as error:
        return error
