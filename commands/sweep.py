"""Lease life: the one reconcile loop, which dispatches and does no job itself.

Level-triggered and idempotent: it asks the database which leases are due (`due_at <= now`, an
indexed column) and drives each one step; everything it does is a conditional change, so calling
it twice with the same `now` does nothing the second time, and a crash anywhere is finished by
the next call. Nothing is scheduled per lease outside our own tables.

The sweep finds and claims the due leases, picks each one's step from the table in `_step_for`,
and calls the jobs where they live: request expiry (request.py), bookings waiting for their
start (bookings.py), provisioning (provision.py), reminders and the silent-lease check
(remind.py, silent.py), expiry and deletes (reclaim.py), repository checks (repocheck.py),
write-up reminders (writeups.py), the provider compared with our books (reconcile.py), credit
alerts (credit_alerts.py), donors ending (donor_alerts.py), the exactness pass (holds.py) and
notice delivery (notices.py).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement
from sqlmodel import col, select

from commands.bookings import await_start, waiting
from commands.credit_alerts import credit_alerts
from commands.donor_alerts import donor_alerts
from commands.facts import in_utc
from commands.holds import renote_exactness_if_due
from commands.lab import Lab, LostRace
from commands.log_context import about_lease
from commands.notices import deliver
from commands.provision import advance_provisioning_all, provision_all
from commands.reclaim import advance_reclaim_all, delete_due_all, expire
from commands.reconcile import reconcile_if_due
from commands.remind import remind
from commands.repocheck import check_repository, due_checks
from commands.request import expire_requests
from commands.states import RECLAIMING, State
from commands.writeups import remind_writeups
from metal.provider import ProviderError
from storage.claims import claim, give_back
from storage.models import Lease

log = logging.getLogger(__name__)

BATCH = 500
CLAIM_CHUNK = 50  # leases claimed at once: stepped together, shared between replicas


@dataclass
class SweepReport:
    stepped: list[tuple[int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    delivered: int = 0
    reconciled: bool = False
    dry_run: bool = False

    def lines(self) -> list[str]:
        if self.dry_run:
            due = [f"lease #{i} is due: {what}" for i, what in self.stepped]
            return due or ["nothing is due"]
        out = [f"lease #{i}: {what}" for i, what in self.stepped]
        out += [f"error: {e}" for e in self.errors]
        if self.reconciled:
            out.append("compared the provider's devices with the leases")
        out.append(f"{self.delivered} notices delivered")
        return out


def due_leases(lab: Lab, now: datetime, limit: int = BATCH) -> list[Lease]:
    with lab.db.read() as session:
        return list(
            session.exec(
                select(Lease)
                .where(col(Lease.due_at) <= now)
                .order_by(col(Lease.due_at))
                .limit(limit)
            ).all()
        )


def claim_due_leases(lab: Lab, now: datetime, *where: ColumnElement) -> Iterator[list[Lease]]:
    """The due leases this replica claimed (of those `where` selects: one donor's), a chunk at
    a time (so replicas sweeping at once share them), each at most once per sweep."""
    seen: list[int] = []
    while len(seen) < BATCH:
        with lab.db.write() as session:
            ids = claim(
                session,
                Lease,
                col(Lease.due_at) <= now,
                col(Lease.id).not_in(seen),
                *where,
                owner=lab.replica,
                now=now,
                hold=lab.policy.claim_for,
                order_by=[col(Lease.due_at)],
                limit=min(CLAIM_CHUNK, BATCH - len(seen)),
            )
            leases = session.exec(select(Lease).where(col(Lease.id).in_(ids))).all()
        if not ids:
            return
        seen.extend(ids)
        yield sorted(leases, key=lambda lease: (lease.due_at, lease.id))


def sweep(lab: Lab, now: datetime, *, dry_run: bool = False) -> SweepReport:
    report = SweepReport(dry_run=dry_run)
    if dry_run:
        for lease in due_leases(lab, now):
            report.stepped.append((lease.id, f"{lease.state}: due since {in_utc(lease.due_at)}"))
        return report
    donors = list(lab.providers)
    if len(donors) == 1:
        _sweep_leases(lab, now, report)
    else:
        # Each donor's due leases claimed and stepped apart and at once, a chunk of its own at
        # a time, so each chunk's steps share their transactions as with one donor; leases of a
        # donor the configuration no longer names are stepped too, to say so.
        parts = [col(Lease.donor) == donor for donor in donors] + [col(Lease.donor).not_in(donors)]
        reports = [SweepReport() for _ in parts]
        with ThreadPoolExecutor(len(parts), thread_name_prefix="donor") as pool:
            list(pool.map(lambda part, mine: _sweep_leases(lab, now, mine, part), parts, reports))
        for mine in reports:
            report.stepped += mine.stepped
            report.errors += mine.errors
    _process(lab, now, report)
    report.reconciled = reconcile_if_due(lab, now, report.errors)
    credit_alerts(lab, now)
    donor_alerts(lab, now)
    renote_exactness_if_due(lab, now)
    if lab.notifier is not None:
        report.delivered = deliver(lab.db, lab.notifier, now, owner=lab.replica)
    return report


def _sweep_leases(lab: Lab, now: datetime, report: SweepReport, *where: ColumnElement) -> None:
    """Claim and step the due leases `where` selects, a chunk at a time, into `report`."""
    for chunk in claim_due_leases(lab, now, *where):
        try:
            outcomes = step_all(lab, chunk, now)
        finally:
            with lab.db.write() as session:
                give_back(session, Lease, [lease.id for lease in chunk], lab.replica)
        for lease in chunk:
            what = outcomes[lease.id]
            if isinstance(what, Exception):
                report.errors.append(f"lease #{lease.id}: {what}")
            else:
                report.stepped.append((lease.id, what))


def _process(lab: Lab, now: datetime, report: SweepReport) -> None:
    """The lab's process: repository checks the forge has not answered yet, write-up
    reminders. Neither changes a lease's state, so they run beside the lease steps."""
    for lease_id in due_checks(lab, now):
        try:
            report.stepped.append((lease_id, check_repository(lab, lease_id, now)))
        except Exception as error:
            log.exception("sweep: repository check of lease %s", lease_id)
            report.errors.append(f"lease #{lease_id}: repository check: {error}")
    for lease_id in remind_writeups(lab, now):
        report.stepped.append((lease_id, "write-up reminder sent"))


Step = Callable[[Lab, list[Lease], datetime], dict[int, str]]


def step_all(lab: Lab, leases: list[Lease], now: datetime) -> dict[int, str | Exception]:
    """One step for each due lease, through the Lab for its donor (`Lab.for_donor`). The sweep
    claims each donor's leases apart (`sweep`), so a chunk holds one donor's, or those of donors
    the configuration no longer names, which are only told so."""
    by_donor: dict[str, list[Lease]] = defaultdict(list)
    for lease in leases:
        by_donor[lease.donor].append(lease)
    outcomes: dict[int, str | Exception] = {}
    for donor, group in by_donor.items():
        outcomes.update(_step_donor(lab, donor, group, now))
    return outcomes


def _step_donor(
    lab: Lab, donor: str, leases: list[Lease], now: datetime
) -> dict[int, str | Exception]:
    """One step for each due lease of one donor. Leases due for the same kind of step take it
    together (one transaction for all request expiries, one for all reminders, one claim and
    one pool of deletes for all reclaims, one transaction for all answers of the provisioning
    polls; the provider's creates still go lease by lease). A batch that raises is done again
    lease by lease, so one bad lease cannot hold the others back, and its error names it."""
    if donor not in lab.providers:
        gone = ProviderError(f"its donor {donor} has no provider account in the configuration")
        return {lease.id: gone for lease in leases}
    lab = lab.for_donor(donor)
    groups: dict[Step, list[Lease]] = defaultdict(list)
    outcomes: dict[int, str | Exception] = {}
    for lease in leases:
        fn = _step_for(State(lease.state))
        if fn is None:
            outcomes[lease.id] = "nothing to do"
        else:
            groups[fn].append(lease)
    for fn, group in groups.items():
        batches = [group]
        for batch in batches:  # grows while it runs: a failed batch comes back lease by lease
            alone = batch[0].id if len(batch) == 1 else None
            with about_lease(alone):
                try:
                    outcomes.update(fn(lab, batch, now))
                except Exception as error:
                    if alone is None:
                        batches.extend([lease] for lease in batch)
                    elif isinstance(error, LostRace):
                        outcomes[alone] = "changed meanwhile"
                    else:
                        log.exception("sweep: lease %s", alone)
                        outcomes[alone] = error
    return outcomes


def _step_for(state: State) -> Step | None:
    return {
        State.PENDING: expire_requests,
        State.APPROVED: _approved,
        State.PROVISIONING: _provisioning,
        State.ACTIVE: _active,
    }.get(state, _reclaim if state in RECLAIMING else None)


def _approved(lab: Lab, leases: list[Lease], now: datetime) -> dict[int, str]:
    """Approved leases are provisioned, but bookings before their lead time, which only get
    their day-before DM (commands/bookings.py)."""
    ahead = [lease for lease in leases if waiting(lease, lab.policy, now)]
    due = [lease for lease in leases if not waiting(lease, lab.policy, now)]
    outcomes = await_start(lab, ahead, now) if ahead else {}
    started = set(provision_all(lab, [lease.id for lease in due], now)) if due else set()
    for lease in due:
        started_here = lease.id in started
        outcomes[lease.id] = (
            f"Lease #{lease.id} is provisioning." if started_here else "changed meanwhile"
        )
    return outcomes


def _provisioning(lab: Lab, leases: list[Lease], now: datetime) -> dict[int, str]:
    advance_provisioning_all(lab, [lease.id for lease in leases], now)
    return {lease.id: "provisioning polled" for lease in leases}


def _reclaim(lab: Lab, leases: list[Lease], now: datetime) -> dict[int, str]:
    advance_reclaim_all(lab, [lease.id for lease in leases], now)
    return {lease.id: "deletes driven" for lease in leases}


def _active(lab: Lab, leases: list[Lease], now: datetime) -> dict[int, str]:
    """Active leases: those past their end plus grace expire and their deletes start; the
    others have the devices given up while they provisioned deleted, and get their due
    reminders."""
    ending = [lease for lease in leases if now >= lease.ends_at + lab.policy.grace]
    ending_ids = {lease.id for lease in ending}
    running = [lease for lease in leases if lease.id not in ending_ids]
    delete_due_all(lab, [lease.id for lease in running], now)
    outcomes = remind(lab, running, now)
    if ending:
        expired = expire(lab, ending, now)
        advance_reclaim_all(lab, expired, now)
        for lease in ending:
            outcomes[lease.id] = (
                "expired; deletes started" if lease.id in expired else "already being reclaimed"
            )
    return outcomes
