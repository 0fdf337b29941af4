"""Provisioning and reclaiming 500 servers through packet-python against the fake Packet API
(HTTPS on 127.0.0.1) with 200 ms added to every call: wall time against the ideal
`N x latency / concurrency`, and peak memory, for both directions.

The fake runs in a process of its own (as the real API would), so its TLS and JSON work does
not compete with labbot for one interpreter lock; devices become active two real seconds after
they are created, so the waiting measured is the injected latency and labbot's own work.
"""

from __future__ import annotations

import time
from multiprocessing import Queue

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
    workdir,
)
from commands.lab import Lab
from commands.policy import Policy, Roles
from commands.provision import advance_provisioning
from commands.reclaim import release
from commands.review import approve
from commands.states import State
from fakes.notifier import RecordingNotifier
from fakes.packet import FakePacket
from metal.packet import PacketProvider
from metal.provider import lease_tag, utcnow

SERVERS = 500
LATENCY = 0.2
CONCURRENCY = 8
TARGET = 1.3
PLAN, METRO = "t1.small.x86", "ams1"
PROVISION_SECONDS = 2.0


def main() -> int:
    section(
        f"Packet scale: {SERVERS} servers, {LATENCY * 1000:.0f} ms per API call, "
        f"{CONCURRENCY} calls in flight"
    )
    ideal = SERVERS * LATENCY / CONCURRENCY
    with workdir() as tmp, served_elsewhere(_serve_fake) as (token, project, end_point, ca_bundle):
        provider = PacketProvider(token, project, end_point, ca_bundle=ca_bundle)
        policy = Policy(
            monthly_credit_cents=100_000_000,
            max_servers=SERVERS,
            provider_concurrency=CONCURRENCY,
        )
        reviewers = Roles(reviewers=frozenset({REVIEWER}))
        lab = Lab(new_database(tmp / "scale.db"), provider, RecordingNotifier(), policy, reviewers)
        lease_id = file_lease(lab, PLAN, METRO, SERVERS)

        heading("provision")
        created, _ = measured(lambda: approve(lab, REVIEWER, lease_id, utcnow()))
        done = len(provider.list(lease_tag(lease_id)))
        report_scale("creates", created, ideal, done, SERVERS, TARGET)
        time.sleep(PROVISION_SECONDS)  # the fake's devices come up on the real clock
        polled, _ = measured(lambda: advance_provisioning(lab, lease_id, utcnow()))
        row("one provisioning pass polling every server", seconds(polled[0]))
        assert lease_state(lab, lease_id) == State.ACTIVE, lease_state(lab, lease_id)

        heading("reclaim")
        deleted, _ = measured(lambda: release(lab, OWNER, lease_id, utcnow()))
        done = SERVERS - len(provider.list(lease_tag(lease_id)))
        report_scale("deletes", deleted, ideal, done, SERVERS, TARGET)
        assert lease_state(lab, lease_id) == State.RECLAIMED, lease_state(lab, lease_id)
        note("memory is the benchmark process's peak RSS; the fake runs in its own process")
        lab.db.dispose()
    return 0


def _serve_fake(ready: Queue) -> None:
    fake = FakePacket(provision_seconds=PROVISION_SECONDS).start()
    fake.set_capacity(PLAN, METRO, SERVERS)
    fake.latency(LATENCY)
    ready.put((fake.token, fake.project_id, fake.end_point, fake.ca_bundle_path))
    serve_forever()
