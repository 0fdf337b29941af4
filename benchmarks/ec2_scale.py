"""Provisioning and reclaiming 500 servers through boto3 against moto's server, with 200 ms added
to every call by the fault proxy (the Packet benchmark's latency): wall time against the ideal
`N x latency / concurrency`, and peak memory, for both directions.

moto and the proxy run in a process of their own (as EC2 would be elsewhere); instances stay
`pending` for five real seconds (the proxy's model of EC2's pending time).

The ideal is the Packet benchmark's, `N x latency / concurrency`, with the engine's own
concurrency: one call per server. labbot makes fewer: the lease's backstop is one schedule made
before the first launch (GetSchedule, CreateSchedule) whose target finds the instances by tag;
servers are launched 25 to a RunInstances (500 servers over 8 calls in flight: 20 launches)
whose tags say which instance is which server, and terminated 25 to a TerminateInstances; one
paged DescribeInstances of the lease follows each (the poll, the confirmation that they are
gone). The second ratio is against the same calls made by bare boto3 from as many threads in
the same run: what labbot itself adds.
"""

from __future__ import annotations

import contextlib
import os
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from multiprocessing import Queue

import boto3
from botocore.config import Config

from benchmarks.common import (
    OWNER,
    REVIEWER,
    file_lease,
    heading,
    lease_state,
    measured,
    new_database,
    note,
    report_scale,
    row,
    seconds,
    section,
    serve_forever,
    served_elsewhere,
    target_row,
    timed,
    workdir,
)
from commands.batches import batches
from commands.lab import Lab
from commands.policy import Policy, Roles
from commands.provision import advance_provisioning
from commands.reclaim import release
from commands.review import approve
from commands.states import State
from fakes.ec2 import CREDENTIALS, SCHEDULER_ROLE, FaultProxy, MotoServer
from fakes.notifier import RecordingNotifier
from metal.ec2 import AUTOMATION_TARGET, BATCH, Ec2Provider
from metal.ec2_catalog import EXAMPLE, load_offer
from metal.provider import lease_tag, utcnow

SERVERS = 500
LATENCY = 0.2
CONCURRENCY = 8
TARGET = 1.3
PLAN, REGION, OS = "c7g.metal", "us-east-1", "ubuntu_24_04"
PENDING_SECONDS = 5.0


def main() -> int:
    section(
        f"EC2 scale: {SERVERS} servers, {LATENCY * 1000:.0f} ms per API call, "
        f"{CONCURRENCY} calls in flight"
    )
    ideal = SERVERS * LATENCY / CONCURRENCY
    os.environ.update(CREDENTIALS)
    with workdir() as tmp, served_elsewhere(_serve) as endpoint:
        provider = Ec2Provider(load_offer(EXAMPLE), SCHEDULER_ROLE, endpoint_url=endpoint)
        policy = Policy(
            monthly_credit_cents=1_000_000_000,
            max_servers=SERVERS,
            provider_concurrency=CONCURRENCY,
        )
        reviewers = Roles(reviewers=frozenset({REVIEWER}))
        lab = Lab(
            new_database(tmp / "ec2.db"),
            provider,
            RecordingNotifier(),
            policy,
            reviewers,
            provider.catalog(),
        )
        lease_id = file_lease(lab, PLAN, REGION, SERVERS, OS)
        bare = _bare_boto3(endpoint)

        heading("provision")
        created, _ = measured(lambda: approve(lab, REVIEWER, lease_id, utcnow()))
        done = len(provider.list(lease_tag(lease_id)))
        report_scale("creates", created, ideal, done, SERVERS, TARGET)
        row(f"bare boto3, same calls, {CONCURRENCY} threads", seconds(bare[0]))
        target_row("creates: wall / bare boto3", created[0] / bare[0], TARGET)
        time.sleep(PENDING_SECONDS)  # the proxy's instances leave `pending` on the real clock
        # A poll is one paged DescribeInstances of the lease; measured on its own, since under
        # load moto may answer the last poll of the provisioning pass after `pending` is over.
        listed, _ = measured(lambda: provider.list(lease_tag(lease_id)))
        row("one paged list of every server (a poll)", seconds(listed[0]))
        advance_provisioning(lab, lease_id, utcnow())
        assert lease_state(lab, lease_id) == State.ACTIVE, lease_state(lab, lease_id)

        heading("reclaim")
        deleted, _ = measured(lambda: release(lab, OWNER, lease_id, utcnow()))
        done = SERVERS - len(provider.list(lease_tag(lease_id)))
        report_scale("deletes", deleted, ideal, done, SERVERS, TARGET)
        row(f"bare boto3, same calls, {CONCURRENCY} threads", seconds(bare[1]))
        target_row("deletes: wall / bare boto3", deleted[0] / bare[1], TARGET)
        assert lease_state(lab, lease_id) == State.RECLAIMED, lease_state(lab, lease_id)
        note(
            f"calls: {BATCH} servers a RunInstances and a TerminateInstances, two for the "
            "lease's backstop schedule, one paged DescribeInstances after each direction"
        )
        note("memory is the benchmark process's peak RSS; moto and the proxy run in their own")
        lab.db.dispose()
    return 0


def _bare_boto3(endpoint: str) -> tuple[float, float]:
    """The same calls without labbot, from CONCURRENCY threads: the lease's schedule
    (GetSchedule, CreateSchedule), launches of BATCH and a paged describe, then terminations
    of BATCH and a paged describe; moto is reset afterwards."""
    config = Config(max_pool_connections=CONCURRENCY * 2)
    ec2 = boto3.client("ec2", REGION, endpoint_url=endpoint, config=config)
    scheduler = boto3.client("scheduler", REGION, endpoint_url=endpoint, config=config)
    image = load_offer(EXAMPLE).image(OS, REGION, "aarch64")
    at = f"at({utcnow() + timedelta(days=2):%Y-%m-%dT%H:%M:%S})"

    def schedule() -> None:
        with contextlib.suppress(scheduler.exceptions.ResourceNotFoundException):
            scheduler.get_schedule(Name="bare-lease")
        scheduler.create_schedule(
            Name="bare-lease",
            ScheduleExpression=at,
            FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": AUTOMATION_TARGET, "RoleArn": SCHEDULER_ROLE, "Input": "{}"},
        )

    def launch(names: list[str]) -> list[str]:
        tags = [{"Key": "labbot", "Value": "bare"}, {"Key": "hosts", "Value": ",".join(names)}]
        answer = ec2.run_instances(
            ImageId=image,
            InstanceType=PLAN,
            MinCount=1,
            MaxCount=len(names),
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )
        return [i["InstanceId"] for i in answer["Instances"]]

    def describe() -> None:
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag-key", "Values": ["labbot"]}],
            PaginationConfig={"PageSize": 1000},
        )
        for _ in pages:
            pass

    def create_all() -> list[str]:
        schedule()
        names = [f"bare-{n}" for n in range(SERVERS)]
        launched = pool.map(launch, batches(names, CONCURRENCY, BATCH))
        instances = [i for batch in launched for i in batch]
        describe()
        return instances

    def delete_all(instances: list[str]) -> None:
        for _ in pool.map(
            lambda batch: ec2.terminate_instances(InstanceIds=batch),
            batches(instances, CONCURRENCY, BATCH),
        ):
            pass
        describe()

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        creating, instances = timed(create_all)
        deleting, _ = timed(lambda: delete_all(instances))
    urllib.request.urlopen(
        urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30
    ).close()
    return creating, deleting


def _serve(ready: Queue) -> None:
    moto = MotoServer().start()
    proxy = FaultProxy(moto.url, pending_seconds=PENDING_SECONDS).start()
    proxy.latency(LATENCY)
    ready.put(proxy.url)
    serve_forever()
