"""Books: commitments as holds in the ledger, the way Chameleon charges an allocation up front and
refunds the rest.

Approving a lease writes, in the approval's own transaction, what it may bill into each month
its window touches (a `CreditHold` row per month, and the month's totals in `CreditMonth`).
Extending it and its servers coming up rewrite the holds to the new plan. Each running server
has a `Meter`. When a server is confirmed gone, what it billed is settled (`ServerSpend`, and
the month's `settled` total) and the lease's hold in that month shrinks by as much: spend
replaces hold. When the lease ends (released, expired, failed) its holds are dropped, which
gives back whatever was not billed; servers still being deleted bill on their meters until
they are gone.

A lease is billed to its donor alone (`Lease.donor`, fixed once approved), so every hold, meter
and settlement carries the donor, and the totals are kept per donor: the donor's month and each
project's within it, per applicant class (`CreditMonth`), and each applicant class's
(`ClassMonth`, read by the reserve kept for other open-source projects). Every total is changed
with an atomic increment through `bump_all`, which only notes the change on the session: the
transaction adds them up and writes them as its last statements before it commits (or before it
next reads a total), each row once, in one order (the donors' months, then the projects', then
the classes'). So a transaction holds a row of totals from its last statement to its commit, and
writers on PostgreSQL never wait on each other in a circle.

Only writers that check money (approvals and extensions, `commands.budget`) take the months'
lock rows (`lock_months`), and so are decided one after the other. Activations, expiries,
settlements and releases do not check money and only add to the totals, and increments
commute, so they never take a lock row: what they read and then write is their own leases'
holds, and they lock those leases' rows first (`_lock_leases`), as an extension of the same
lease does before it reads them (docs/credit.md, "The check").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import delete, event, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import ORMExecuteState, SessionTransaction
from sqlmodel import Session, col, func, select

from commands.billing import cost_by_month, first_overrun, from_us, month_key, to_us
from commands.facts import ListedLease
from commands.lab import Lab
from commands.policy import Policy
from commands.states import LIVE, State
from storage.claims import claim_period
from storage.locks import insert_all_once
from storage.models import (
    ClassMonth,
    CreditHold,
    CreditMonth,
    Lease,
    Meter,
    Server,
    ServerSpend,
)

LAB = ""  # the project (and class) of a donor's own totals; the donor of the months' lock rows
EXACTNESS = "exactness"  # the claim of the sweep's exactness pass


class Payer(NamedTuple):
    """Whose totals a lease's holds and spend move: its donor's month, and within it its
    project's and its applicant class's (the class fixed when it was requested, the donor
    when it was approved)."""

    donor: str
    project: str
    applicant_class: str


def payer(lease: Lease) -> Payer:
    return Payer(lease.donor, lease.project, lease.applicant_class)


_DONOR_ROWS, _PROJECT_ROWS, _CLASS_ROWS = range(3)  # bump_all's order of the totals' rows


def planned_window(
    lease: Lease | ListedLease, policy: Policy, now: datetime
) -> tuple[datetime, datetime]:
    """When the lease's servers will run: from their start (before that, from the approval,
    or now for a request) to the planned end plus grace, because servers bill until deleted.
    A booking's servers run from the lead time before its start (they bill from creation) to
    its start plus its length, whenever they came up."""
    length = timedelta(seconds=lease.duration_s + lease.extended_s)
    if lease.book_start is not None:
        start = lease.starts_at or policy.prepare_from(lease.book_start)
        return start, (lease.ends_at or lease.book_start + length) + policy.grace
    start = lease.starts_at or lease.decided_at or now
    end = lease.ends_at or start + length
    return start, end + policy.grace


def planned_cost(lease: Lease | ListedLease, policy: Policy, now: datetime) -> dict[str, int]:
    start, end = planned_window(lease, policy, now)
    return cost_by_month(start, end, lease.count, lease.hourly_cents)


def billing_stops(lease: Lease, gone_by: datetime) -> datetime:
    """When a server known to be gone by `gone_by` stopped billing: the provider's backstop
    deleted it then, if that came first."""
    if lease.backstop_at is None:
        return gone_by
    return min(gone_by, lease.backstop_at)


def meter_spend(meter: Meter, now: datetime) -> dict[str, int]:
    """What a running server has billed by `now`, per month."""
    start = from_us(meter.start_us)
    end = now if meter.stop_us is None else min(now, from_us(meter.stop_us))
    return cost_by_month(start, max(end, start), 1, meter.hourly_cents)


def hold(session: Session, lease: Lease, policy: Policy, now: datetime) -> None:
    """Hold what the live lease may still bill: its plan less what its gone servers billed,
    per month."""
    hold_all(session, [lease], policy, now)


def hold_all(session: Session, leases: list[Lease], policy: Policy, now: datetime) -> None:
    """`hold` for many live leases at once (a sweep pass's activations): their settled spend
    and holds are read in one query each and the months locked once, instead of per lease."""
    settled = _settled_of(session, [lease.id for lease in leases])
    wants = {}
    for lease in leases:
        done = settled.get(lease.id, {})
        plan = planned_cost(lease, policy, now)
        # A lease with nothing left to plan (a booking whose servers came up after its end,
        # labbot down through its window) keeps a row of 0, so its exactness is noted and
        # what its servers bill is reckoned as billed past its holds, as for any lease.
        wants[lease.id] = {m: max(0, c - done.get(m, 0)) for m, c in plan.items()} or {
            month_key(now): 0
        }
    _set_all_holds(session, leases, wants)


def hold_approved(session: Session, lease: Lease, policy: Policy, now: datetime) -> None:
    """A request just approved: nothing billed, nothing held and no server yet, so its holds
    are its plan, and no server can bill past them."""
    plan = planned_cost(lease, policy, now)
    for month, cents in plan.items():
        session.add(
            CreditHold(
                lease_id=lease.id,
                month=month,
                project=lease.project,
                cents=cents,
                donor=lease.donor,
            )
        )
    bump(session, lease, held=plan)


def release_holds(session: Session, lease: Lease) -> None:
    """The lease ended: what it held and did not bill goes back to the months. Servers still
    being deleted go on billing on their meters until they are confirmed gone."""
    release_all_holds(session, [lease])


def release_all_holds(session: Session, leases: list[Lease]) -> None:
    """`release_holds` for many ended leases at once (a sweep pass's expiries): their holds are
    deleted in one statement and each total changes once."""
    by_id = {lease.id: lease for lease in leases}
    ids = list(by_id)
    _lock_leases(session, ids)
    held = session.execute(
        delete(CreditHold)
        .where(col(CreditHold.lease_id).in_(ids))
        .returning(CreditHold.lease_id, CreditHold.month, CreditHold.cents)
    ).all()
    given_back: dict[Payer, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for lease_id, month, cents in held:
        given_back[payer(by_id[lease_id])][month] -= cents
    bump_all(session, held=given_back)
    session.exec(update(Meter).where(col(Meter.lease_id).in_(ids)).values(held=False))


def meter_on(session: Session, servers: list[Server], leases: dict[int, Lease]) -> None:
    """Servers became active: they bill from now on (one insert for all). The caller notes
    their leases' exactness once it has metered every server that came up
    (`refresh_exactness`)."""
    if not servers:
        return
    session.execute(
        insert(Meter),
        [
            {
                "server_id": server.id,
                "lease_id": server.lease_id,
                "project": lease.project,
                "donor": lease.donor,
                "hourly_cents": server.hourly_cents,
                "start_us": to_us(server.active_at),
                "stop_us": None if lease.backstop_at is None else to_us(lease.backstop_at),
                "held": State(lease.state) in LIVE,
            }
            for server in servers
            for lease in [leases[server.lease_id]]
        ],
    )


def backstop_moved(session: Session, lease: Lease) -> None:
    """The provider now deletes the lease's servers later, so they may bill longer."""
    session.exec(
        update(Meter)
        .where(col(Meter.lease_id) == lease.id)
        .values(stop_us=to_us(lease.backstop_at))
    )
    refresh_exactness(session, lease.id)


def settle_spend(session: Session, servers: list[Server], lease: Lease) -> None:
    """Write down, once, what servers of the lease that are now gone billed in each month; for
    a live lease its holds in those months shrink by the same amount."""
    settle_all_spend(session, servers, {lease.id: lease})


def settle_all_spend(session: Session, servers: list[Server], leases: dict[int, Lease]) -> None:
    """`settle_spend` for gone servers of many leases at once. A server is settled by the
    call that stopped its meter (the DELETE's RETURNING says which), so never twice. The
    leases' rows are locked first, so an extension of one of them reads its servers, spend and
    holds before this or after it, never halfway."""
    if not servers:
        return
    _lock_leases(session, [server.lease_id for server in servers])
    stopped = set(
        session.scalars(
            delete(Meter)
            .where(col(Meter.server_id).in_([s.id for s in servers]))
            .returning(Meter.server_id)
        ).all()
    )
    spend: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    rows = []
    for server in servers:
        if server.id not in stopped or server.active_at is None or server.deleted_at is None:
            continue
        lease = leases[server.lease_id]
        end = billing_stops(lease, server.deleted_at)
        billed = cost_by_month(server.active_at, max(end, server.active_at), 1, server.hourly_cents)
        for month, cents in billed.items():
            spend[lease.id][month] += cents
            rows.append(
                {
                    "server_id": server.id,
                    "month": month,
                    "lease_id": lease.id,
                    "project": lease.project,
                    "donor": lease.donor,
                    "cents": cents,
                }
            )
    if not spend:
        return
    session.execute(insert(ServerSpend), rows)
    holding = set(
        session.exec(
            select(CreditHold.lease_id).where(col(CreditHold.lease_id).in_(list(spend))).distinct()
        ).all()
    )
    if holding:  # a live lease: spend replaces hold
        held = _locked_holds_all(session, holding)
        _set_all_holds(
            session,
            [leases[lease_id] for lease_id in sorted(holding)],
            {
                lease_id: {m: max(0, r.cents - spend[lease_id].get(m, 0)) for m, r in rows.items()}
                for lease_id, rows in held.items()
            },
            settled={lease_id: spend[lease_id] for lease_id in holding},
        )
    # Leases being reclaimed hold nothing: only the totals change, once per payer and month.
    settled: dict[Payer, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for lease_id, months in spend.items():
        if lease_id not in holding:
            for month, cents in months.items():
                settled[payer(leases[lease_id])][month] += cents
    bump_all(session, settled=settled)


def lease_settled(session: Session, lease_id: int) -> dict[str, int]:
    return _settled_of(session, [lease_id]).get(lease_id, {})


def _settled_of(session: Session, lease_ids: list[int]) -> dict[int, dict[str, int]]:
    """What each lease's gone servers billed, per month."""
    found: dict[int, dict[str, int]] = defaultdict(dict)
    for lease_id, month, cents in session.exec(
        select(ServerSpend.lease_id, ServerSpend.month, func.sum(ServerSpend.cents))
        .where(col(ServerSpend.lease_id).in_(lease_ids))
        .group_by(ServerSpend.lease_id, ServerSpend.month)
    ).all():
        found[lease_id][month] = int(cents)
    return found


def refresh_exactness(session: Session, lease_id: int) -> None:
    """Note from when on the lease's running servers could bill past its holds; the books
    reckon the lease exactly from then on."""
    refresh_exactness_all(session, [lease_id])


def refresh_exactness_all(session: Session, lease_ids: Iterable[int]) -> None:
    """`refresh_exactness` for many leases, their holds and meters read in one query each; the
    holds are changed on the session's rows, so the flush writes only those that changed."""
    held = _holds_of(session, lease_ids)
    meters: dict[int, list[Meter]] = defaultdict(list)
    for meter in session.exec(select(Meter).where(col(Meter.lease_id).in_(list(held)))).all():
        meters[meter.lease_id].append(meter)
    for lease_id, rows in held.items():
        until = first_overrun(
            {month: row.cents for month, row in rows.items()},
            [
                (
                    from_us(m.start_us),
                    None if m.stop_us is None else from_us(m.stop_us),
                    m.hourly_cents,
                )
                for m in meters[lease_id]
            ],
        )
        for row in rows.values():
            row.exact_until = until
            session.add(row)
    session.flush()


def renote_lapsed_exactness(session: Session, now: datetime) -> list[int]:
    """Note afresh the exactness of every lease whose holds say it may bill past them by now
    (`exact_until` passed): live leases of a database upgraded from a release without holds
    carry a time in the past until their holds are next written, and are reckoned one by one
    meanwhile. Those whose servers stay within their holds become exact again; those that
    really bill past them keep being reckoned. Each lease's row is locked first, as every
    writer of holds does. Returns the leases looked at."""
    lapsed = session.exec(
        select(CreditHold.lease_id).where(col(CreditHold.exact_until) < now).distinct()
    ).all()
    _lock_leases(session, lapsed)
    refresh_exactness_all(session, lapsed)
    return list(lapsed)


def renote_exactness_if_due(lab: Lab, now: datetime) -> None:
    """The sweep's exactness pass, once per `reconcile_every` across replicas: leases reckoned
    one by one because their exactness lapsed (all live leases right after an upgrade) are
    looked at again, so the books go back to reading totals for those within their holds."""
    with lab.db.write() as session:
        if claim_period(session, EXACTNESS, lab.replica, now, lab.policy.reconcile_every):
            renote_lapsed_exactness(session, now)


def open_month(session: Session, month: str) -> None:
    """The month's lock row, there for approvals to lock."""
    _open_months(session, [month])


def _open_months(session: Session, months: list[str]) -> None:
    """Insert the months' lock rows that are missing (one that is there is left alone: neither
    written nor locked)."""
    insert_all_once(session, CreditMonth, [_lock_row(m) for m in months])


def _lock_row(month: str) -> dict:
    return {
        "month": month,
        "donor": LAB,
        "project": LAB,
        "applicant_class": LAB,
        "settled": 0,
        "held": 0,
    }


def lock_months(session: Session, months: Iterable[str]) -> None:
    """Take the lock rows of these months for this transaction, so that a competing approval
    or extension waits for this one's holds before it checks (PostgreSQL: row locks, in month
    order; SQLite: BEGIN IMMEDIATE already serialises writers and FOR UPDATE is dropped). One
    row a month whichever donor pays, so a project's cap, which spans the donors, needs no lock
    of its own, and a check of several candidate donors in one transaction locks once. Only
    the writers that check money take them: the others never wait here."""
    keys = sorted(months)
    _open_months(session, keys)
    session.exec(
        select(CreditMonth.month)
        .where(
            col(CreditMonth.month).in_(keys),
            CreditMonth.donor == LAB,
            CreditMonth.project == LAB,
            CreditMonth.applicant_class == LAB,
        )
        .order_by(col(CreditMonth.month))
        .with_for_update()
    ).all()


def bump(
    session: Session,
    lease: Lease,
    *,
    settled: dict[str, int] | None = None,
    held: dict[str, int] | None = None,
) -> None:
    """Add to the months' totals of the lease's donor, its project and its applicant class."""
    who = payer(lease)
    bump_all(session, settled={who: settled or {}}, held={who: held or {}})


def bump_all(
    session: Session,
    *,
    settled: dict[Payer, dict[str, int]] | None = None,
    held: dict[Payer, dict[str, int]] | None = None,
) -> None:
    """Add to the months' totals of each donor, of each project and of each applicant class
    within it ({payer: {month: cents}}). The changes are noted on the session and written by
    `_write_bumps` when the transaction commits or next reads a total."""
    rows = session.info.setdefault(_BUMPS, defaultdict(lambda: [0, 0]))
    for n, amounts in enumerate((settled or {}, held or {})):
        for who, months in amounts.items():
            for month, cents in months.items():
                for key in (
                    (_DONOR_ROWS, (who.donor, LAB, LAB)),
                    (_PROJECT_ROWS, tuple(who)),
                    (_CLASS_ROWS, (who.donor, who.applicant_class)),
                ):
                    rows[*key, month][n] += cents


_BUMPS = "labbot.holds.bumps"  # session.info: {(rank, key, month): [settled, held]} to add


def _write_bumps(session: Session) -> None:
    """Write the totals' changes noted on the session, each row once. The one order every
    writer takes these rows in: the donors' rows, then the projects' in name order, then the
    classes' in name order, each in month order, one executemany a table."""
    rows = session.info.pop(_BUMPS, None)
    if not rows:
        return
    changes: dict[type[CreditMonth] | type[ClassMonth], list[dict]] = defaultdict(list)
    for (rank, key, month), (add_settled, add_held) in sorted(rows.items()):
        if add_settled or add_held:
            model = ClassMonth if rank == _CLASS_ROWS else CreditMonth
            changes[model].append(
                {
                    "month": month,
                    **dict(zip(_keys(model), key, strict=True)),
                    "settled": add_settled,
                    "held": add_held,
                }
            )
    for model, values in changes.items():
        session.execute(_upsert(session, model), values)


@event.listens_for(Session, "before_commit")
def _bumps_before_commit(session: Session) -> None:
    """The totals are the transaction's last writes: their rows stay locked from there to
    the commit, not from the writer's first change to it (a savepoint's end is not the
    transaction's)."""
    if not session.in_nested_transaction():
        _write_bumps(session)


@event.listens_for(Session, "do_orm_execute")
def _bumps_before_reading_totals(state: ORMExecuteState) -> None:
    """A transaction that reads a total sees its own changes to it."""
    reads = {m.class_ for m in state.all_mappers} if state.is_select else set()
    if _BUMPS in state.session.info and reads & {CreditMonth, ClassMonth}:
        _write_bumps(state.session)


@event.listens_for(Session, "after_transaction_end")
def _bumps_forgotten(session: Session, transaction: SessionTransaction) -> None:
    """A transaction rolled back takes the changes it noted with it."""
    if transaction.parent is None:
        session.info.pop(_BUMPS, None)


def _upsert(session: Session, model: type[CreditMonth] | type[ClassMonth]):
    """INSERT of a row of totals that adds to the row if it is there: a donor's or a project's
    in `CreditMonth`, an applicant class's in `ClassMonth`."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = model.__table__
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=[table.c.month, *(table.c[key] for key in _keys(model))],
        set_={
            "settled": table.c.settled + statement.excluded.settled,
            "held": table.c.held + statement.excluded.held,
        },
    )


def _keys(model: type[CreditMonth] | type[ClassMonth]) -> tuple[str, ...]:
    """The columns that, with the month, name a row of totals."""
    if model is ClassMonth:
        return ("donor", "applicant_class")
    return ("donor", "project", "applicant_class")


def _holds_of(session: Session, lease_ids: Iterable[int]) -> dict[int, dict[str, CreditHold]]:
    """Each lease's holds by month (leases holding nothing are left out)."""
    found: dict[int, dict[str, CreditHold]] = defaultdict(dict)
    for row in session.exec(
        select(CreditHold).where(col(CreditHold.lease_id).in_(list(lease_ids)))
    ).all():
        found[row.lease_id][row.month] = row
    return found


def _locked_holds_all(
    session: Session, lease_ids: Iterable[int]
) -> dict[int, dict[str, CreditHold]]:
    """The leases' holds, read after locking the leases' rows. Every writer of a lease's holds
    takes its row first, so two writers of one lease's holds (an extension, the sweep settling
    a vanished server) take turns on PostgreSQL, and writers of different leases do not wait
    on each other at all."""
    ids = list(lease_ids)
    _lock_leases(session, ids)
    return _holds_of(session, ids)


def _lock_leases(session: Session, lease_ids: Iterable[int]) -> None:
    """Hold the leases' rows until the transaction ends (in id order; a row this transaction
    already holds, as the sweep's state changes do, costs no wait)."""
    ids = sorted(set(lease_ids))
    if ids:
        session.exec(
            select(Lease.id).where(col(Lease.id).in_(ids)).order_by(Lease.id).with_for_update()
        ).all()


def _set_all_holds(
    session: Session,
    leases: list[Lease],
    wants: dict[int, dict[str, int]],
    settled: dict[int, dict[str, int]] | None = None,
) -> None:
    """Rewrite each lease's holds to what it wants per month, and the totals by the change
    (plus what `settled` says its gone servers billed), each total once."""
    old = _locked_holds_all(session, [lease.id for lease in leases])
    held: dict[Payer, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    spent: dict[Payer, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for lease in leases:
        rows, want = old.get(lease.id, {}), wants[lease.id]
        for month in rows.keys() | want.keys():
            held[payer(lease)][month] += want.get(month, 0) - (
                rows[month].cents if month in rows else 0
            )
        for month, row in rows.items():
            if month not in want:
                session.delete(row)
        for month, cents in want.items():
            row = rows.get(month) or CreditHold(
                lease_id=lease.id, month=month, project=lease.project, cents=0, donor=lease.donor
            )
            row.cents = cents
            session.add(row)
        for month, cents in (settled or {}).get(lease.id, {}).items():
            spent[payer(lease)][month] += cents
    bump_all(session, settled=spent, held=held)
    session.flush()
    refresh_exactness_all(session, [lease.id for lease in leases])
