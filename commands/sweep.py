"""The one reconcile loop.

Level-triggered and idempotent: it asks the database which leases are due (`due_at <= now`, an
indexed column) and drives each one step; everything it does is a conditional change, so calling
it twice with the same `now` does nothing the second time, and a crash anywhere is finished by
the next call. Nothing is scheduled per lease outside our own tables.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import insert
from sqlmodel import Session, col, func, select

from commands.billing import format_cents, month_key
from commands.coowners import audiences, co_owners_of
from commands.credit import (
    books,
    burn_rate_cents_per_day,
    ensure_grant,
    ledger_totals,
    runs_out_at,
    used_cents,
)
from commands.facts import shape, when
from commands.holds import renote_lapsed_exactness, settle_spend
from commands.lab import Lab, LostRace, audit, audit_all, move_all
from commands.log_context import about_lease
from commands.markers import once, stamp
from commands.notices import ADMIN, REVIEW, Draft, Kind, deliver, enqueue, enqueue_all, owner
from commands.provision import advance_provisioning_all, provision_all, send_files_again
from commands.reclaim import CONFIRM, advance_reclaim_all, delete_due_all, expire
from commands.reminders import (
    SILENT_CHECK,
    due_reminders,
    next_due,
    remaining_words,
    reminder_times,
    silent_check_at,
)
from commands.repocheck import check_repository, due_checks
from commands.states import RECLAIMING, State
from commands.writeups import remind_writeups
from metal.provider import TAG, Device, lease_tag
from storage.claims import claim, claim_period, give_back_period, release
from storage.locks import locked, locked_all
from storage.models import AuditEvent, Lease, Orphan, SentReminder, Server

log = logging.getLogger(__name__)

BATCH = 500
CLAIM_CHUNK = 50  # leases claimed at once: stepped together, shared between replicas
RECONCILE = "reconcile"
CREDIT_ALERTS = "credit-alerts"
EXACTNESS = "exactness"
CREDIT_CHECK = timedelta(minutes=1)


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


def claim_due_leases(lab: Lab, now: datetime) -> Iterator[list[Lease]]:
    """The due leases this replica claimed, a chunk at a time (so replicas sweeping at once
    share them), each at most once per sweep."""
    seen: list[int] = []
    while len(seen) < BATCH:
        with lab.db.write() as session:
            ids = claim(
                session,
                Lease,
                col(Lease.due_at) <= now,
                col(Lease.id).not_in(seen),
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
            report.stepped.append((lease.id, f"{lease.state}: due since {when(lease.due_at)}"))
        return report
    for chunk in claim_due_leases(lab, now):
        try:
            outcomes = step_all(lab, chunk, now)
        finally:
            with lab.db.write() as session:
                release(session, Lease, [lease.id for lease in chunk], lab.replica)
        for lease in chunk:
            what = outcomes[lease.id]
            if isinstance(what, Exception):
                report.errors.append(f"lease #{lease.id}: {what}")
            else:
                report.stepped.append((lease.id, what))
    _process(lab, now, report)
    report.reconciled = _reconcile_if_due(lab, now, report)
    _credit_alerts(lab, now)
    _renote_exactness(lab, now)
    if lab.notifier is not None:
        report.delivered = deliver(lab.db, lab.notifier, now, owner=lab.replica)
    return report


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
    """One step for each due lease. Leases due for the same kind of step take it together (one
    transaction for all request expiries, one for all reminders, one claim and one pool of
    deletes for all reclaims, one transaction for all answers of the provisioning polls; the
    provider's creates still go lease by lease). A batch that raises is done again lease by
    lease, so one bad lease cannot hold the others back, and its error names it."""
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
        State.PENDING: _expire_requests,
        State.APPROVED: _approved,
        State.PROVISIONING: _provisioning,
        State.ACTIVE: _active,
    }.get(state, _reclaim if state in RECLAIMING else None)


def _approved(lab: Lab, leases: list[Lease], now: datetime) -> dict[int, str]:
    started = set(provision_all(lab, [lease.id for lease in leases], now))
    outcomes = {}
    for lease in leases:
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


def _expire_requests(lab: Lab, leases: list[Lease], now: datetime) -> dict[int, str]:
    """Requests nobody decided in time, all in one transaction; each is expired by the
    conditional UPDATE that moved it, so a reviewer deciding at the same moment wins or loses
    cleanly."""
    due = [lease for lease in leases if lease.decide_by is not None and lease.decide_by <= now]
    outcomes = {lease.id: "not due" for lease in leases}
    if not due:
        return outcomes
    with lab.db.write() as session:
        moved = move_all(session, due, State.EXPIRED_REQUEST, due_at=None, decided_at=now)
        audit_all(session, now, "system", "expire_request", {lease.id: {} for lease in moved})
        drafts = []
        for lease in moved:
            drafts.append(
                Draft(
                    Kind.REQUEST_EXPIRED,
                    owner(lease.owner),
                    f"Your request #{lease.id} ({shape(lease)}) expired: no reviewer decided by "
                    f"{when(lease.decide_by)}. File it again or ask in the review channel.",
                    lease.id,
                )
            )
            drafts.append(
                Draft(
                    Kind.CARD_DECIDED,
                    REVIEW,
                    f"Request #{lease.id} expired undecided at {when(now)}.",
                    lease.id,
                    {"decision": "expired", "by": "system"},
                )
            )
        enqueue_all(session, drafts, now)
    expired = {lease.id for lease in moved}
    for lease in due:
        outcomes[lease.id] = "request expired" if lease.id in expired else "already decided"
    return outcomes


def _active(lab: Lab, leases: list[Lease], now: datetime) -> dict[int, str]:
    """Active leases: those past their end plus grace expire and their deletes start; the
    others get their due reminders."""
    ending = [lease for lease in leases if now >= lease.ends_at + lab.policy.grace]
    ending_ids = {lease.id for lease in ending}
    outcomes = _remind(lab, [lease for lease in leases if lease.id not in ending_ids], now)
    if ending:
        expired = expire(lab, ending, now)
        advance_reclaim_all(lab, expired, now)
        for lease in ending:
            outcomes[lease.id] = (
                "expired; deletes started" if lease.id in expired else "already being reclaimed"
            )
    return outcomes


def _remind(lab: Lab, leases: list[Lease], now: datetime) -> dict[int, str]:
    """Due reminders of running leases, all in one transaction, and each lease's next
    deadline."""
    if not leases:
        return {}
    ids = [lease.id for lease in leases]
    with lab.db.read() as session:
        strays = session.exec(
            select(Server.lease_id)
            .where(
                col(Server.lease_id).in_(ids),
                Server.state == "deleting",
                col(Server.retry_at) <= now,
            )
            .distinct()
        ).all()
    delete_due_all(lab, list(strays), now)  # devices given up while provisioning
    outcomes = {lease_id: "changed meanwhile" for lease_id in ids}
    with lab.db.write() as session:
        fresh = [lease for lease in locked_all(session, Lease, ids) if lease.state == State.ACTIVE]
        sent: dict[int, dict[int, datetime]] = defaultdict(dict)
        for lease_id, offset, at in session.exec(
            select(SentReminder.lease_id, SentReminder.offset_s, SentReminder.sent_at).where(
                col(SentReminder.lease_id).in_(ids)
            )
        ).all():
            sent[lease_id][offset] = at
        co_owners = co_owners_of(session, ids)
        next_deletes = dict(
            session.exec(
                select(Server.lease_id, func.min(Server.retry_at))
                .where(col(Server.lease_id).in_(ids), Server.state == "deleting")
                .group_by(Server.lease_id)
            ).all()
        )
        drafts: list[Draft] = []
        reminded: dict[int, list[int]] = {}  # lease: the reminders sent now (offsets)
        for lease in fresh:
            due = due_reminders(lab.policy, lease.starts_at, lease.ends_at, sent[lease.id], now)
            for offset in due:
                sent[lease.id][offset] = now
            people = co_owners[lease.id]
            if due:
                left = remaining_words(lease.ends_at, now)
                drafts += [
                    Draft(
                        Kind.REMINDER,
                        audience,
                        f"Lease #{lease.id} ({shape(lease)}) ends in {left}, at "
                        f"{when(lease.ends_at)}. Extend it if you still need the servers, or "
                        "release them now.",
                        lease.id,
                        {"left": left, "ends_at": lease.ends_at.isoformat()},
                    )
                    for audience in audiences(session, lease, people)
                ]
                reminded[lease.id] = due
            checked, silent = _silent_check(session, lab, lease, sent[lease.id], people, now)
            done = [*sent[lease.id], *checked]
            lease.due_at = next_due(lab.policy, lease.starts_at, lease.ends_at, done)
            stray = next_deletes.get(lease.id)
            if stray is not None and stray < lease.due_at:
                lease.due_at = max(stray, now + CONFIRM)
            if silent:
                outcomes[lease.id] = "nobody answered the last reminder; reviewers told"
            else:
                outcomes[lease.id] = f"reminded ({len(due)})" if due else "not due"
        if reminded:
            session.execute(
                insert(SentReminder),
                [
                    {"lease_id": lease_id, "offset_s": offset, "sent_at": now}
                    for lease_id, offsets in reminded.items()
                    for offset in offsets
                ],
            )
        audit_all(
            session,
            now,
            "system",
            "remind",
            {i: {"offsets": sent_now} for i, sent_now in reminded.items()},
        )
        enqueue_all(session, drafts, now)
    return outcomes


def _silent_check(
    session: Session,
    lab: Lab,
    lease: Lease,
    sent: dict[int, datetime],
    people: list[str],
    now: datetime,
) -> tuple[list[int], bool]:
    """Once per lease end, after the last reminder: if no owner or co-owner has done anything
    with the lease since it went out, tell the reviewers, who may extend on the team's behalf.
    The lease still ends on time. Returns the offsets recorded ([SILENT_CHECK] once the check
    ran) and whether the reviewers were told."""
    at = silent_check_at(lab.policy, lease.starts_at, lease.ends_at)
    if at is None or at > now or SILENT_CHECK in sent:
        return [], False
    last_offset = reminder_times(lab.policy, lease.starts_at, lease.ends_at)[-1][0]
    reminded = sent.get(last_offset)
    session.add(SentReminder(lease_id=lease.id, offset_s=SILENT_CHECK, sent_at=now))
    people = [lease.owner, *people]
    if reminded is None or _answered(session, lease.id, people, reminded):
        return [SILENT_CHECK], False
    reclaim_at = lease.ends_at + lab.policy.grace
    audit(session, now, "system", "silent_lease", lease.id, reminded_at=reminded)
    enqueue(
        session,
        Kind.SILENT_LEASE,
        REVIEW,
        f"Lease #{lease.id} ({shape(lease)} for {lease.project}) will be reclaimed at "
        f"{when(reclaim_at)}, and nobody has answered its last reminder "
        f"({when(reminded)}): "
        f"{', '.join(f'<@{p}>' for p in people)}. If the team still needs it, a reviewer can "
        f"extend it on their behalf: `/lab extend {lease.id} 24h`.",
        now,
        lease.id,
        reclaim_at=reclaim_at.isoformat(),
        people=people,
    )
    return [SILENT_CHECK], True


def _answered(session: Session, lease_id: int, people: list[str], since: datetime) -> bool:
    """Whether any of them did anything with the lease (audited, refused or not) since."""
    return (
        session.exec(
            select(AuditEvent.id).where(
                AuditEvent.lease_id == lease_id,
                col(AuditEvent.at) >= since,
                col(AuditEvent.actor).in_(people),
            )
        ).first()
        is not None
    )


def _reconcile_if_due(lab: Lab, now: datetime, report: SweepReport) -> bool:
    """Once per `reconcile_every` across every replica: whichever claims the period does it."""
    with lab.db.write() as session:
        if not claim_period(session, RECONCILE, lab.replica, now, lab.policy.reconcile_every):
            return False
    try:
        devices = lab.provider.list(TAG)
    except Exception as error:
        report.errors.append(f"listing the provider's devices failed: {error}")
        with lab.db.write() as session:
            give_back_period(session, RECONCILE, lab.replica, now)
        return False
    with lab.db.write() as session:
        stamp(session, RECONCILE, now)  # when the provider was last compared, for people
    _orphans(lab, devices, now)
    _vanished(lab, {d.id for d in devices}, now)
    _refresh_catalog(lab, report)
    return True


def _refresh_catalog(lab: Lab, report: SweepReport) -> None:
    """Plans and prices come from the provider's own lists where it has them; a failed read
    keeps the catalog we had."""
    try:
        lab.catalog = lab.provider.catalog()
    except Exception as error:
        report.errors.append(f"reading the provider's catalog failed: {error}")


def _orphans(lab: Lab, devices: list[Device], now: datetime) -> None:
    """Devices with our tag that no lease knows. A device of a lease still provisioning may be
    a create whose answer was lost: that lease adopts it, so it is left alone."""
    ids = [d.id for d in devices]
    with lab.db.read() as session:
        known = set(
            session.exec(
                select(Server.provider_id).where(
                    col(Server.provider_id).in_(ids), col(Server.state) != "deleted"
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
        _orphan(lab, device, now)


def _orphan(lab: Lab, device: Device, now: datetime) -> None:
    with lab.db.write() as session:
        seen = session.get(Orphan, device.id)
        if seen is None:
            session.add(Orphan(provider_id=device.id, hostname=device.hostname, first_seen=now))
            audit(
                session, now, "system", "orphan_found", hostname=device.hostname, device=device.id
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
        audit(session, now, "system", "orphan_deleted", hostname=device.hostname, device=device.id)
        enqueue(
            session,
            Kind.ADMIN_ALERT,
            ADMIN,
            f"Deleted orphaned device {device.hostname} ({device.id}): it carried labbot's tag "
            f"but belonged to no live lease for {lab.policy.orphan_grace}.",
            now,
            alert="orphan",
        )


def _vanished(lab: Lab, present: set[str], now: datetime) -> None:
    """Servers of a live lease that the provider no longer has: flag the lease, tell admins."""
    with lab.db.read() as session:
        missing = session.exec(
            select(Server).where(
                col(Server.deleted_at).is_(None),  # the indexed way to the few live servers
                Server.state == "active",
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
            if row.state != "active":
                continue
            gone[lease.id].append(row.hostname)
            row.state, row.deleted_at = "vanished", now
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


def _renote_exactness(lab: Lab, now: datetime) -> None:
    """Once per `reconcile_every` across replicas: leases reckoned one by one because their
    exactness lapsed (all live leases right after an upgrade) are looked at again, so the
    books go back to reading totals for those within their holds."""
    with lab.db.write() as session:
        if claim_period(session, EXACTNESS, lab.replica, now, lab.policy.reconcile_every):
            renote_lapsed_exactness(session, now)


def _credit_alerts(lab: Lab, now: datetime) -> None:
    """Tell admins once when the month passes each threshold of its credit (the markers). The
    check reads the month's totals, once per CREDIT_CHECK across replicas (the claim); the full
    books are read only for an alert that goes out."""
    month = month_key(now)
    with lab.db.write() as session:
        if not claim_period(session, CREDIT_ALERTS, lab.replica, now, CREDIT_CHECK):
            return
        ensure_grant(session, month, lab.policy, now)
        granted, _ = ledger_totals(session, month)
        if granted <= 0:
            return
        used = used_cents(session, [month], now)[month] * 100 // granted
        crossed = [
            pct
            for pct in lab.policy.credit_alerts
            if used >= pct and once(session, f"credit-alert:{month}:{pct}", now)
        ]
        if not crossed:
            return
        book = books(session, [month], lab.policy, now)[month]
        burn = burn_rate_cents_per_day(session, now)
        out = runs_out_at(book, burn, now)
        for pct in crossed:
            enqueue(
                session,
                Kind.ADMIN_ALERT,
                ADMIN,
                f"{month}: {pct}% of the lab's credit is spent or committed "
                f"({format_cents(book.spent + book.committed)} of "
                f"{format_cents(book.granted)}); "
                f"burning {format_cents(burn)}/day" + (f", runs out {when(out)}." if out else "."),
                now,
                alert="credit",
                percent=pct,
            )
