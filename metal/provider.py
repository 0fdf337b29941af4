"""The seam between labbot and a bare-metal provider.

Everything the lease engine needs from a provider is in `Provider`; the simulated backend, the
Packet backend and any other operator-supplied backend implement it. Calls may raise
`ProviderError`; the sweep treats every raise as "not done yet" and retries later, so a backend
never has to decide policy, only to report what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

TAG = "labbot"

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

    def plan_available(self, plan: str, metro: str) -> bool:
        found = self.plans.get(plan)
        return (
            found is not None
            and metro in self.metros
            and (not found.metros or metro in found.metros)
        )


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

    def catalog(self) -> Catalog:
        """Plans with hourly prices, metros and operating systems."""

    def create(self, spec: DeviceSpec) -> Device:
        """Start creating a device; returns as soon as the provider accepted it."""

    def get(self, device_id: str) -> Device | None:
        """The device, or None once it is gone."""

    def delete(self, device_id: str) -> None:
        """Ask for deletion. Idempotent: a device already gone is success."""

    def list(self, tag: str) -> list[Device]:
        """Every device carrying `tag`, across all pages."""

    def capacity(self, plan: str, metro: str, quantity: int) -> bool | None:
        """Whether `quantity` devices of `plan` fit in `metro` now; None when the provider
        cannot say. Advisory: shown to reviewers and checked again before creating."""

    def set_termination_time(self, device_id: str, when: datetime) -> None:
        """Move the provider-side deletion backstop of a device (on extension). Raises
        ProviderError(retryable=False) where the provider cannot move it."""

    def verify(self) -> None:
        """One cheap call that proves the credentials work; raises ProviderError otherwise."""
