"""Provisioning and reclaiming 500 servers through packet-python against the fake Packet API
(HTTPS on 127.0.0.1) with 200 ms added to every call: wall time against the ideal
`N x latency / concurrency`, and peak memory, for both directions.

The fake runs in a process of its own (as the real API would), so its TLS and JSON work does
not compete with labbot for one interpreter lock; devices become active two real seconds after
they are created, so the waiting measured is the injected latency and labbot's own work.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from datetime import timedelta
from multiprocessing import Queue

from benchmarks.common import (
    heading,
    new_database,
    note,
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
from commands.policy import Policy, RequestInput, Roles
from commands.provision import advance_provisioning
from commands.reclaim import release
from commands.request import request
from commands.review import approve
from commands.states import State
from fakes.packet import FakePacket
from metal.packet import PacketProvider
from metal.provider import lease_tag, utcnow
from storage.models import Lease

SERVERS = 500
LATENCY = 0.2
CONCURRENCY = 8
TARGET = 1.3
OWNER, REVIEWER = "U0BENCH", "U0REVIEW"
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
        lease_id = _file(lab)

        heading("provision")
        created, _ = _measured(lambda: approve(lab, REVIEWER, lease_id, utcnow()))
        _report("creates", created, ideal, len(provider.list(lease_tag(lease_id))))
        time.sleep(PROVISION_SECONDS)  # the fake's devices come up on the real clock
        polled, _ = _measured(lambda: advance_provisioning(lab, lease_id, utcnow()))
        row("one provisioning pass polling every server", seconds(polled[0]))
        assert _state(lab, lease_id) == State.ACTIVE, _state(lab, lease_id)

        heading("reclaim")
        deleted, _ = _measured(lambda: release(lab, OWNER, lease_id, utcnow()))
        _report("deletes", deleted, ideal, SERVERS - len(provider.list(lease_tag(lease_id))))
        assert _state(lab, lease_id) == State.RECLAIMED, _state(lab, lease_id)
        note("memory is the benchmark process's peak RSS; the fake runs in its own process")
        lab.db.dispose()
    return 0


def _serve_fake(ready: Queue) -> None:
    fake = FakePacket(provision_seconds=PROVISION_SECONDS).start()
    fake.set_capacity(PLAN, METRO, SERVERS)
    fake.latency(LATENCY)
    ready.put((fake.token, fake.project_id, fake.end_point, fake.ca_bundle_path))
    serve_forever()


def _file(lab: Lab) -> int:
    filed = request(
        lab,
        OWNER,
        RequestInput(
            project="kubernetes",
            repo_url="https://github.com/kubernetes/kubernetes",
            purpose="5k-node scale test",
            plan="t1.small.x86",
            metro="ams1",
            count=SERVERS,
            duration=timedelta(hours=12),
        ),
        utcnow(),
    )
    assert filed.ok, filed.message
    return filed.lease_id


def _measured(fn: Callable[[], object]) -> tuple[tuple[float, int], object]:
    """Wall time of one call, and the process's peak resident memory after it (tracemalloc
    would triple the wall time it is measuring)."""
    wall, result = timed(fn)
    return (wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024), result


def _report(what: str, measured: tuple[float, int], ideal: float, done: int) -> None:
    wall, peak = measured
    row(f"{what} done", f"{done} of {SERVERS}")
    row(f"{what}: wall time", seconds(wall), f"ideal {seconds(ideal)}")
    target_row(f"{what}: wall / ideal", wall / ideal, TARGET)
    row(f"{what}: peak RSS of labbot's process", f"{peak / 2**20:.0f} MB")


def _state(lab: Lab, lease_id: int) -> str:
    with lab.db.read() as session:
        return session.get(Lease, lease_id).state
