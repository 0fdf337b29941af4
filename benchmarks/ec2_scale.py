"""Provisioning and reclaiming 500 servers through boto3 against moto's server, with 200 ms added
to every call by the fault proxy (the Packet benchmark's latency): wall time against the ideal
`N x latency / concurrency`, and peak memory, for both directions.

moto and the proxy run in a process of their own (as EC2 would be elsewhere); instances stay
`pending` for five real seconds (the proxy's model of EC2's pending time).

An EC2 create is two calls, not one: RunInstances, then the instance's backstop schedule
(CreateSchedule), since the schedule's target must name the instance. A delete is two as well
(TerminateInstances, then DeleteSchedule). So the floor is twice Packet's, and moto's own work
per call (one interpreter serving eight calls at once) adds to it. Three ratios are printed:
against `N x latency / concurrency` as asked, against two calls per server, and against the
same calls made by bare boto3 from eight threads in the same run (what labbot itself adds).
"""

from __future__ import annotations

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
from commands.lab import Lab
from commands.notices import RecordingNotifier
from commands.policy import Policy, Roles
from commands.provision import advance_provisioning
from commands.reclaim import release
from commands.review import approve
from commands.states import State
from fakes.ec2 import CREDENTIALS, SCHEDULER_ROLE, FaultProxy, MotoServer
from metal.ec2 import TERMINATE_TARGET, Ec2Provider
from metal.ec2_catalog import EXAMPLE, load_offer
from metal.provider import lease_tag, utcnow

SERVERS = 500
LATENCY = 0.2
CONCURRENCY = 8
TARGET = 1.3
CALLS_PER_SERVER = 2
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
        ratio = report_scale("creates", created, ideal, done, SERVERS, TARGET)
        target_row("creates: wall / (2 calls per server)", ratio / CALLS_PER_SERVER, TARGET)
        row("bare boto3, same calls, 8 threads", seconds(bare[0]))
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
        ratio = report_scale("deletes", deleted, ideal, done, SERVERS, TARGET)
        target_row("deletes: wall / (2 calls per server)", ratio / CALLS_PER_SERVER, TARGET)
        row("bare boto3, same calls, 8 threads", seconds(bare[1]))
        target_row("deletes: wall / bare boto3", deleted[0] / bare[1], TARGET)
        assert lease_state(lab, lease_id) == State.RECLAIMED, lease_state(lab, lease_id)
        note(
            "an EC2 create is RunInstances + CreateSchedule and a delete TerminateInstances + "
            "DeleteSchedule: the floor is 2 x N x latency / concurrency"
        )
        note("memory is the benchmark process's peak RSS; moto and the proxy run in their own")
        lab.db.dispose()
    return 0


def _bare_boto3(endpoint: str) -> tuple[float, float]:
    """The same calls without labbot: RunInstances + CreateSchedule per server, then
    TerminateInstances + DeleteSchedule, from CONCURRENCY threads; moto is reset afterwards."""
    config = Config(max_pool_connections=CONCURRENCY * 2)
    ec2 = boto3.client("ec2", REGION, endpoint_url=endpoint, config=config)
    scheduler = boto3.client("scheduler", REGION, endpoint_url=endpoint, config=config)
    image = load_offer(EXAMPLE).image(OS, REGION, "aarch64")
    at = f"at({utcnow() + timedelta(days=2):%Y-%m-%dT%H:%M:%S})"

    def create(n: int) -> str:
        tags = [{"Key": "labbot", "Value": ""}, {"Key": "Name", "Value": f"bare-{n}"}]
        answer = ec2.run_instances(
            ImageId=image,
            InstanceType=PLAN,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )
        instance = answer["Instances"][0]["InstanceId"]
        scheduler.create_schedule(
            Name=f"bare-{instance}",
            ScheduleExpression=at,
            FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": TERMINATE_TARGET, "RoleArn": SCHEDULER_ROLE, "Input": "{}"},
        )
        return instance

    def delete(instance: str) -> None:
        ec2.terminate_instances(InstanceIds=[instance])
        scheduler.delete_schedule(Name=f"bare-{instance}")

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        creating, instances = timed(lambda: list(pool.map(create, range(SERVERS))))
        deleting, _ = timed(lambda: list(pool.map(delete, instances)))
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
