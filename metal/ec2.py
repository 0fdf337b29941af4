"""The Amazon EC2 backend: `.metal` instance types through boto3.

What the library gives is used as it is: credentials come from boto3's standard chain (never
read, logged or stored here), the endpoint from AWS_ENDPOINT_URL where one is set (tests, other
EC2-compatible clouds), time limits from botocore's `connect_timeout`/`read_timeout`, and
retries of throttling (RequestLimitExceeded, Throttling), 5xx and dropped connections from
botocore's `standard` or `adaptive` retry mode. This module adds only what EC2 leaves to us:

- **Several servers a call.** A lease's servers are launched up to `max_batch` to a
  RunInstances and terminated as many to a TerminateInstances. A launch cannot name each of
  its instances, so it writes its hostnames in launch order as tags (`labbot-hosts-N`):
  instance N of the launch (its AmiLaunchIndex) is the Nth server, read from the launch alone.
- **Never create twice.** Every RunInstances carries a ClientToken, which makes botocore's
  retries of one call idempotent on AWS. Emulators (moto among them) ignore the token, so
  before botocore retries a RunInstances whose answer was lost or failed on the server, a hook
  on botocore's `needs-retry` event looks for the instances carrying the lease's tag and the
  launch's token (`labbot-launch`), and adopts them instead of letting the retry launch more.
- **A provider-side backstop.** EC2 has no termination time. Each lease gets one
  EventBridge Scheduler one-time schedule, `at(<lease end + grace + margin>)`, made before its
  first instance is launched, whose target starts Systems Manager's `AWS-TerminateEC2Instance`
  automation on every instance tagged `labbot=lease-<id>` at that moment: AWS terminates the
  lease's instances by itself even if labbot is down for days, including instances launched
  after the schedule was made, and none of them is ever without it. Since the target names a
  tag rather than instance ids, a launch costs no schedule call, an instance that vanished does
  not spoil the call for the others, and an extension moves one schedule, never earlier.
- **No capacity is not a failure.** InsufficientInstanceCapacity raises `NoCapacity`, which the
  engine waits out until the provisioning deadline.

Device ids are `<region>/<instance id>`, so a lab may lend servers in several regions.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from datetime import UTC, datetime
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any, TypeVar
from urllib.parse import unquote

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
    Usage,
)
from metal.reporter import user_data as reporter_script

T = TypeVar("T")

# CloudWatch's metrics of an instance that say whether it is used: (query id prefix, metric,
# statistic). GetMetricData takes at most METRIC_QUERIES queries a call.
_METRICS = (
    ("cpu", "CPUUtilization", "Average"),
    ("in", "NetworkIn", "Sum"),
    ("out", "NetworkOut", "Sum"),
)
METRIC_QUERIES = 500

# EventBridge Scheduler's universal target for SSM's StartAutomationExecution, and the
# AWS-owned runbook it starts: terminate every instance the automation's targets resolve to.
AUTOMATION_TARGET = "arn:aws:scheduler:::aws-sdk:ssm:startAutomationExecution"
TERMINATE_RUNBOOK = "AWS-TerminateEC2Instance"
SCHEDULE_PREFIX = "labbot-"
LAUNCH_TAG = "labbot-launch"  # the launch's ClientToken
HOSTS_TAG = "labbot-hosts-"  # the launch's hostnames: labbot-hosts-0, labbot-hosts-1, ...
TAG_VALUE = 256
# Servers per RunInstances (and instances per TerminateInstances): the hostnames of a launch
# fit in a few tags, and a launch EC2 has no room for costs one call, not many.
BATCH = 25
_INSTANCE_IDS = re.compile(r"i-[0-9a-f]+")
# The service principals the backstop role must trust: Scheduler runs the target as it, and the
# automation runs as it too (its AutomationAssumeRole).
BACKSTOP_TRUSTS = ("scheduler.amazonaws.com", "ssm.amazonaws.com")
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
_AT = re.compile(r"at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)")
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
_CREATING: ContextVar[tuple[str, DeviceSpec, str] | None] = ContextVar("ec2_creating", default=None)


class _Adopted(Exception):
    """Raised from inside botocore's retry loop: the lost RunInstances did launch these."""

    def __init__(self, instances: list[dict[str, Any]]) -> None:
        super().__init__(", ".join(str(i.get("InstanceId")) for i in instances))
        self.instances = instances


class Ec2Provider:
    """`Provider` on Amazon EC2, and `Metered` through CloudWatch. Thread safe: boto3 clients
    are, once built, and all are built here."""

    name = "ec2"
    metrics_source = "cloudwatch"

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
        max_batch: int = BATCH,
    ) -> None:
        self.max_batch = max_batch
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
        self._cloudwatch = {
            region: session.client("cloudwatch", region, endpoint_url=endpoint_url, config=config)
            for region in offer.regions
        }
        # IAM is global; its client is only for checking the backstop role at start-up.
        self._iam = session.client(
            "iam", offer.regions[0], endpoint_url=endpoint_url, config=config
        )
        for client in self._ec2.values():
            client.meta.events.register_first("needs-retry.ec2.RunInstances", self._before_retry)

    # --- Provider ---

    def catalog(self) -> Catalog:
        return self._offer.catalog

    def create(self, spec: DeviceSpec) -> Device:
        [answer] = self.create_many([spec])
        if isinstance(answer, Exception):
            raise answer
        return answer

    def create_many(self, specs: Sequence[DeviceSpec]) -> list[Device | Exception]:
        """One RunInstances for each group of specs that differ only in hostname (the engine
        sends one group: servers of one lease)."""
        answers: dict[int, Device | Exception] = {}
        for group in _alike(specs):
            try:
                launched = self._launch([spec for _, spec in group])
            except ProviderError as error:
                launched = [error] * len(group)
            answers.update((n, answer) for (n, _), answer in zip(group, launched, strict=True))
        return [answers[n] for n in range(len(specs))]

    def _launch(self, specs: list[DeviceSpec]) -> list[Device | Exception]:
        """RunInstances with MaxCount = len(specs) and MinCount 1: EC2 launches what it has room
        for, and the rest are told NoCapacity. Instance n (its AmiLaunchIndex) is specs[n]."""
        first = specs[0]
        region, arch = self._where(first)
        image = self._offer.image(first.os, region, arch)
        if image is None:
            raise ProviderError(
                f"the EC2 catalog has no image of {first.os} for {arch} in {region}; add one "
                "under [[images]] in LABBOT_EC2_CATALOG",
                retryable=False,
            )
        token = uuid.uuid4().hex
        params = self._run_params(specs, region, image, token)
        bound = _CREATING.set((region, first, token))
        what = f"create {first.hostname}" + (f" and {len(specs) - 1} more" if specs[1:] else "")
        try:
            launched = self._call(what, self._ec2[region].run_instances, params)["Instances"]
        except _Adopted as adopted:
            launched = adopted.instances
        finally:
            _CREATING.reset(bound)
        devices = {d.hostname: d for d in (_device(region, i) for i in launched)}
        short = NoCapacity(
            f"EC2 had room for {len(devices)} of the {len(specs)} instances asked for at once"
        )
        return [devices.get(spec.hostname, short) for spec in specs]

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
        [error] = self.delete_many([device_id])
        if error is not None:
            raise error

    def delete_many(self, device_ids: Sequence[str]) -> list[Exception | None]:
        """One TerminateInstances per region for all of them; terminating is idempotent."""
        answers: dict[str, Exception | None] = {}
        by_region: dict[str, list[str]] = {}
        for device_id in device_ids:
            try:
                region, instance_id = self._split(device_id)
            except ProviderError as error:
                answers[device_id] = error
                continue
            by_region.setdefault(region, []).append(instance_id)
        for region, instance_ids in by_region.items():
            try:
                self._terminate(region, instance_ids)
                failed: Exception | None = None
            except ProviderError as error:
                failed = error
            answers.update((f"{region}/{i}", failed) for i in instance_ids)
        return [answers[device_id] for device_id in device_ids]

    def _terminate(self, region: str, instance_ids: list[str]) -> None:
        """A call naming an instance EC2 no longer knows fails for all of them: those it names
        are gone already (success), and the call is made again for the rest."""
        left = list(instance_ids)
        while left:
            try:
                self._call(
                    f"terminate {left[0]}" + (f" and {len(left) - 1} more" if left[1:] else ""),
                    self._ec2[region].terminate_instances,
                    {"InstanceIds": left},
                )
                return
            except _Gone as gone:
                unknown = set(_INSTANCE_IDS.findall(gone.text)) & set(left)
                left = [i for i in left if i not in unknown] if unknown else left[1:]

    def list(self, tag: str) -> list[Device]:
        return [
            _device(region, instance)
            for region in self._offer.regions
            for instance in self._instances(region, [{"Name": "tag-key", "Values": [tag]}])
        ]

    def capacity(self, plan: str, metro: str, quantity: int) -> bool | None:
        """EC2 cannot say in advance; RunInstances answers InsufficientInstanceCapacity."""
        return None

    def set_backstop(self, tag: str, metro: str, when: datetime, device_ids: Sequence[str]) -> None:
        """The lease's one schedule, made or moved later (never earlier: a pass that read the
        lease before an extension cannot undo it). The instances need nothing: the schedule
        finds them by tag when it fires."""
        if metro not in self._scheduler:
            raise ProviderError(f"{metro} is not a region of the EC2 catalog", retryable=False)
        scheduler = self._scheduler[metro]
        name = schedule_name(tag)
        what = f"schedule the backstop of {tag} in {metro}"
        try:
            current = self._call(what, scheduler.get_schedule, {"Name": name})
        except _Failure as error:
            if error.code != "ResourceNotFoundException":
                raise
            try:
                self._call(what, scheduler.create_schedule, self._schedule_params(tag, when))
                return
            except _Failure as conflict:  # another replica made it since: move it, if need be
                if conflict.code != "ConflictException":
                    raise
            current = self._call(what, scheduler.get_schedule, {"Name": name})
        if scheduled_at(current.get("ScheduleExpression", "")) >= when:
            return
        # UpdateSchedule resets whatever it is not given: it gets everything again.
        self._call(what, scheduler.update_schedule, self._schedule_params(tag, when))

    def verify(self) -> None:
        """DescribeRegions in each configured region: signed like every other call, so a refused
        or missing credential fails here, at start-up, and nowhere later. Then the backstop
        role, which would otherwise fail only when the first lease's schedule is made."""
        for region, client in self._ec2.items():
            self._call(
                f"describe region {region}", client.describe_regions, {"RegionNames": [region]}
            )
        self._verify_role()

    def usage(self, device_ids: Sequence[str], start: datetime, end: datetime) -> dict[str, Usage]:
        """CloudWatch's CPUUtilization (average), NetworkIn and NetworkOut (sums) of each
        instance over the window, as one period: GetMetricData, three queries an instance and
        up to METRIC_QUERIES a call, in each region. EC2 publishes them every 5 minutes
        (basic monitoring), some minutes late. An instance with no datapoints is left out."""
        by_region: dict[str, list[str]] = {}
        for device_id in device_ids:
            region, instance_id = self._split(device_id)
            by_region.setdefault(region, []).append(instance_id)
        found: dict[str, Usage] = {}
        period = max(60, int((end - start).total_seconds()) // 60 * 60)
        for region, instance_ids in by_region.items():
            per_call = METRIC_QUERIES // len(_METRICS)
            for first in range(0, len(instance_ids), per_call):
                chunk = instance_ids[first : first + per_call]
                values = self._metric_values(region, chunk, start, end, period)
                for n, instance_id in enumerate(chunk):
                    usage = _usage(*(values.get(f"{key}{n}") for key, _, _ in _METRICS))
                    if usage is not None:
                        found[f"{region}/{instance_id}"] = usage
        return found

    def _metric_values(
        self, region: str, instance_ids: list[str], start: datetime, end: datetime, period: int
    ) -> dict[str, list[float]]:
        queries = [
            {
                "Id": f"{key}{n}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/EC2",
                        "MetricName": metric,
                        "Dimensions": [{"Name": "InstanceId", "Value": instance_id}],
                    },
                    "Period": period,
                    "Stat": stat,
                },
                "ReturnData": True,
            }
            for n, instance_id in enumerate(instance_ids)
            for key, metric, stat in _METRICS
        ]
        pages = (
            self._cloudwatch[region]
            .get_paginator("get_metric_data")
            .paginate(MetricDataQueries=queries, StartTime=start, EndTime=end)
        )
        values: dict[str, list[float]] = {}
        with _said(f"read CloudWatch metrics in {region}"):
            for page in pages:
                for result in page.get("MetricDataResults") or ():
                    values.setdefault(result["Id"], []).extend(result.get("Values") or ())
        return values

    # --- creating ---

    def _where(self, spec: DeviceSpec) -> tuple[str, str]:
        catalog = self._offer.catalog
        if not catalog.plan_available(spec.plan, spec.metro):
            raise ProviderError(
                f"{spec.plan} is not offered in {spec.metro} by the EC2 catalog", retryable=False
            )
        return spec.metro, catalog.plans[spec.plan].arch

    def _run_params(
        self, specs: list[DeviceSpec], region: str, image: str, token: str
    ) -> dict[str, Any]:
        spec = specs[0]
        # `labbot=lease-<id>` is what the lease's backstop schedule targets; every tag is also
        # a key of its own, as the engine lists devices by tag. The launch's token and its
        # hostnames in launch order are tags too, so that an instance whose answer was lost
        # is found, and knows its hostname, from the launch alone.
        tags = [
            {"Key": TAG, "Value": _lease_of(spec)},
            *({"Key": t, "Value": ""} for t in dict.fromkeys(spec.tags) if t != TAG),
            {"Key": LAUNCH_TAG, "Value": token},
            *hostname_tags([s.hostname for s in specs]),
            {"Key": "Name", "Value": console_name([s.hostname for s in specs])},
        ]
        params: dict[str, Any] = {
            "ImageId": image,
            "InstanceType": spec.plan,
            "MinCount": 1,
            "MaxCount": len(specs),
            # One token per launch: botocore's retries of the call repeat it, so AWS makes
            # them one launch. A later call after a raise is guarded by the tag look-up instead.
            "ClientToken": token,
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}],
            # A shutdown from inside ends the lease's billing instead of parking a stopped server.
            "InstanceInitiatedShutdownBehavior": "terminate",
            "UserData": user_data(spec, [s.reporting.token for s in specs if s.reporting]),
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
        region, spec, token = creating
        found = self._find(region, spec, token)
        if found:
            raise _Adopted(found)

    def _find(self, region: str, spec: DeviceSpec, token: str) -> list[dict[str, Any]]:
        filters = [
            {"Name": "tag-key", "Values": [_lease_of(spec)]},
            {"Name": f"tag:{LAUNCH_TAG}", "Values": [token]},
        ]
        try:
            return self._instances(region, filters, states=("pending", "running"))
        except ProviderError as error:
            raise ProviderError(
                f"EC2: a RunInstances answer for {spec.hostname} was lost and the look-up for "
                f"the instance failed too ({error}); the next pass looks again"
            ) from error

    # --- the backstop ---

    def _schedule_params(self, tag: str, when: datetime) -> dict[str, Any]:
        automation = {
            "DocumentName": TERMINATE_RUNBOOK,
            "TargetParameterName": "InstanceId",
            "Targets": [{"Key": f"tag:{TAG}", "Values": [tag]}],
            "Parameters": {"AutomationAssumeRole": [self._role]},
            "MaxConcurrency": "50",
            "MaxErrors": "100%",  # one instance that cannot be terminated stops none of the others
        }
        return {
            "Name": schedule_name(tag),
            "ScheduleExpression": at_expression(when),
            "ScheduleExpressionTimezone": "UTC",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": AUTOMATION_TARGET,
                "RoleArn": self._role,
                "Input": json.dumps(automation),
            },
            "Description": f"labbot backstop: terminate every instance tagged {TAG}={tag}",
            "ActionAfterCompletion": "DELETE",
            "State": "ENABLED",
        }

    def _verify_role(self) -> None:
        """LABBOT_EC2_BACKSTOP_ROLE must name a role that exists and that both Scheduler and
        Systems Manager may assume; anything else stops start-up with one sentence."""
        setting = f"LABBOT_EC2_BACKSTOP_ROLE ({self._role})"
        _, found, name = self._role.partition(":role/")
        if not self._role.startswith("arn:") or not found or not name:
            raise ProviderError(
                f"{setting} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
                retryable=False,
            )
        try:
            role = self._call(
                "read the backstop role (iam:GetRole)",
                self._iam.get_role,
                {"RoleName": name.rpartition("/")[2]},
            )["Role"]
        except _Failure as error:
            if error.code != "NoSuchEntity":
                raise ProviderError(
                    f"{setting} cannot be checked: {error}", retryable=False
                ) from error
            raise ProviderError(
                f"{setting} names no role in this account", retryable=False
            ) from error
        if role.get("Arn") != self._role:
            raise ProviderError(
                f"{setting} does not match the role of that name, {role.get('Arn')}",
                retryable=False,
            )
        missing = [p for p in BACKSTOP_TRUSTS if p not in trusted_services(role)]
        if missing:
            raise ProviderError(
                f"{setting} does not trust {' and '.join(missing)}, which run the backstop as "
                "it; see the IAM section of docs/providers.md",
                retryable=False,
            )

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
    """The instance does not exist (any more); `text` is EC2's message, which names it."""

    text = ""


class _Failure(ProviderError):
    def __init__(self, message: str, code: str, *, retryable: bool) -> None:
        super().__init__(message, retryable=retryable)
        self.code = code


def _client_failure(what: str, error: ClientError) -> ProviderError:
    code = str(error.response.get("Error", {}).get("Code") or "Unknown")
    message = str(error.response.get("Error", {}).get("Message") or "")[:300]
    if code in _GONE:
        gone = _Gone(f"EC2: {what}: {code}", retryable=False)
        gone.text = str(error.response.get("Error", {}).get("Message") or "")
        return gone
    if code in _NO_CAPACITY:
        return NoCapacity(f"EC2 has no capacity for this now ({code}): {message}")
    if code in _CREDENTIALS:
        return _Failure(
            f"EC2 refused the {_CREDENTIAL_HINT} ({code}) to {what}", code, retryable=False
        )
    if code in _REFUSED:
        return _Failure(
            f"the AWS identity labbot runs as may not {what} ({code}); see the IAM policy in "
            "docs/providers.md",
            code,
            retryable=False,
        )
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    retryable = status >= 500 or status == 0 or "Throttl" in code or code == "RequestLimitExceeded"
    return _Failure(f"EC2: {what} failed ({code}): {message}", code, retryable=retryable)


def _usage(
    cpu: list[float] | None, inbound: list[float] | None, outbound: list[float] | None
) -> Usage | None:
    """One instance's Usage from its datapoints (CPU in percent; bytes), None with none at all.
    The network is known when both directions are (half a figure would look quieter)."""
    cpu_busy = min(1.0, max(0.0, sum(cpu) / len(cpu) / 100)) if cpu else None
    net_bytes = int(sum(inbound) + sum(outbound)) if inbound and outbound else None
    if cpu_busy is None and net_bytes is None:
        return None
    return Usage(cpu_busy=cpu_busy, net_bytes=net_bytes)


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
    hostname = launched_hostname(tags, int(instance.get("AmiLaunchIndex") or 0))
    ips = [
        instance.get("PublicIpAddress"),
        instance.get("Ipv6Address"),
        instance.get("PrivateIpAddress"),
    ]
    launched = instance.get("LaunchTime")
    return Device(
        id=f"{region}/{instance['InstanceId']}",
        hostname=hostname or tags.get("Name", ""),
        state=_STATES.get(instance.get("State", {}).get("Name", ""), DeviceState.PROVISIONING),
        plan=str(instance.get("InstanceType", "")),
        metro=region,
        tags=tuple(k for k in tags if k != "Name" and not k.startswith(HOSTS_TAG)),
        ips=tuple(ip for ip in ips if ip),
        created_at=launched.astimezone(UTC) if isinstance(launched, datetime) else None,
    )


def hostname_tags(hostnames: list[str]) -> list[dict[str, str]]:
    """The hostnames of one launch, in launch order, comma-joined across as many tags as their
    length needs (a tag value holds 256 characters; hostnames hold no comma)."""
    joined = ",".join(hostnames)
    chunks = [joined[n : n + TAG_VALUE] for n in range(0, len(joined), TAG_VALUE)]
    return [{"Key": f"{HOSTS_TAG}{n}", "Value": chunk} for n, chunk in enumerate(chunks)]


def console_name(hostnames: list[str]) -> str:
    """The Name people see in the console: a launch names all its instances alike, so one of
    several reads as the launch's range (naming each after would cost a call per server)."""
    if len(hostnames) == 1:
        return hostnames[0]
    return f"{hostnames[0]} to {hostnames[-1]} ({len(hostnames)}, see {HOSTS_TAG}*)"


def launched_hostname(tags: dict[str, str], launch_index: int) -> str:
    """The hostname an instance was launched for: its place in its launch's hostname tags."""
    chunks = sorted(
        (int(key.removeprefix(HOSTS_TAG)), value)
        for key, value in tags.items()
        if key.startswith(HOSTS_TAG) and key.removeprefix(HOSTS_TAG).isdigit()
    )
    hostnames = "".join(value for _, value in chunks).split(",")
    return hostnames[launch_index] if chunks and launch_index < len(hostnames) else ""


def _alike(specs: Sequence[DeviceSpec]) -> list[list[tuple[int, DeviceSpec]]]:
    """The specs (with their places) grouped by everything but the hostname and the activity
    token: one launch each (its user data carries the tokens in launch order)."""
    groups: dict[DeviceSpec, list[tuple[int, DeviceSpec]]] = {}
    for n, spec in enumerate(specs):
        reporting = spec.reporting and replace(spec.reporting, token="")
        groups.setdefault(replace(spec, hostname="", reporting=reporting), []).append((n, spec))
    return list(groups.values())


def _lease_of(spec: DeviceSpec) -> str:
    """The spec's lease tag (`lease-<id>`), the one besides `labbot`."""
    return next((t for t in spec.tags if t != TAG), TAG)


def schedule_name(tag: str) -> str:
    return f"{SCHEDULE_PREFIX}{tag}"


def at_expression(when: datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("termination times must be timezone-aware (UTC)")
    return f"at({when.astimezone(UTC):%Y-%m-%dT%H:%M:%S})"


def scheduled_at(expression: str) -> datetime:
    """When an `at(...)` schedule fires (UTC); the distant past for anything else, so that a
    schedule of another shape is replaced rather than trusted."""
    found = _AT.fullmatch(expression)
    if found is None:
        return datetime.min.replace(tzinfo=UTC)
    return datetime.fromisoformat(found[1]).replace(tzinfo=UTC)


def trusted_services(role: dict[str, Any]) -> set[str]:
    """The service principals a role's trust policy lets assume it (boto3 hands the policy
    over decoded; some endpoints leave it URL-encoded JSON)."""
    policy = role.get("AssumeRolePolicyDocument") or {}
    if isinstance(policy, str):
        policy = json.loads(unquote(policy))
    statements = policy.get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    services: set[str] = set()
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        service = (statement.get("Principal") or {}).get("Service") or []
        services.update([service] if isinstance(service, str) else service)
    return services


def user_data(spec: DeviceSpec, tokens: Sequence[str] = ()) -> str:
    """The owner's SSH keys through cloud-init (no key pair to import, name and clean up);
    any user data the spec carries rides along as a second part, and the activity reporter
    (metal.reporter) as a third, with the launch's `tokens` in launch order (each instance
    takes its own by its launch index)."""
    keys = "".join(f"  - {json.dumps(key)}\n" for key in spec.ssh_keys)
    config = "#cloud-config\n" + (f"ssh_authorized_keys:\n{keys}" if keys else "")
    scripts = [spec.userdata] if spec.userdata else []
    if spec.reporting is not None:
        scripts.append(reporter_script(spec.reporting.url, tokens or [spec.reporting.token]))
    if not scripts:
        return config
    parts = MIMEMultipart()
    parts.attach(MIMEText(config, "cloud-config"))
    for script in scripts:
        parts.attach(MIMEText(script, "x-shellscript"))
    return parts.as_string()
