"""Lease life: what the providers' own metrics say of the servers' use (issue 23).

Once per POLL_EVERY, whichever replica claims the period (storage.claims) asks each donor's
provider that keeps metrics (`metal.provider.Metered`: EC2's CloudWatch, Packet's traffic) about
the active servers of live leases over the last whole window, and writes one ActivitySample per
server it answered for. The windows are aligned to POLL_EVERY and end LAG before now (metrics
arrive late), so consecutive polls tile time. A provider whose metrics are down, throttled or
refused gives no sample for the window: "unknown", logged, never "idle"; the next period tries
again (the failed one is not retried at once, which would only press a throttled API harder).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlmodel import col, select

from commands.activity import LIVE_LEASES, record
from commands.lab import Lab
from commands.states import ServerState
from metal.provider import Metered, Usage
from storage.claims import claim_period
from storage.models import Lease, Server

log = logging.getLogger(__name__)

POLL = "activity-poll"
POLL_EVERY = timedelta(minutes=15)
LAG = timedelta(minutes=5)  # CloudWatch's basic monitoring publishes minutes after the fact
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def window(now: datetime) -> tuple[datetime, datetime]:
    """The last whole POLL_EVERY that ended at least LAG ago."""
    end = _EPOCH + (now - LAG - _EPOCH) // POLL_EVERY * POLL_EVERY
    return end - POLL_EVERY, end


def poll_provider_activity(lab: Lab, now: datetime) -> int:
    """One poll, if this replica claims the period; returns the samples written."""
    with lab.db.write() as session:
        if not claim_period(session, POLL, lab.replica, now, POLL_EVERY):
            return 0
    start, end = window(now)
    servers = _metered_servers(lab, end)
    if not servers:
        return 0
    donors = list(servers)
    with ThreadPoolExecutor(len(donors), thread_name_prefix="metrics") as pool:
        answers = pool.map(lambda d: _usage(lab, d, list(servers[d]), start, end), donors)
        rows = [
            {
                "server_id": server_id,
                "lease_id": lease_id,
                "at": end,
                "source": source,
                "interval_s": int((end - start).total_seconds()),
                "cpu_busy": usage.cpu_busy,
                "net_bytes": usage.net_bytes,
            }
            for donor, (source, found) in zip(donors, answers, strict=True)
            for device_id, usage in found.items()
            if device_id in servers[donor]
            for server_id, lease_id in [servers[donor][device_id]]
        ]
    return record(lab, rows)


def _metered_servers(lab: Lab, end: datetime) -> dict[str, dict[str, tuple[int, int]]]:
    """Per donor whose provider keeps metrics: the active servers of live leases that were up
    before the window ended, by device id: (server id, lease id)."""
    metered = [d for d in lab.providers if isinstance(lab.provider_of(d), Metered)]
    if not metered:
        return {}
    with lab.db.read() as session:
        rows = session.exec(
            select(Server.provider_id, Server.id, Server.lease_id, Lease.donor)
            .join(Lease, col(Lease.id) == col(Server.lease_id))
            .where(
                col(Lease.state).in_(LIVE_LEASES),
                col(Lease.donor).in_(metered),
                col(Server.state) == ServerState.ACTIVE,
                col(Server.active_at) < end,
                col(Server.provider_id).is_not(None),
            )
        ).all()
    servers: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    for device_id, server_id, lease_id, donor in rows:
        servers[donor][device_id] = (server_id, lease_id)
    return servers


def _usage(
    lab: Lab, donor: str, device_ids: list[str], start: datetime, end: datetime
) -> tuple[str, dict[str, Usage]]:
    provider = lab.provider_of(donor)
    try:
        return provider.metrics_source, provider.usage(device_ids, start, end)
    except Exception as error:
        log.warning(
            "donor %s: the provider's metrics could not be read (%s); %d servers have no "
            "provider figure for %s to %s (unknown, not idle)",
            donor,
            error,
            len(device_ids),
            start.isoformat(),
            end.isoformat(),
        )
        return provider.metrics_source, {}
