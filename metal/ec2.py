"""The Amazon EC2 backend: `.metal` instance types through boto3.

What the library gives is used as it is: credentials come from boto3's standard chain (never
read, logged or stored here), the endpoint from AWS_ENDPOINT_URL where one is set (tests, other
EC2-compatible clouds), time limits from botocore's `connect_timeout`/`read_timeout`, and
retries of throttling (RequestLimitExceeded, Throttling), 5xx and dropped connections from
botocore's `standard` or `adaptive` retry mode. This module adds only what EC2 leaves to us:

- **Never create twice.** Every RunInstances carries a ClientToken, which makes botocore's
  retries of one call idempotent on AWS. Emulators (moto among them) ignore the token, so
  before botocore retries a RunInstances whose answer was lost or failed on the server, a hook
  on botocore's `needs-retry` event looks for an instance carrying the lease's tag and the
  server's hostname, and adopts it instead of letting the retry create another.
- **A provider-side backstop.** EC2 has no termination time. Each instance gets an
  EventBridge Scheduler one-time schedule, `at(<lease end + grace + margin>)`, whose target is
  the universal `ec2:terminateInstances` with the instance's id: AWS terminates the instance by
  itself even if labbot is down for days. `set_termination_time` moves the schedule; a create
  that cannot schedule the backstop terminates the instance it made rather than leave it
  unguarded.
- **No capacity is not a failure.** InsufficientInstanceCapacity raises `NoCapacity`, which the
  engine waits out until the provisioning deadline.

Device ids are `<region>/<instance id>`, so a lab may lend servers in several regions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from metal.ec2_catalog import Ec2Offer
from metal.provider import (
    TAG,
    Catalog,
    Device,
    DeviceSpec,
    DeviceState,
    NoCapacity,
    ProviderError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

TERMINATE_TARGET = "arn:aws:scheduler:::aws-sdk:ec2:terminateInstances"
SCHEDULE_PREFIX = "labbot-"
PAGE_SIZE = 1000
_LIVE = ("pending", "running", "shutting-down", "stopping", "stopped")
_STATES = {
    "pending": DeviceState.PROVISIONING,
    "running": DeviceState.ACTIVE,
    "shutting-down": DeviceState.DEPROVISIONING,
    "terminated": DeviceState.DELETED,
    "stopping": DeviceState.POWERING_OFF,
    "stopped": DeviceState.INACTIVE,
}
_GONE = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})
_NO_CAPACITY = frozenset({"InsufficientInstanceCapacity", "InsufficientHostCapacity"})
_CREDENTIALS = frozenset(
    {"AuthFailure", "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch"}
)
_REFUSED = frozenset({"UnauthorizedOperation", "AccessDeniedException", "AccessDenied"})
_CREDENTIAL_HINT = (
    "AWS credentials (boto3's standard chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
    "AWS_PROFILE, or an instance role)"
)

# The create in progress on this thread, for the needs-retry hook (botocore calls it on the
# thread that made the call).
_CREATING: ContextVar[tuple[str, DeviceSpec] | None] = ContextVar("ec2_creating", default=None)


class _Adopted(Exception):
    """Raised from inside botocore's retry loop: the lost RunInstances did create the instance."""

    def __init__(self, instance: dict[str, Any]) -> None:
        super().__init__(instance.get("InstanceId"))
        self.instance = instance


class Ec2Provider:
    """`Provider` on Amazon EC2. Thread safe: boto3 clients are, once built, and all are built
    here."""

    name = "ec2"

    def __init__(
        self,
        offer: Ec2Offer,
        backstop_role: str,
        *,
        timeout: float = 30.0,
        retry_mode: str = "standard",
        max_attempts: int = 5,
        endpoint_url: str | None = None,
        session: boto3.session.Session | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._offer = offer
        self._role = backstop_role
        self._page_size = page_size
        config = Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},
            max_pool_connections=64,
        )
        session = session or boto3.session.Session()
        self._ec2 = {
            region: session.client("ec2", region, endpoint_url=endpoint_url, config=config)
            for region in offer.regions
        }
        self._scheduler = {
            region: session.client("scheduler", region, endpoint_url=endpoint_url, config=config)
            for region in offer.regions
        }
        for client in self._ec2.values():
            client.meta.events.register_first("needs-retry.ec2.RunInstances", self._before_retry)

    # --- Provider ---

    def catalog(self) -> Catalog:
        return self._offer.catalog

    def create(self, spec: DeviceSpec) -> Device:
        region, arch = self._where(spec)
        image = self._offer.image(spec.os, region, arch)
        if image is None:
            raise ProviderError(
                f"the EC2 catalog has no image of {spec.os} for {arch} in {region}; add one "
                "under [[images]] in LABBOT_EC2_CATALOG",
                retryable=False,
            )
        params = self._run_params(spec, region, image)
        bound = _CREATING.set((region, spec))
        try:
            answer = self._call(f"create {spec.hostname}", self._ec2[region].run_instances, params)
            instance = answer["Instances"][0]
        except _Adopted as adopted:
            instance = adopted.instance
        finally:
            _CREATING.reset(bound)
        device = _device(region, instance)
        if spec.termination_time is not None:
            self._guard(device, spec.termination_time)
        return device

    def get(self, device_id: str) -> Device | None:
        region, instance_id = self._split(device_id)
        try:
            answer = self._call(
                f"describe {instance_id}",
                self._ec2[region].describe_instances,
                {"InstanceIds": [instance_id]},
            )
        except _Gone:
            return None
        found = [i for r in answer["Reservations"] for i in r["Instances"]]
        device = _device(region, found[0]) if found else None
        return None if device is None or device.state is DeviceState.DELETED else device

    def delete(self, device_id: str) -> None:
        region, instance_id = self._split(device_id)
        with contextlib.suppress(_Gone):
            self._call(
                f"terminate {instance_id}",
                self._ec2[region].terminate_instances,
                {"InstanceIds": [instance_id]},
            )
        self._unschedule(region, instance_id)

    def list(self, tag: str) -> list[Device]:
        return [
            _device(region, instance)
            for region in self._offer.regions
            for instance in self._instances(region, [{"Name": "tag-key", "Values": [tag]}])
        ]

    def capacity(self, plan: str, metro: str, quantity: int) -> bool | None:
        """EC2 cannot say in advance; RunInstances answers InsufficientInstanceCapacity."""
        return None

    def set_termination_time(self, device_id: str, when: datetime) -> None:
        region, instance_id = self._split(device_id)
        self._schedule(region, instance_id, when, hostname="")

    def verify(self) -> None:
        """DescribeRegions in each configured region: signed like every other call, so a refused
        or missing credential fails here, at start-up, and nowhere later."""
        for region, client in self._ec2.items():
            self._call(
                f"describe region {region}", client.describe_regions, {"RegionNames": [region]}
            )

    # --- creating ---

    def _where(self, spec: DeviceSpec) -> tuple[str, str]:
        catalog = self._offer.catalog
        if not catalog.plan_available(spec.plan, spec.metro):
            raise ProviderError(
                f"{spec.plan} is not offered in {spec.metro} by the EC2 catalog", retryable=False
            )
        return spec.metro, catalog.plans[spec.plan].arch

    def _run_params(self, spec: DeviceSpec, region: str, image: str) -> dict[str, Any]:
        tags = [{"Key": t, "Value": ""} for t in dict.fromkeys((TAG, *spec.tags))]
        params: dict[str, Any] = {
            "ImageId": image,
            "InstanceType": spec.plan,
            "MinCount": 1,
            "MaxCount": 1,
            # One token per create call: botocore's retries of the call repeat it, so AWS makes
            # them one launch. A later call after a raise is guarded by the tag look-up instead.
            "ClientToken": uuid.uuid4().hex,
            "TagSpecifications": [
                {
                    "ResourceType": "instance",
                    "Tags": [*tags, {"Key": "Name", "Value": spec.hostname}],
                }
            ],
            # A shutdown from inside ends the lease's billing instead of parking a stopped server.
            "InstanceInitiatedShutdownBehavior": "terminate",
            "UserData": user_data(spec),
        }
        subnet = self._offer.subnets.get(region)
        if subnet:
            params["SubnetId"] = subnet
        return params

    def _before_retry(
        self, response: Any = None, caught_exception: Exception | None = None, **_: Any
    ) -> None:
        """botocore's needs-retry event for RunInstances, called after every attempt, before
        botocore's own retry handler. When the attempt may have launched an instance (no answer,
        or a 5xx), look for it by the lease's tag and the hostname; found, stop retrying and
        adopt it. Returning None leaves the decision to botocore."""
        creating = _CREATING.get()
        if creating is None or not _maybe_launched(response, caught_exception):
            return
        region, spec = creating
        found = self._find(region, spec)
        if found is not None:
            raise _Adopted(found)

    def _find(self, region: str, spec: DeviceSpec) -> dict[str, Any] | None:
        lease = next((t for t in spec.tags if t != TAG), TAG)
        filters = [
            {"Name": "tag-key", "Values": [lease]},
            {"Name": "tag:Name", "Values": [spec.hostname]},
        ]
        try:
            found = self._instances(region, filters, states=("pending", "running"))
        except ProviderError as error:
            raise ProviderError(
                f"EC2: a RunInstances answer for {spec.hostname} was lost and the look-up for "
                f"the instance failed too ({error}); the next pass looks again"
            ) from error
        return found[0] if found else None

    # --- the backstop ---

    def _guard(self, device: Device, when: datetime) -> None:
        """Schedule the instance's termination; an instance that cannot be guarded is not kept."""
        region, instance_id = self._split(device.id)
        try:
            self._schedule(region, instance_id, when, hostname=device.hostname)
        except ProviderError as error:
            try:
                self.delete(device.id)
            except ProviderError:
                log.warning("EC2: %s has no backstop and could not be terminated", device.id)
            raise ProviderError(
                f"EC2: the termination backstop of {device.hostname} could not be scheduled, so "
                f"its instance was terminated ({error})"
            ) from error

    def _schedule(self, region: str, instance_id: str, when: datetime, hostname: str) -> None:
        """Create the instance's one-time schedule, or move it if it exists."""
        scheduler = self._scheduler[region]
        params = {
            "Name": schedule_name(instance_id),
            "ScheduleExpression": at_expression(when),
            "ScheduleExpressionTimezone": "UTC",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": TERMINATE_TARGET,
                "RoleArn": self._role,
                "Input": json.dumps({"InstanceIds": [instance_id]}),
            },
            "Description": f"labbot backstop: terminate {hostname or instance_id}",
            "ActionAfterCompletion": "DELETE",
            "State": "ENABLED",
        }
        what = f"schedule the backstop of {instance_id}"
        try:
            self._call(what, scheduler.create_schedule, params)
        except ProviderError as error:
            if getattr(error, "code", "") != "ConflictException":
                raise
            # UpdateSchedule resets whatever it is not given: it gets everything again.
            self._call(what, scheduler.update_schedule, params)

    def _unschedule(self, region: str, instance_id: str) -> None:
        """Best effort: a schedule left behind fires once on a terminated instance, harmlessly,
        and then deletes itself."""
        try:
            self._call(
                f"delete the backstop of {instance_id}",
                self._scheduler[region].delete_schedule,
                {"Name": schedule_name(instance_id)},
            )
        except ProviderError as error:
            if getattr(error, "code", "") != "ResourceNotFoundException":
                log.warning("EC2: %s", error)

    # --- plumbing ---

    def _split(self, device_id: str) -> tuple[str, str]:
        """`<region>/<instance id>`, in a region this provider has clients for."""
        region, _, instance_id = device_id.rpartition("/")
        if region not in self._ec2:
            raise ProviderError(
                f"{device_id} is not in a region of the EC2 catalog "
                f"({', '.join(self._ec2)}); was the region removed from LABBOT_EC2_CATALOG?",
                retryable=False,
            )
        return region, instance_id

    def _instances(
        self, region: str, filters: list[dict[str, Any]], states: tuple[str, ...] = _LIVE
    ) -> list[dict[str, Any]]:
        """Every instance matching `filters`, across all pages (one failed page fails all)."""
        pages = (
            self._ec2[region]
            .get_paginator("describe_instances")
            .paginate(
                Filters=[*filters, {"Name": "instance-state-name", "Values": list(states)}],
                PaginationConfig={"PageSize": self._page_size},
            )
        )
        with _said(f"list instances in {region}"):
            return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    def _call(self, what: str, operation: Callable[..., T], params: dict[str, Any]) -> T:
        """One boto3 call (botocore retries inside it), with its failure said in one sentence."""
        with _said(what):
            return operation(**params)


@contextmanager
def _said(what: str) -> Iterator[None]:
    """boto3's exceptions as ProviderErrors whose message a person can read."""
    try:
        yield
    except ClientError as error:
        raise _client_failure(what, error) from error
    except NoCredentialsError as error:
        raise ProviderError(f"EC2: no {_CREDENTIAL_HINT} were found", retryable=False) from error
    except BotoCoreError as error:
        raise ProviderError(f"EC2: {what} failed: {error}") from error


class _Gone(ProviderError):
    """The instance does not exist (any more)."""


class _Failure(ProviderError):
    def __init__(self, message: str, code: str, *, retryable: bool) -> None:
        super().__init__(message, retryable=retryable)
        self.code = code


def _client_failure(what: str, error: ClientError) -> ProviderError:
    code = str(error.response.get("Error", {}).get("Code") or "Unknown")
    message = str(error.response.get("Error", {}).get("Message") or "")[:300]
    if code in _GONE:
        return _Gone(f"EC2: {what}: {code}", retryable=False)
    if code in _NO_CAPACITY:
        return NoCapacity(f"EC2 has no capacity for this now ({code}): {message}")
    if code in _CREDENTIALS:
        return _Failure(
            f"EC2 refused the {_CREDENTIAL_HINT} ({code}) to {what}", code, retryable=False
        )
    if code in _REFUSED:
        return _Failure(
            f"the AWS identity labbot runs as may not {what} ({code}); see the IAM policy in the "
            "README",
            code,
            retryable=False,
        )
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    retryable = status >= 500 or status == 0 or "Throttl" in code or code == "RequestLimitExceeded"
    return _Failure(f"EC2: {what} failed ({code}): {message}", code, retryable=retryable)


def _maybe_launched(response: Any, caught_exception: Exception | None) -> bool:
    """No answer at all, or a server error: the launch may have happened. A 4xx (throttling
    included) was refused before anything was launched."""
    if caught_exception is not None:
        return True
    if response is None:
        return False
    status = getattr(response[0], "status_code", 200)
    return status >= 500


def _device(region: str, instance: dict[str, Any]) -> Device:
    tags = {t["Key"]: t.get("Value", "") for t in instance.get("Tags") or ()}
    ips = [
        instance.get("PublicIpAddress"),
        instance.get("Ipv6Address"),
        instance.get("PrivateIpAddress"),
    ]
    launched = instance.get("LaunchTime")
    return Device(
        id=f"{region}/{instance['InstanceId']}",
        hostname=tags.get("Name", ""),
        state=_STATES.get(instance.get("State", {}).get("Name", ""), DeviceState.PROVISIONING),
        plan=str(instance.get("InstanceType", "")),
        metro=region,
        tags=tuple(k for k in tags if k != "Name"),
        ips=tuple(ip for ip in ips if ip),
        created_at=launched.astimezone(UTC) if isinstance(launched, datetime) else None,
    )


def schedule_name(instance_id: str) -> str:
    return f"{SCHEDULE_PREFIX}{instance_id}"


def at_expression(when: datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("termination times must be timezone-aware (UTC)")
    return f"at({when.astimezone(UTC):%Y-%m-%dT%H:%M:%S})"


def user_data(spec: DeviceSpec) -> str:
    """The owner's SSH keys through cloud-init (no key pair to import, name and clean up);
    any user data the spec carries rides along as a second part."""
    keys = "".join(f"  - {json.dumps(key)}\n" for key in spec.ssh_keys)
    config = "#cloud-config\n" + (f"ssh_authorized_keys:\n{keys}" if keys else "")
    if not spec.userdata:
        return config
    parts = MIMEMultipart()
    parts.attach(MIMEText(config, "cloud-config"))
    parts.attach(MIMEText(spec.userdata, "x-shellscript"))
    return parts.as_string()
