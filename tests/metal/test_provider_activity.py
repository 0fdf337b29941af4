"""What the providers' own metrics say of a lease's servers (issue 23): CloudWatch through moto's
server (the test puts the metric data, as EC2 would), Packet's per-device traffic on the fake
Packet API, both written as samples by the claimed poll; a metrics API that is down or throttled
gives no sample ("unknown"), never an idle one. And the reporter reaches every provider's user
data, with a token of each server's own."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from email import message_from_string
from urllib.parse import unquote

import boto3
import pytest
from sqlmodel import col, select

from commands.activity import token_hash
from commands.lab import Lab
from commands.provider_activity import POLL_EVERY, poll_provider_activity, window
from fakes.ec2 import CREDENTIALS, FaultProxy, MotoServer
from fakes.notifier import RecordingNotifier
from fakes.packet import FakePacket
from metal.ec2 import Ec2Provider
from metal.packet import PacketProvider
from storage.db import Database
from storage.models import ActivitySample, ActivityToken
from tests.conftest import ROLES
from tests.metal.conftest import SteppedClock
from tests.metal.lifecycle import POLICY, approved_lease, run_until_active, servers_of

REPORTING = replace(POLICY, activity_url="https://labbot.example.org/activity")
EC2_SHAPE = {"plan": "c7g.metal", "metro": "us-east-1", "os": "ubuntu_24_04"}
GETMETRICDATA = "GetMetricData"
MB = 1_000_000


@pytest.fixture
def ec2_lab(db: Database, make_ec2: Callable[..., Ec2Provider], ec2_proxy: FaultProxy) -> Lab:
    ec2_proxy.pending_seconds = 0
    provider = make_ec2(max_attempts=2)
    return Lab(db, provider, RecordingNotifier(), REPORTING, ROLES, provider.catalog())


@pytest.fixture
def packet_lab(db: Database, packet_provider: PacketProvider) -> Lab:
    return Lab(
        db, packet_provider, RecordingNotifier(), REPORTING, ROLES, packet_provider.catalog()
    )


def samples(db: Database) -> list[ActivitySample]:
    with db.read() as session:
        return list(session.exec(select(ActivitySample).order_by(col(ActivitySample.id))).all())


def put_metrics(moto: MotoServer, instance_id: str, when, cpu: float, inbound: int, out: int):
    cloudwatch = boto3.client("cloudwatch", "us-east-1", endpoint_url=moto.url, **_keys())
    dimensions = [{"Name": "InstanceId", "Value": instance_id}]
    cloudwatch.put_metric_data(
        Namespace="AWS/EC2",
        MetricData=[
            {"MetricName": name, "Dimensions": dimensions, "Timestamp": when, "Value": value}
            for name, value in (
                ("CPUUtilization", cpu),
                ("NetworkIn", inbound),
                ("NetworkOut", out),
            )
        ],
    )


def _keys() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


def test_cloudwatch_figures_become_samples_and_a_server_without_any_stays_unknown(
    ec2_lab: Lab, moto_server: MotoServer, clock: SteppedClock
) -> None:
    lease_id = approved_lease(ec2_lab, clock, count=2, **EC2_SHAPE)
    run_until_active(ec2_lab, clock, lease_id)
    clock.advance(3600)
    start, end = window(clock.now)
    busy, _quiet = servers_of(ec2_lab.db, lease_id)  # the quiet one: no figures, no sample
    instance = busy.provider_id.split("/")[1]
    put_metrics(moto_server, instance, start + timedelta(minutes=5), 40.0, 3 * MB, MB)
    put_metrics(moto_server, instance, start + timedelta(minutes=10), 60.0, 2 * MB, MB)

    assert poll_provider_activity(ec2_lab, clock.now) == 1
    [sample] = samples(ec2_lab.db)
    assert (sample.server_id, sample.lease_id, sample.source) == (busy.id, lease_id, "cloudwatch")
    assert sample.cpu_busy == pytest.approx(0.5)
    assert sample.net_bytes == 7 * MB
    assert (sample.at, sample.interval_s) == (end, POLL_EVERY.total_seconds())
    assert (sample.load_1m, sample.sessions) == (None, None)  # CloudWatch has neither
    # The period is claimed: a second call (another replica) within it asks nothing.
    assert poll_provider_activity(ec2_lab, clock.now) == 0


def test_cloudwatch_throttled_or_down_gives_no_sample_and_says_so(
    ec2_lab: Lab,
    moto_server: MotoServer,
    ec2_proxy: FaultProxy,
    clock: SteppedClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lease_id = approved_lease(ec2_lab, clock, count=1, **EC2_SHAPE)
    run_until_active(ec2_lab, clock, lease_id)
    clock.advance(3600)
    start, _ = window(clock.now)
    [server] = servers_of(ec2_lab.db, lease_id)
    put_metrics(moto_server, server.provider_id.split("/")[1], start, 1.0, 10, 10)
    ec2_proxy.fail(GETMETRICDATA, 400, times=10)  # RequestLimitExceeded, every retry too
    with caplog.at_level(logging.WARNING, "commands.provider_activity"):
        assert poll_provider_activity(ec2_lab, clock.now) == 0
    assert samples(ec2_lab.db) == []
    assert "unknown, not idle" in caplog.text
    ec2_proxy.clear()
    ec2_proxy.fail(GETMETRICDATA, 503, times=10)
    clock.advance(POLL_EVERY.total_seconds())
    assert poll_provider_activity(ec2_lab, clock.now) == 0
    assert samples(ec2_lab.db) == []


def test_one_ec2_launch_carries_its_servers_tokens_in_launch_order(
    ec2_lab: Lab, moto_server: MotoServer, clock: SteppedClock
) -> None:
    ec2_lab.policy = replace(REPORTING, provider_concurrency=1)  # the three in one launch
    lease_id = approved_lease(ec2_lab, clock, count=3, **EC2_SHAPE)
    ec2 = boto3.client("ec2", "us-east-1", endpoint_url=moto_server.url, **_keys())
    servers = {s.provider_id.split("/")[1]: s for s in servers_of(ec2_lab.db, lease_id)}
    with ec2_lab.db.read() as session:
        hashes = {t.server_id: t.token_hash for t in session.exec(select(ActivityToken)).all()}
    assert set(hashes) == {s.id for s in servers.values()} and len(set(hashes.values())) == 3
    for instance_id in servers:
        answer = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        text = base64.b64decode(answer["UserData"]["Value"]).decode()
        parts = [
            p.get_payload(decode=True).decode()
            for p in message_from_string(text).walk()
            if not p.is_multipart()
        ]
        [installer] = [p for p in parts if "labbot-activity.timer" in p]
        assert "https://labbot.example.org/activity" in installer
        assert "ami-launch-index" in installer  # three servers, one user data: each its own
        tokens = installer.split("\nset -- ", 1)[1].split("\n", 1)[0].split()
        assert len(set(tokens)) == 3
        assert {token_hash(t) for t in tokens} == set(hashes.values())  # each server's own
        assert all(h not in installer for h in hashes.values())  # tokens, never their hashes


def test_packet_traffic_becomes_samples_and_a_throttled_device_stays_unknown(
    packet_lab: Lab, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    lease_id = approved_lease(packet_lab, clock, count=2)
    run_until_active(packet_lab, clock, lease_id)
    clock.advance(3600)
    first, second = servers_of(packet_lab.db, lease_id)
    fake_packet.set_traffic(first.provider_id, inbound=5 * MB, outbound=2 * MB)
    fake_packet.fail_next("GET", f"devices/{second.provider_id}/traffic", 429, times=1)

    assert poll_provider_activity(packet_lab, clock.now) == 1
    [sample] = samples(packet_lab.db)
    assert (sample.server_id, sample.source, sample.net_bytes) == (first.id, "packet", 7 * MB)
    assert (sample.cpu_busy, sample.load_1m, sample.sessions) == (None, None, None)
    start, end = window(clock.now)
    asked = [unquote(r.path) for r in fake_packet.requests if "/traffic" in r.path]
    assert f"timeframe[started_at]={start:%Y-%m-%dT%H:%M:%SZ}" in asked[0]
    assert f"timeframe[ended_at]={end:%Y-%m-%dT%H:%M:%SZ}" in asked[0]


def test_packet_traffic_down_for_every_device_gives_no_sample(
    packet_lab: Lab, fake_packet: FakePacket, clock: SteppedClock, caplog: pytest.LogCaptureFixture
) -> None:
    lease_id = approved_lease(packet_lab, clock, count=2)
    run_until_active(packet_lab, clock, lease_id)
    clock.advance(3600)
    for server in servers_of(packet_lab.db, lease_id):
        fake_packet.set_traffic(server.provider_id, inbound=MB, outbound=MB)
    fake_packet.fail_next("GET", "devices/", 503, times=10)
    with caplog.at_level(logging.WARNING, "commands.provider_activity"):
        assert poll_provider_activity(packet_lab, clock.now) == 0
    assert samples(packet_lab.db) == [] and "unknown, not idle" in caplog.text


def test_packet_devices_get_the_reporter_with_a_token_of_their_own(
    packet_lab: Lab, fake_packet: FakePacket, clock: SteppedClock
) -> None:
    lease_id = approved_lease(packet_lab, clock, count=2)
    creates = [r.body for r in fake_packet.requests if r.method == "POST" and "devices" in r.path]
    assert len(creates) == 2
    tokens = []
    for body in creates:
        userdata = body["userdata"]
        assert userdata.startswith("#!/bin/sh") and "labbot-activity.timer" in userdata
        assert "ami-launch-index" not in userdata  # one server, one token
        tokens.append(userdata.split("\nset -- ", 1)[1].split("\n", 1)[0])
    assert len(set(tokens)) == 2
    with packet_lab.db.read() as session:
        stored = {t.token_hash for t in session.exec(select(ActivityToken)).all()}
    assert len(stored) == 2 and not set(tokens) & stored
    assert lease_id
