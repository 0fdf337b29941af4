"""Lease life: the provider's devices compared with our books, once per `reconcile_every`.

The provider is the truth about what runs and bills; our tables are the truth about what
should. Comparing them finds orphans (devices with our tag that no lease knows: deleted after
`orphan_grace`) and vanished servers (a live lease's device the provider no longer has: the
lease is flagged and stops billing). The same pass re-reads the provider's catalog, so plans
and prices follow the provider's own lists. Whichever replica claims the period does it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from sqlmodel import col, select

from commands.facts import when
from commands.handover import send_files_again
from commands.holds import settle_spend
from commands.lab import Lab, audit, set_state
from commands.markers import forget, once, stamp
from commands.notices import ADMIN, Kind, enqueue, enqueue_all, owner
from commands.states import ServerState, State
from metal.provider import TAG, Device, lease_tag
from storage.claims import claim_period, give_back_period
from storage.locks import locked
from storage.models import Lease, Orphan, Server

log = logging.getLogger(__name__)

RECONCILE = "reconcile"
FAILING = "provider-failing:"  # marker of a donor whose provider failed its last listing


def reconcile_if_due(lab: Lab, now: datetime, errors: list[str]) -> bool:
    """Once per `reconcile_every` across every replica: whichever claims the period does it,
    for each donor's provider account apart (their lists asked at once, so a slow provider
    delays no other's). What failed is added to `errors` (the sweep's report), and the admins
    are told once when a donor's provider starts failing and once when it answers again. True
    if it ran (for at least one donor)."""
    with lab.db.write() as session:
        if not claim_period(session, RECONCILE, lab.replica, now, lab.policy.reconcile_every):
            return False
    donors = list(lab.providers)
    with ThreadPoolExecutor(len(donors), thread_name_prefix="reconcile") as pool:
        answers = dict(zip(donors, pool.map(lambda d: _listing(lab, d), donors), strict=True))
    for donor, answer in answers.items():
        if isinstance(answer, Exception):
            errors.append(f"{_whose(lab, donor)}listing the provider's devices failed: {answer}")
        _tell_health(lab, donor, answer, now)
    listed = {d: devices for d, devices in answers.items() if not isinstance(devices, Exception)}
    if not listed:
        with lab.db.write() as session:
            give_back_period(session, RECONCILE, lab.replica, now)
        return False
    with lab.db.write() as session:
        stamp(session, RECONCILE, now)  # when the providers were last compared, for people
    for donor, devices in listed.items():
        _orphans(lab.for_donor(donor), donor, devices, now)
        _vanished(lab.for_donor(donor), donor, {d.id for d in devices}, now)
    _refresh_catalogs(lab, list(listed), errors)
    return True


def _whose(lab: Lab, donor: str) -> str:
    """Whose provider a sweep error is about, when the lab has several."""
    return f"donor {donor}: " if len(lab.providers) > 1 else ""


def _listing(lab: Lab, donor: str) -> list[Device] | Exception:
    try:
        return lab.provider_of(donor).list(TAG)
    except Exception as error:
        return error


def _tell_health(lab: Lab, donor: str, answer: list[Device] | Exception, now: datetime) -> None:
    """The admins hear once when a donor's provider stops answering (its leases wait: creates
    and deletes are retried; the other donors' go on) and once when it answers again."""
    key = f"{FAILING}{donor}"
    with lab.db.write() as session:
        if isinstance(answer, Exception):
            if not once(session, key, now):
                return
            text = (
                f"Donor {donor}'s provider is failing: {answer}. Its leases wait (creates and "
                "deletes are retried); the other donors' leases go on."
            )
        elif forget(session, key):
            text = f"Donor {donor}'s provider answers again; its leases go on."
        else:
            return
        audit(session, now, "system", "provider_health", donor=donor, failing=text)
        enqueue(session, Kind.ADMIN_ALERT, ADMIN, text, now, alert="provider_failing")


def _refresh_catalogs(lab: Lab, donors: list[str], errors: list[str]) -> None:
    """Plans and prices come from each provider's own lists where it has them; a failed read
    keeps the catalog we had. The catalogs together are made again when next asked."""
    for donor in donors:
        try:
            lab.catalogs[donor] = lab.provider_of(donor).catalog()
        except Exception as error:
            errors.append(f"{_whose(lab, donor)}reading the provider's catalog failed: {error}")
    lab.catalog = None


def _orphans(lab: Lab, donor: str, devices: list[Device], now: datetime) -> None:
    """Devices with our tag that no lease knows. A device of a lease still provisioning may be
    a create whose answer was lost: that lease adopts it, so it is left alone."""
    ids = [d.id for d in devices]
    with lab.db.read() as session:
        known = set(
            session.exec(
                select(Server.provider_id).where(
                    col(Server.provider_id).in_(ids), col(Server.state) != ServerState.DELETED
                )
            ).all()
        )
        provisioning = {
            lease_tag(i)
            for i in session.exec(select(Lease.id).where(Lease.state == State.PROVISIONING)).all()
        }
    for device in devices:
        if device.id in known or provisioning.intersection(device.tags):
            continue
        _orphan(lab, donor, device, now)


def _orphan(lab: Lab, donor: str, device: Device, now: datetime) -> None:
    """An orphan is deleted through the provider account it was listed in (`lab` is that
    donor's)."""
    with lab.db.write() as session:
        seen = session.get(Orphan, device.id)
        if seen is None:
            session.add(
                Orphan(provider_id=device.id, hostname=device.hostname, first_seen=now, donor=donor)
            )
            audit(
                session,
                now,
                "system",
                "orphan_found",
                hostname=device.hostname,
                device=device.id,
                donor=donor,
            )
            return
        if seen.deleted_at is not None or now - seen.first_seen < lab.policy.orphan_grace:
            return
    try:
        lab.provider.delete(device.id)
    except Exception as error:
        log.warning("deleting orphan %s failed: %s", device.id, error)
        return
    with lab.db.write() as session:
        seen = session.get(Orphan, device.id)
        seen.deleted_at = now
        session.add(seen)
        audit(
            session,
            now,
            "system",
            "orphan_deleted",
            hostname=device.hostname,
            device=device.id,
            donor=donor,
        )
        account = f" in donor {donor}'s account" if len(lab.providers) > 1 else ""
        enqueue(
            session,
            Kind.ADMIN_ALERT,
            ADMIN,
            f"Deleted orphaned device {device.hostname} ({device.id}){account}: it carried "
            "labbot's tag "
            f"but belonged to no live lease for {lab.policy.orphan_grace}.",
            now,
            alert="orphan",
        )


def _vanished(lab: Lab, donor: str, present: set[str], now: datetime) -> None:
    """Servers of a live lease billed to `donor` that its provider no longer has: flag the
    lease, tell admins."""
    with lab.db.read() as session:
        missing = session.exec(
            select(Server)
            .join(Lease, col(Lease.id) == Server.lease_id)
            .where(
                Lease.donor == donor,
                col(Server.deleted_at).is_(None),  # the indexed way to the few live servers
                Server.state == ServerState.ACTIVE,
                col(Server.provider_id).not_in(present),
            )
        ).all()
    gone: dict[int, list[str]] = defaultdict(list)  # lease -> its servers that vanished
    for server in missing:
        if not _gone(lab, server):
            continue
        with lab.db.write() as session:
            lease = locked(session, Lease, server.lease_id)
            row = locked(session, Server, server.id)
            if row.state != ServerState.ACTIVE:
                continue
            gone[lease.id].append(row.hostname)
            set_state(row, ServerState.VANISHED)
            row.deleted_at = now
            settle_spend(session, [row], lease)
            lease.flagged = f"{row.hostname} vanished from the provider at {when(now)}"
            session.add_all([row, lease])
            audit(session, now, "system", "vanished", lease.id, hostname=row.hostname)
            for audience in (ADMIN, owner(lease.owner)):
                enqueue(
                    session,
                    Kind.ADMIN_ALERT if audience == ADMIN else Kind.FAILED,
                    audience,
                    f"Server {row.hostname} of lease #{lease.id} vanished from the provider; "
                    "it no longer bills. The rest of the lease is untouched.",
                    now,
                    lease.id,
                    alert="vanished",
                )
    _files_again(lab, gone, now)


NAMED = 5  # vanished servers a replacement file's note names; it counts the rest


def _files_again(lab: Lab, gone: dict[int, list[str]], now: datetime) -> None:
    """Once per lease, after its vanished servers are recorded: its people get files listing
    the servers it has now."""
    for lease_id, hostnames in gone.items():
        with lab.db.write() as session:
            lease = session.get(Lease, lease_id)
            if lease is None or lease.state != State.ACTIVE:
                continue
            named = ", ".join(hostnames[:NAMED]) + (
                f" and {len(hostnames) - NAMED} more" if len(hostnames) > NAMED else ""
            )
            why = f"{named} vanished from the provider"
            enqueue_all(session, send_files_again(session, lab, lease, why), now)


def _gone(lab: Lab, server: Server) -> bool:
    """Asked of the device itself before a server is taken for vanished: a list read in pages
    while devices come and go can skip one that is still there (and billing), and so can a
    device whose tags someone edited. A device that cannot be asked about now is asked again
    at the next reconcile."""
    try:
        return lab.provider.get(server.provider_id) is None
    except Exception as error:
        log.warning("cannot check whether %s vanished: %s", server.hostname, error)
        return False
