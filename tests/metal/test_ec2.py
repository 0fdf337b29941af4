"""The EC2 backend through real boto3 over HTTP against moto's server, with faults injected by
the proxy in front of it: what EC2 holds afterwards is what a person would see in the console."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from fakes.ec2 import (
    SCHEDULER_ROLE,
    FaultProxy,
    MotoServer,
    backstop_role,
    fire_due_schedules,
    instances,
    schedules,
)
from metal.catalog import CatalogError
from metal.ec2 import (
    AUTOMATION_TARGET,
    TERMINATE_RUNBOOK,
    Ec2Provider,
    hostname_tags,
    launched_hostname,
    user_data,
)
from metal.ec2_catalog import load_offer, missing_images, parse_offer
from metal.provider import TAG, DeviceSpec, DeviceState, NoCapacity, ProviderError
from tests.ec2_server import OFFER, offer

BACKSTOP = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG owner@laptop"


def spec(hostname: str = "coredns-7-1", plan: str = "c7g.metal", **changes: object) -> DeviceSpec:
    base = {
        "hostname": hostname,
        "plan": plan,
        "metro": "us-east-1",
        "os": "ubuntu_24_04",
        "ssh_keys": (KEY,),
        "tags": (TAG, "lease-7"),
        "termination_time": BACKSTOP,
    }
    base.update(changes)
    return DeviceSpec(**base)


def tags_of(instance: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def test_create_launches_one_tagged_instance_with_the_key_in_one_call(
    make_ec2: Callable[..., Ec2Provider], moto_server: MotoServer, ec2_proxy: FaultProxy
) -> None:
    device = make_ec2().create(spec())

    [instance] = instances(moto_server.url)
    assert device.id == f"us-east-1/{instance['InstanceId']}"
    tags = tags_of(instance)
    assert tags.pop("labbot-launch") == instance["ClientToken"]
    assert tags == {
        TAG: "lease-7",
        "lease-7": "",
        "Name": "coredns-7-1",
        "labbot-hosts-0": "coredns-7-1",
    }
    assert instance["InstanceType"] == "c7g.metal"
    assert instance["ImageId"] == "ami-0f1e2d3c4b5a69788"  # the aarch64 image
    assert instance["ClientToken"]
    assert device.ips and device.state in (DeviceState.PROVISIONING, DeviceState.ACTIVE)
    assert ec2_proxy.calls("RunInstances") == 1
    assert schedules(moto_server.url) == {}  # the lease's schedule is not the create's job


def test_the_lease_backstop_is_one_schedule_terminating_what_carries_its_tag(
    make_ec2: Callable[..., Ec2Provider], moto_server: MotoServer
) -> None:
    make_ec2().set_backstop("lease-7", "us-east-1", BACKSTOP, ())

    [(name, schedule)] = schedules(moto_server.url).items()
    assert name == "labbot-lease-7"
    assert schedule["ScheduleExpression"] == "at(2026-11-05T10:00:00)"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["State"] == "ENABLED"
    assert schedule["Target"]["Arn"] == AUTOMATION_TARGET
    assert schedule["Target"]["RoleArn"] == SCHEDULER_ROLE
    automation = json.loads(schedule["Target"]["Input"])
    assert automation["DocumentName"] == TERMINATE_RUNBOOK == "AWS-TerminateEC2Instance"
    assert automation["TargetParameterName"] == "InstanceId"
    assert automation["Targets"] == [{"Key": f"tag:{TAG}", "Values": ["lease-7"]}]
    assert automation["Parameters"] == {"AutomationAssumeRole": [SCHEDULER_ROLE]}
    assert automation["MaxErrors"] == "100%"


def test_the_schedule_terminates_instances_launched_after_it_and_no_others(
    make_ec2: Callable[..., Ec2Provider], moto_server: MotoServer
) -> None:
    """What Scheduler and the automation do when the schedule fires (played by the fake):
    every instance of the lease, whenever it was launched, and none of another lease's."""
    provider = make_ec2()
    provider.set_backstop("lease-7", "us-east-1", BACKSTOP, ())
    mine = [provider.create(spec(f"coredns-7-{n}")) for n in (1, 2, 3)]
    other = provider.create(spec("other-8-1", tags=(TAG, "lease-8")))
    provider.delete(mine[0].id)  # one gone before the schedule fires: the others still go

    assert fire_due_schedules(moto_server.url, BACKSTOP.replace(minute=1)) != []
    assert [provider.get(d.id) for d in mine] == [None, None, None]
    assert provider.get(other.id) is not None
    assert schedules(moto_server.url) == {}  # deleted after it fired


def test_the_owners_key_goes_in_as_cloud_init_user_data() -> None:
    text = user_data(spec())
    assert text.startswith("#cloud-config\n")
    assert f'ssh_authorized_keys:\n  - "{KEY}"\n' in text
    both = user_data(spec(userdata="#!/bin/sh\necho ready"))
    assert "text/cloud-config" in both and "text/x-shellscript" in both and KEY in both


def test_a_lost_run_instances_answer_is_adopted_not_launched_again(
    make_ec2: Callable[..., Ec2Provider], ec2_proxy: FaultProxy, moto_server: MotoServer
) -> None:
    ec2_proxy.drop_answer("RunInstances")
    device = make_ec2().create(spec())

    [instance] = instances(moto_server.url)
    assert device.id.endswith(instance["InstanceId"])
    assert ec2_proxy.calls("RunInstances") == 1


def test_503_and_throttling_are_retried_by_botocore_and_launch_once(
    make_ec2: Callable[..., Ec2Provider], ec2_proxy: FaultProxy, moto_server: MotoServer
) -> None:
    ec2_proxy.fail("RunInstances", 503)
    ec2_proxy.fail("RunInstances", 400)  # RequestLimitExceeded
    make_ec2(max_attempts=3).create(spec())

    assert len(instances(moto_server.url)) == 1
    assert ec2_proxy.calls("RunInstances") == 3


def test_throttled_reads_are_survived(
    make_ec2: Callable[..., Ec2Provider], ec2_proxy: FaultProxy
) -> None:
    provider = make_ec2()
    created = provider.create(spec())
    ec2_proxy.fail("DescribeInstances", 400)
    ec2_proxy.fail("DescribeInstances", 503)
    assert [d.id for d in provider.list("lease-7")] == [created.id]


def test_insufficient_capacity_is_no_capacity_not_a_failure(
    make_ec2: Callable[..., Ec2Provider], ec2_proxy: FaultProxy, moto_server: MotoServer
) -> None:
    ec2_proxy.fail("RunInstances", 500, times=2)
    with pytest.raises(NoCapacity) as raised:
        make_ec2(max_attempts=2).create(spec())
    assert raised.value.retryable
    assert "InsufficientInstanceCapacity" in str(raised.value)
    assert instances(moto_server.url) == []


def test_a_backstop_scheduler_refuses_is_a_provider_error(
    make_ec2: Callable[..., Ec2Provider], ec2_proxy: FaultProxy, moto_server: MotoServer
) -> None:
    ec2_proxy.fail("POST /schedules", 503, times=10)
    with pytest.raises(ProviderError, match="schedule the backstop of lease-7"):
        make_ec2(max_attempts=2).set_backstop("lease-7", "us-east-1", BACKSTOP, ())
    assert schedules(moto_server.url) == {}


def test_moving_the_backstop_rewrites_the_schedule_later_never_earlier(
    make_ec2: Callable[..., Ec2Provider], moto_server: MotoServer, ec2_proxy: FaultProxy
) -> None:
    provider = make_ec2()
    provider.set_backstop("lease-7", "us-east-1", BACKSTOP, ())
    later = datetime(2026, 11, 9, 22, 30, tzinfo=UTC)
    provider.set_backstop("lease-7", "us-east-1", later, ["us-east-1/i-0123456789abcdef0"])
    provider.set_backstop("lease-7", "us-east-1", BACKSTOP, ())  # a pass that read it earlier
    [schedule] = schedules(moto_server.url).values()
    assert schedule["ScheduleExpression"] == "at(2026-11-09T22:30:00)"
    assert schedule["Target"]["Arn"] == AUTOMATION_TARGET
    assert schedule["State"] == "ENABLED" and schedule["ActionAfterCompletion"] == "DELETE"
    assert ec2_proxy.calls("PUT /schedules/labbot-lease-7") == 1


def test_a_schedule_another_replica_made_first_is_moved_not_refused(
    make_ec2: Callable[..., Ec2Provider], moto_server: MotoServer, ec2_proxy: FaultProxy
) -> None:
    """This replica looked (not there yet), the other made it, this one's create conflicts:
    it reads the schedule again and moves it later."""
    provider = make_ec2()
    provider.set_backstop("lease-7", "us-east-1", BACKSTOP, ())
    ec2_proxy.fail("GET /schedules", 404)
    later = datetime(2026, 11, 9, 22, 30, tzinfo=UTC)
    provider.set_backstop("lease-7", "us-east-1", later, ())
    [schedule] = schedules(moto_server.url).values()
    assert schedule["ScheduleExpression"] == "at(2026-11-09T22:30:00)"
    assert ec2_proxy.calls("POST /schedules/labbot-lease-7") == 2  # the second one conflicted


def test_the_backstop_role_is_checked_at_start_up(
    make_ec2: Callable[..., Ec2Provider], moto_server: MotoServer
) -> None:
    """A missing role, one that does not trust both services, or a setting that is no role ARN
    stops start-up with a sentence naming LABBOT_EC2_BACKSTOP_ROLE."""
    with pytest.raises(ProviderError, match=r"LABBOT_EC2_BACKSTOP_ROLE .* names no role") as no:
        make_ec2().verify()
    assert not no.value.retryable
    backstop_role(moto_server.url, trusts=("scheduler.amazonaws.com",))
    with pytest.raises(ProviderError, match=r"does not trust ssm\.amazonaws\.com"):
        make_ec2().verify()
    bad = Ec2Provider(offer(), "labbot-backstop", endpoint_url=moto_server.url, max_attempts=1)
    with pytest.raises(ProviderError, match=r"LABBOT_EC2_BACKSTOP_ROLE .* is not an IAM role ARN"):
        bad.verify()


def test_a_role_that_trusts_both_services_passes(
    make_ec2: Callable[..., Ec2Provider], moto_server: MotoServer
) -> None:
    backstop_role(moto_server.url)
    make_ec2().verify()


def test_get_and_delete(make_ec2: Callable[..., Ec2Provider], moto_server: MotoServer) -> None:
    provider = make_ec2()
    device = provider.create(spec())
    assert provider.get(device.id).hostname == "coredns-7-1"

    provider.delete(device.id)
    provider.delete(device.id)  # idempotent
    assert provider.get(device.id) is None
    assert provider.get("us-east-1/i-0123456789abcdef0") is None
    provider.delete("us-east-1/i-0123456789abcdef0")
    assert instances(moto_server.url) == []


def test_list_walks_every_page_and_every_region(
    make_ec2: Callable[..., Ec2Provider], ec2_proxy: FaultProxy
) -> None:
    provider = make_ec2(page_size=5)
    for n in range(1, 8):
        provider.create(spec(f"coredns-7-{n}"))
    provider.create(spec("coredns-7-8", "m5.metal", metro="us-west-2"))
    provider.create(spec("other-8-1", tags=(TAG, "lease-8")))
    before = ec2_proxy.calls("DescribeInstances")

    hostnames = sorted(d.hostname for d in provider.list("lease-7"))
    assert hostnames == [f"coredns-7-{n}" for n in range(1, 9)]
    assert ec2_proxy.calls("DescribeInstances") - before >= 3  # two pages east, one west
    assert len(provider.list(TAG)) == 9


def test_create_refuses_what_the_catalog_does_not_offer(
    make_ec2: Callable[..., Ec2Provider],
) -> None:
    provider = make_ec2()
    with pytest.raises(ProviderError, match="not offered") as raised:
        provider.create(spec(plan="c5.large"))
    assert not raised.value.retryable
    with pytest.raises(ProviderError, match="no image of debian_12"):
        provider.create(spec(os="debian_12"))


def test_a_refused_credential_is_said_in_one_sentence_naming_the_chain(
    make_ec2: Callable[..., Ec2Provider], ec2_proxy: FaultProxy, moto_server: MotoServer
) -> None:
    backstop_role(moto_server.url)
    ec2_proxy.fail("DescribeRegions", 401)
    with pytest.raises(ProviderError) as raised:
        make_ec2().verify()
    assert not raised.value.retryable
    assert "AWS_ACCESS_KEY_ID" in str(raised.value) and "AuthFailure" in str(raised.value)
    assert "testing" not in str(raised.value)  # the key itself is never said
    make_ec2().verify()


def test_no_credentials_at_all_are_said_too(
    ec2_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    provider = Ec2Provider(offer(), SCHEDULER_ROLE, endpoint_url=ec2_proxy.url, max_attempts=1)
    with pytest.raises(ProviderError, match="no AWS credentials"):
        provider.verify()


def test_the_pending_time_is_modelled_by_the_proxy(
    make_ec2: Callable[..., Ec2Provider], ec2_proxy: FaultProxy
) -> None:
    now = [BACKSTOP]
    ec2_proxy.clock = lambda: now[0]
    ec2_proxy.pending_seconds = 300
    provider = make_ec2()
    device = provider.create(spec())
    assert provider.get(device.id).state is DeviceState.PROVISIONING
    now[0] = now[0].replace(minute=5)
    assert provider.get(device.id).state is DeviceState.ACTIVE


def test_the_catalog_comes_from_the_operators_file(tmp_path: Path) -> None:
    path = tmp_path / "ec2.toml"
    path.write_text(
        'os = ["ubuntu_24_04"]\n'
        '[regions.us-east-1]\nname = "N. Virginia"\nsubnet = "subnet-0abc"\n'
        '[types."c7g.metal"]\nhourly = 2.32\narch = "aarch64"\n'
        '[types."c5.metal"]\nhourly = 4.08\n'
        '[[images]]\nos = "ubuntu_24_04"\nregion = "us-east-1"\narch = "aarch64"\nami = "ami-1"\n'
    )
    loaded = load_offer(path)
    assert loaded.catalog.plans["c7g.metal"].hourly_cents == 232
    assert loaded.catalog.plans["c7g.metal"].arch == "aarch64"
    assert loaded.catalog.plan_available("c5.metal", "us-east-1")
    assert loaded.subnets == {"us-east-1": "subnet-0abc"}
    assert missing_images(loaded) == ["ubuntu_24_04 on x86_64 in us-east-1 (for c5.metal)"]


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"types": {"c7g.metal": {"arch": "aarch64"}}}, "c7g.metal in x has no hourly price"),
        ({"types": {"c5.large": {"hourly": 0.085}}}, "c5.large in x is not a bare-metal type"),
        ({"regions": {}}, "x names no region"),
        ({"types": {"c5.metal": {"hourly": 4.08, "regions": ["eu-west-9"]}}}, "eu-west-9"),
        ({"types": {"c5.metal": {"hourly": 4.08, "arch": "arm"}}}, "arch must be"),
        ({"images": [{"os": "ubuntu_24_04"}]}, "lacks region, arch, ami"),
    ],
)
def test_a_bad_catalog_is_refused_with_a_sentence(change: dict, said: str) -> None:
    with pytest.raises(CatalogError, match=said):
        parse_offer({**OFFER, **change}, "x")


def test_boto3_alone_sees_the_same_instances_through_the_proxy(
    make_ec2: Callable[..., Ec2Provider], ec2_proxy: FaultProxy
) -> None:
    """The proxy forwards signed requests unchanged: a plain boto3 client works through it."""
    make_ec2().create(spec())
    client = boto3.client("ec2", region_name="us-east-1", endpoint_url=ec2_proxy.url)
    assert len(client.describe_instances()["Reservations"]) == 1


def test_a_device_in_a_region_the_catalog_dropped_is_refused_in_a_sentence(
    make_ec2: Callable[..., Ec2Provider],
) -> None:
    with pytest.raises(ProviderError, match="not in a region of the EC2 catalog") as raised:
        make_ec2().delete("eu-west-1/i-0123456789abcdef0")
    assert not raised.value.retryable


def test_a_list_that_keeps_failing_raises_a_provider_error(
    make_ec2: Callable[..., Ec2Provider], ec2_proxy: FaultProxy
) -> None:
    ec2_proxy.fail("DescribeInstances", 503, times=2)
    with pytest.raises(ProviderError, match="list instances in us-east-1 failed") as raised:
        make_ec2(max_attempts=2).list(TAG)
    assert raised.value.retryable


def test_the_login_user_comes_from_the_catalog_or_the_os_name() -> None:
    """The ready DM names the user cloud-init puts the keys on: ubuntu on Ubuntu, not root."""
    guessed = parse_offer({**OFFER, "os": ["ubuntu_24_04", "debian_12", "mystery"]}, "x").catalog
    assert [guessed.login_user(os) for os in ("ubuntu_24_04", "debian_12", "mystery")] == [
        "ubuntu",
        "admin",
        "root",
    ]
    named = parse_offer({**OFFER, "logins": {"ubuntu_24_04": "lab"}}, "x").catalog
    assert named.login_user("ubuntu_24_04") == "lab"


# --- several servers a call ---


def test_a_batch_is_one_launch_whose_tags_say_each_instances_server(
    make_ec2: Callable[..., Ec2Provider], ec2_proxy: FaultProxy, moto_server: MotoServer
) -> None:
    """One call for five servers and nothing after it: each instance's hostname is its place
    in the launch's hostname tags, which a later look-up reads as well."""
    names = [f"coredns-7-{n}" for n in range(1, 6)]
    provider = make_ec2()
    devices = provider.create_many([spec(name) for name in names])

    assert [d.hostname for d in devices] == names
    assert sorted(d.hostname for d in provider.list("lease-7")) == names
    assert [a for a in ec2_proxy.actions() if a != "DescribeInstances"] == ["RunInstances"]
    launched = instances(moto_server.url)
    by_id = {f"us-east-1/{i['InstanceId']}": i["AmiLaunchIndex"] for i in launched}
    assert by_id == {d.id: n for n, d in enumerate(devices)}
    tags = tags_of(launched[0])
    assert tags["labbot-hosts-0"] == ",".join(names)
    assert tags["Name"] == "coredns-7-1 to coredns-7-5 (5, see labbot-hosts-*)"


def test_hostnames_longer_than_one_tag_value_span_several_tags() -> None:
    names = [f"a-very-long-project-name-{n:03}" for n in range(25)]
    tags = hostname_tags(names)
    assert len(tags) == 3 and all(len(t["Value"]) <= 256 for t in tags)
    found = {t["Key"]: t["Value"] for t in tags}
    assert [launched_hostname(found, n) for n in range(25)] == names
    assert launched_hostname({"Name": "x"}, 0) == ""


def test_a_lost_batch_answer_is_adopted_whole_not_launched_again(
    make_ec2: Callable[..., Ec2Provider], ec2_proxy: FaultProxy, moto_server: MotoServer
) -> None:
    ec2_proxy.drop_answer("RunInstances")
    names = [f"coredns-7-{n}" for n in range(1, 5)]
    devices = make_ec2().create_many([spec(name) for name in names])

    assert [d.hostname for d in devices] == names
    assert ec2_proxy.calls("RunInstances") == 1
    assert len(instances(moto_server.url)) == 4


def test_no_capacity_for_a_batch_is_no_capacity_for_each_server(
    make_ec2: Callable[..., Ec2Provider], ec2_proxy: FaultProxy
) -> None:
    ec2_proxy.fail("RunInstances", 500, times=2)
    answers = make_ec2(max_attempts=2).create_many([spec("a-1"), spec("a-2")])
    assert all(isinstance(a, NoCapacity) for a in answers)


def test_one_terminate_call_for_many_even_when_some_are_long_gone(
    make_ec2: Callable[..., Ec2Provider], ec2_proxy: FaultProxy, moto_server: MotoServer
) -> None:
    provider = make_ec2()
    devices = provider.create_many([spec(f"coredns-7-{n}") for n in range(1, 5)])
    unknown = "us-east-1/i-0123456789abcdef0"  # purged long ago: EC2 no longer knows it

    answers = provider.delete_many([unknown, *(d.id for d in devices)])
    assert answers == [None] * 5
    assert instances(moto_server.url) == []
    assert ec2_proxy.calls("TerminateInstances") == 2  # once refused for the unknown id
