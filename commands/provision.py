"""Lease life: from an approved lease to running servers.

Each server is a row before it is a device. A create is claimed first (row `pending` ->
`creating`, committed), then sent; the answer is recorded in a second commit. If the process
dies between the two, the claim lapses and the next pass looks for a device carrying the lease's
tag and the server's hostname before creating again, so a server is never created twice.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime, timedelta

from sqlalchemy import insert, update
from sqlmodel import Session, col, select

from commands.activity import issue_tokens, reporting
from commands.backstop import move_backstop
from commands.batches import batches
from commands.bookings import warn_late
from commands.capacity import forget, place
from commands.coowners import audiences, co_owners_of
from commands.facts import servers_summary, shape, when
from commands.handover import files_notice
from commands.holds import hold_all, meter_on, refresh_exactness_all, release_holds
from commands.keys import keys_on_all, keys_words, lease_keys_all
from commands.lab import (
    Code,
    Lab,
    LostRace,
    Outcome,
    Refusal,
    audit,
    audit_all,
    audit_event,
    audit_rows,
    move,
    move_all,
    not_found,
    refuse,
    servers_moving,
    set_state,
    wrong_state,
)
from commands.markers import once
from commands.metros import metro_words
from commands.notices import ADMIN, Draft, Kind, enqueue, enqueue_all, owner
from commands.pubkeys import PublicKey
from commands.reclaim import delete_due_all
from commands.reminders import next_due
from commands.states import ServerState, State
from metal.provider import (
    TAG,
    Device,
    DeviceSpec,
    DeviceState,
    NoCapacity,
    ProviderError,
    lease_tag,
    short_metros,
)
from storage.locks import locked, locked_all
from storage.models import Lease, Server, ServerKeys

log = logging.getLogger(__name__)

CREATE_CLAIM = timedelta(minutes=5)
CAPACITY_WAIT = timedelta(minutes=5)
RECORD_EVERY = timedelta(seconds=1)  # how long create answers may wait in hand to be recorded
PROGRESS_STEPS = (25, 50, 75)
GAVE_UP = (DeviceState.FAILED, DeviceState.DELETED)
COMING = (ServerState.PENDING, ServerState.CREATING, ServerState.PROVISIONING)  # on its way up
LARGE = 10
TEXT_LISTED = 10  # servers the ready notice's plain text names (Slack's blocks show more)


def provision(lab: Lab, actor: str, lease_id: int, now: datetime) -> Outcome:
    """approved -> provisioning: the server rows are written, then the devices are created."""
    if not lab.roles.is_admin(actor):
        return refuse(
            lab,
            now,
            actor,
            "provision",
            Refusal(Code.NOT_ALLOWED, "Only admins can provision by hand."),
            lease_id,
        )
    with lab.db.write() as session:
        lease = locked(session, Lease, lease_id)
        if lease is None:
            problem = not_found(lease_id)
        elif lease.state != State.APPROVED:
            problem = wrong_state(lease, "provisioned", "an approved lease")
        else:
            problem = None
            donor = lease.donor
            _start(session, lab, [lease], actor, now)
    if problem:
        return refuse(lab, now, actor, "provision", problem, lease_id)
    advance_provisioning(lab.for_donor(donor), lease_id, now)
    return Outcome(True, f"Lease #{lease_id} is provisioning.", lease_id)


def provision_all(lab: Lab, lease_ids: list[int], now: datetime) -> list[int]:
    """The sweep's `provision` of approved leases, all started in one transaction and then
    advanced together; returns the ids it started (the others changed meanwhile)."""
    with lab.db.write() as session:
        leases = [
            lease
            for lease in locked_all(session, Lease, lease_ids)
            if lease.state == State.APPROVED
        ]
        started = _start(session, lab, leases, "system", now)
    advance_provisioning_all(lab, started, now)
    return started


def _start(session: Session, lab: Lab, leases: list[Lease], actor: str, now: datetime) -> list[int]:
    """Move the leases to provisioning (each with its backstop) and write their server rows."""
    moved = move_all(session, leases, State.PROVISIONING, due_at=now)
    drafts = []
    servers: list[dict] = []  # inserted in one statement (an ORM object is one statement each)
    for lease in moved:
        # Provisioning may take until the timeout (a booking's, from its start if that is
        # later): the backstop leaves the lease its whole length after that.
        ready_by = max(now + lab.policy.provision_timeout, lease.book_start or now)
        lease.backstop_at = lab.policy.backstop(ready_by + timedelta(seconds=lease.duration_s))
        metros = [metro for metro, count in lease.per_metro().items() for _ in range(count)]
        servers += [
            {
                "lease_id": lease.id,
                "hostname": f"{lease.project}-{lease.id}-{n}",
                "plan": lease.plan,
                "metro": metro,
                "hourly_cents": lease.hourly_cents,
            }
            for n, metro in enumerate(metros, 1)
        ]
        drafts.append(
            Draft(
                Kind.PROVISIONING,
                owner(lease.owner),
                f"Provisioning {shape(lease)} for lease #{lease.id}; servers usually take a "
                "few minutes. You will get a DM when they are ready."
                + (
                    f" They are being prepared for its start, {when(lease.book_start)}."
                    if lease.book_start and lease.book_start > now
                    else ""
                ),
                lease.id,
            )
        )
    if servers:
        session.execute(insert(Server), servers)
    audit_all(session, now, actor, "provision", {x.id: {"backstop": x.backstop_at} for x in moved})
    enqueue_all(session, drafts, now)
    return [lease.id for lease in moved]


def advance_provisioning(lab: Lab, lease_id: int, now: datetime) -> None:
    """One step: create what is missing, poll what is on its way, and finish the lease when
    every server is active (or give up on it). Safe to call from several places at once."""
    advance_provisioning_all(lab, [lease_id], now)


def advance_provisioning_all(lab: Lab, lease_ids: list[int], now: datetime) -> None:
    """`advance_provisioning` for many leases: each lease's creates (only where a server is
    waiting for one) go out beside `sweep_concurrency` other leases' creates, so a lease whose
    provider calls sit in retry back-off holds up no other; the polls' answers and the
    decisions are recorded for all of them in one transaction, then the deletes of devices
    that failed go out from one pool."""
    waiting = {
        lease_id: rows
        for lease_id, rows in _servers_of(lab, lease_ids).items()
        if any(s.state in (ServerState.PENDING, ServerState.CREATING) for s in rows)
    }
    if waiting:
        plans = _plans(lab, list(waiting))
        workers = max(1, min(lab.policy.sweep_concurrency, len(plans)))
        with ThreadPoolExecutor(workers, thread_name_prefix="leases") as pool:
            for created in [
                pool.submit(_create_for, lab, lease, keys, waiting[lease.id], now)
                for lease, keys in plans
            ]:
                created.result()  # a lease's error (or the process going down) is the caller's
    late = _poll_and_decide(lab, lease_ids, _poll(lab, lease_ids), now)
    delete_due_all(lab, lease_ids, now)  # devices that failed provisioning, or were given up
    for lease_id, ends_at in late:
        _late_backstop(lab, lease_id, ends_at, now)


def _plans(lab: Lab, lease_ids: list[int]) -> list[tuple[Lease, list[PublicKey]]]:
    """The provisioning leases among these, each with the keys its servers are created with,
    read in one transaction for all (at each pass, so a co-owner added while the lease
    provisions is on the servers created after)."""
    with lab.db.read() as session:
        leases = session.exec(
            select(Lease).where(col(Lease.id).in_(lease_ids), Lease.state == State.PROVISIONING)
        ).all()
        keys = lease_keys_all(session, list(leases), co_owners_of(session, lease_ids))
    return [(lease, keys[lease.id]) for lease in leases]


def _create_for(
    lab: Lab, lease: Lease, keys: list[PublicKey], rows: list[Server], now: datetime
) -> None:
    if any(_maybe_created(s, now) for s in rows):
        _recover_lost_creates(lab, lease.id, rows, now)
        rows = _servers(lab, lease.id)
    _create_missing(lab, lease, keys, rows, now)


def _servers_of(lab: Lab, lease_ids: list[int], *states: ServerState) -> dict[int, list[Server]]:
    """Each lease's servers (in those states), in one query."""
    with lab.db.read() as session:
        query = select(Server).where(col(Server.lease_id).in_(lease_ids))
        if states:
            query = query.where(col(Server.state).in_(states))
        rows = session.exec(query.order_by(col(Server.id))).all()
    found: dict[int, list[Server]] = {lease_id: [] for lease_id in lease_ids}
    for row in rows:
        found[row.lease_id].append(row)
    return found


def _servers(lab: Lab, lease_id: int, *states: ServerState) -> list[Server]:
    return _servers_of(lab, [lease_id], *states)[lease_id]


def _recover_lost_creates(lab: Lab, lease_id: int, rows: list[Server], now: datetime) -> None:
    """A create may have reached the provider even though we never heard back: the process died
    after claiming it (a `creating` row whose claim lapsed), or the call raised (a `pending` row
    with attempts behind it). Before creating again, adopt a device carrying the lease's tag and
    the server's hostname that no other row owns."""
    unsure = [s for s in rows if _maybe_created(s, now)]
    if not unsure:
        return
    try:
        listed = lab.provider.list(lease_tag(lease_id))
    except Exception as error:
        log.warning("lease %s: cannot look for lost creates: %s", lease_id, error)
        return
    owned = {s.provider_id for s in rows if s.provider_id}
    found = {d.hostname: d for d in listed if d.id not in owned}
    for server in unsure:
        device = found.get(server.hostname)
        if device is None and server.state == ServerState.PENDING:
            continue
        moving = (
            servers_moving(
                ServerState(server.state),
                ServerState.PROVISIONING,
                provider_id=device.id,
                retry_at=None,
            )
            if device
            else servers_moving(
                ServerState.CREATING,
                ServerState.PENDING,
                retry_at=now,
                # Cut short on our side (its process died) and nothing came of it: not one of
                # the attempts the provider gets to make the server.
                create_attempts=Server.create_attempts - 1,
            )
        )
        with lab.db.write() as session:
            changed = session.exec(moving.where(col(Server.id) == server.id)).rowcount
            if changed != 1:
                continue  # another pass recovered it first
            audit(
                session,
                now,
                "system",
                "recover_create",
                lease_id,
                hostname=server.hostname,
                adopted=device.id if device else None,
            )


def _maybe_created(server: Server, now: datetime) -> bool:
    due = server.retry_at is None or server.retry_at <= now
    if server.state == ServerState.CREATING:
        return server.retry_at is not None and due
    return server.state == ServerState.PENDING and server.create_attempts > 0 and due


def _create_missing(
    lab: Lab, lease: Lease, keys: list[PublicKey], rows: list[Server], now: datetime
) -> None:
    todo = [
        s
        for s in rows
        if s.state == ServerState.PENDING and (s.retry_at is None or s.retry_at <= now)
    ]
    todo = _with_capacity(lab, lease, todo, now)
    if not todo or not _guarded(lab, lease, todo, now):
        return
    claimed, tokens = _claim_creates(lab, todo, now)
    workers = max(1, min(lab.policy.provider_concurrency, len(claimed) or 1))
    with ThreadPoolExecutor(workers, thread_name_prefix=f"create-{lease.id}") as pool:
        sent = {
            pool.submit(_send_creates, lab, lease, batch, keys, tokens): batch
            for batch in batches(claimed, workers, lab.provider.max_batch)
        }
        # Answers are recorded at least every RECORD_EVERY, all those in hand in one
        # transaction, so a crash loses at most the creates answered since (found again by tag
        # and hostname), and a provider that answers at once costs one transaction a lease.
        while sent:
            done, _ = wait(sent, timeout=RECORD_EVERY.total_seconds())
            answers = [answer for f in done for answer in zip(sent.pop(f), f.result(), strict=True)]
            if answers:
                _record_creates(lab, lease, answers, keys, now)


def _with_capacity(lab: Lab, lease: Lease, todo: list[Server], now: datetime) -> list[Server]:
    """The servers to create now: capacity is checked again, metro by metro, just before
    creating (reviewers saw it on the card). A metro without room waits and is asked again,
    until the provisioning deadline fails the lease; unknown: go ahead."""
    counts = Counter(s.metro for s in todo)
    short = set(short_metros(lab.provider, lease.plan, dict(counts)))
    if not short:
        return todo
    waiting = [s for s in todo if s.metro in short]
    with lab.db.write() as session:
        session.exec(
            update(Server)
            .where(col(Server.id).in_([s.id for s in waiting]), Server.state == ServerState.PENDING)
            .values(retry_at=now + CAPACITY_WAIT)
        )
        audit(
            session,
            now,
            "system",
            "capacity",
            lease.id,
            "waiting",
            servers=len(waiting),
            metros=sorted(short),
        )
        where = ", ".join(sorted(short))
        warn_late(session, lease, f"the provider has no {lease.plan} to spare in {where}", now)
    return [s for s in todo if s.metro not in short]


def _guarded(lab: Lab, lease: Lease, todo: list[Server], now: datetime) -> bool:
    """The backstop is set before anything is created, so no device of the lease is ever
    without one (one call per pass for the whole lease; idempotent). If the provider refuses,
    nothing is created: the servers wait, the admins are told once, and the provisioning
    deadline fails the lease if it never works."""
    try:
        for metro in dict.fromkeys(s.metro for s in todo):  # EC2: a schedule in each region
            lab.provider.set_backstop(lease_tag(lease.id), metro, lease.backstop_at, ())
        return True
    except Exception as error:
        reason = f"the provider would not set the deletion backstop ({error})"
    with lab.db.write() as session:
        session.exec(
            update(Server)
            .where(col(Server.id).in_([s.id for s in todo]), Server.state == ServerState.PENDING)
            .values(retry_at=now + CAPACITY_WAIT, last_error=reason[:500])
        )
        audit(session, now, "system", "backstop_set", lease.id, "failed", reason=reason)
        warn_late(session, lease, reason, now)
        if once(session, f"backstop:{lease.id}", now):
            enqueue(
                session,
                Kind.ADMIN_ALERT,
                ADMIN,
                f"Lease #{lease.id} cannot be provisioned yet: {reason}. Nothing is created "
                "without it; labbot tries again until the provisioning deadline.",
                now,
                lease.id,
                alert="backstop",
            )
    return False


def _claim_creates(
    lab: Lab, servers: list[Server], now: datetime
) -> tuple[list[Server], dict[int, str]]:
    """One statement claims every pending row this pass will create; a pass running at the
    same time claims none of them twice. Each claimed server gets a fresh activity token in
    the same transaction (where servers report: commands.activity)."""
    with lab.db.write() as session:
        taken = set(
            session.exec(
                servers_moving(
                    ServerState.PENDING,
                    ServerState.CREATING,
                    create_attempts=Server.create_attempts + 1,
                    retry_at=now + CREATE_CLAIM,
                )
                .where(col(Server.id).in_([s.id for s in servers]))
                .returning(Server.id)
            ).scalars()
        )
        tokens = issue_tokens(session, sorted(taken), now) if lab.policy.activity_url else {}
    return [s for s in servers if s.id in taken], tokens


def _send_creates(
    lab: Lab, lease: Lease, servers: list[Server], keys: list[PublicKey], tokens: dict[int, str]
) -> list[Device | Exception]:
    """One provider call for a batch of the lease's servers: an answer for each."""
    specs = [
        DeviceSpec(
            hostname=server.hostname,
            plan=server.plan,
            metro=server.metro,
            os=lease.os,
            ssh_keys=tuple(k.line for k in keys),
            tags=(TAG, lease_tag(lease.id)),
            termination_time=lease.backstop_at,
            reporting=reporting(lab, tokens.get(server.id)),
        )
        for server in servers
    ]
    try:
        return lab.provider.create_many(specs)
    except Exception as error:
        return [error] * len(servers)


def _record_creates(
    lab: Lab,
    lease: Lease,
    answers: list[tuple[Server, Device | Exception]],
    keys: list[PublicKey],
    now: datetime,
) -> None:
    results = {server.id: result for server, result in answers}
    fingerprints = " ".join(k.fingerprint for k in keys)
    with lab.db.write() as session:
        rows = [r for r in locked_all(session, Server, results) if r.state == ServerState.CREATING]
        recorded = {
            k.server_id: k
            for k in session.exec(
                select(ServerKeys).where(col(ServerKeys.server_id).in_([r.id for r in rows]))
            ).all()
        }
        events: list[dict] = []
        for row in rows:
            events.append(_record_create(session, lab, lease, row, results[row.id], now))
            session.add(row)
            keys_row = recorded.get(row.id) or ServerKeys(server_id=row.id, fingerprints="")
            keys_row.fingerprints = fingerprints
            session.add(keys_row)
        audit_rows(session, events)


def _record_create(
    session: Session, lab: Lab, lease: Lease, row: Server, result: Device | Exception, now: datetime
) -> dict:
    """Record one create's answer on its row; returns its audit event (`audit_event`)."""
    if isinstance(result, Device):
        set_state(row, ServerState.PROVISIONING)
        row.provider_id, row.retry_at, row.last_error = result.id, None, ""
        return audit_event(
            now, "system", "create", lease.id, hostname=row.hostname, device=result.id
        )
    if isinstance(result, NoCapacity):
        # Waited out until the provisioning deadline fails the lease, not counted as an attempt.
        set_state(row, ServerState.PENDING)
        row.retry_at, row.last_error = now + CAPACITY_WAIT, str(result)[:500]
        warn_late(session, lease, f"the provider is out of capacity ({row.last_error})", now)
        return audit_event(now, "system", "capacity", lease.id, "waiting", hostname=row.hostname)
    retryable = not isinstance(result, ProviderError) or result.retryable
    exhausted = row.create_attempts >= lab.policy.create_attempts or not retryable
    set_state(row, ServerState.FAILED if exhausted else ServerState.PENDING)
    row.retry_at = None if exhausted else now + _backoff(row.create_attempts)
    row.last_error = str(result)[:500]
    warn_late(session, lease, f"creating its servers fails ({row.last_error})", now)
    return audit_event(
        now,
        "system",
        "create",
        lease.id,
        "failed",
        hostname=row.hostname,
        error=row.last_error,
        final=exhausted,
    )


def _backoff(attempts: int) -> timedelta:
    return min(timedelta(minutes=30), timedelta(seconds=30 * 2 ** max(0, attempts - 1)))


Answers = list[tuple[Server, Device | None]]


def _poll(lab: Lab, lease_ids: list[int]) -> Answers:
    """One list call per lease (paged by the provider), not one call per server: a 500-server
    lease is polled in a few requests. The calls go out from a pool. Returns the servers whose
    device is up, failed or gone (None), to be recorded."""
    polled = _servers_of(lab, lease_ids, ServerState.PROVISIONING)
    waiting = {i: rows for i, rows in polled.items() if rows}
    if not waiting:
        return []
    workers = max(1, min(lab.policy.provider_concurrency, len(waiting)))
    with ThreadPoolExecutor(workers, thread_name_prefix="poll") as pool:
        listed = dict(zip(waiting, pool.map(lambda i: _listed(lab, i), waiting), strict=True))
    return [
        (server, devices.get(server.provider_id))
        for lease_id, devices in listed.items()
        if devices is not None
        for server in waiting[lease_id]
        if server.provider_id not in devices
        or devices[server.provider_id].state in (DeviceState.ACTIVE, *GAVE_UP)
    ]


def _poll_and_decide(
    lab: Lab, lease_ids: list[int], answered: Answers, now: datetime
) -> list[tuple[int, datetime]]:
    """One transaction for the pass: record the polls' answers, then decide each lease once no
    server is on its way any more (active, or failed), or report progress. The leases are
    locked first, then their servers. Returns the leases activated whose end lies past the
    provider's backstop set at creation (servers that came up late), with their ends."""
    with lab.db.write() as session:
        leases = [
            lease
            for lease in locked_all(session, Lease, lease_ids)
            if lease.state == State.PROVISIONING
        ]
        up = [(s, d) for s, d in answered if d is not None and d.state == DeviceState.ACTIVE]
        _record_active(session, up, now)
        for server, device in answered:
            if device is None or device.state != DeviceState.ACTIVE:
                _record_gave_up(session, lab, server, device, now)
        session.flush()
        rows: dict[int, list[Server]] = defaultdict(list)
        for row in session.exec(
            select(Server).where(col(Server.lease_id).in_([lease.id for lease in leases]))
        ).all():
            rows[row.lease_id].append(row)
        co_owners = co_owners_of(session, [lease.id for lease in leases])
        changed = {s.lease_id for s, _ in answered}
        ready = [lease for lease in leases if _decide(session, lab, lease, rows[lease.id], now)]
        drafts = _activate_all(session, lab, ready, rows, co_owners, now)
        # Servers now billing against the holds of leases still on their way.
        on_the_way = [lease.id for lease in leases if lease.state == State.PROVISIONING]
        refresh_exactness_all(session, [i for i in on_the_way if i in changed])
        enqueue_all(session, drafts, now)
    return [
        (lease.id, lease.ends_at)
        for lease in ready
        if lease.backstop_at is not None and lab.policy.backstop(lease.ends_at) > lease.backstop_at
    ]


def _listed(lab: Lab, lease_id: int) -> dict[str, Device] | None:
    try:
        return {d.id: d for d in lab.provider.list(lease_tag(lease_id))}
    except Exception as error:
        log.warning("lease %s: polling failed, next pass retries: %s", lease_id, error)
        return None


def _record_active(session: Session, up: list[tuple[Server, Device]], now: datetime) -> None:
    """Servers whose device is up: active from now, metered. One conditional UPDATE takes
    those still provisioning (a racing pass records none twice)."""
    if not up:
        return
    won = set(
        session.scalars(
            servers_moving(ServerState.PROVISIONING, ServerState.ACTIVE, active_at=now)
            .where(col(Server.id).in_([s.id for s, _ in up]))
            .returning(Server.id)
        ).all()
    )
    leases = {
        lease.id: lease
        for lease in session.exec(
            select(Lease).where(col(Lease.id).in_({s.lease_id for s, _ in up}))
        ).all()
    }
    ips = {server.id: " ".join(device.ips) for server, device in up}
    rows = session.exec(select(Server).where(col(Server.id).in_(won))).all()
    for row in rows:
        row.ips = ips[row.id]
    meter_on(session, list(rows), leases)


def _record_gave_up(
    session: Session, lab: Lab, server: Server, device: Device | None, now: datetime
) -> None:
    """Failed or vanished while provisioning: delete what is left, try a fresh device."""
    row = locked(session, Server, server.id)
    if row is None or row.state != ServerState.PROVISIONING:
        return
    set_state(row, ServerState.DELETING if device is not None else ServerState.DELETED)
    row.retry_at = now
    if device is None:
        row.deleted_at = now
    retry = row.create_attempts < lab.policy.create_attempts
    session.add(
        Server(
            lease_id=row.lease_id,
            hostname=row.hostname,
            plan=row.plan,
            metro=row.metro,
            hourly_cents=row.hourly_cents,
            state=ServerState.PENDING if retry else ServerState.FAILED,
            create_attempts=row.create_attempts,
            retry_at=now if retry else None,
            last_error="device failed provisioning",
        )
    )
    audit(
        session,
        now,
        "system",
        "provision_failed",
        row.lease_id,
        hostname=row.hostname,
        device=row.provider_id,
        retry=retry,
    )
    session.add(row)


def _decide(session: Session, lab: Lab, lease: Lease, rows: list[Server], now: datetime) -> bool:
    """Whether the lease is ready to activate; otherwise fail it, or leave it waiting for the
    servers still on their way."""
    servers = [s for s in rows if s.state not in (ServerState.DELETING, ServerState.DELETED)]
    active = [s for s in servers if s.state == ServerState.ACTIVE]
    failed = [s for s in servers if s.state == ServerState.FAILED]
    timed_out = lease.backstop_at is not None and now >= _provision_deadline(lab, lease)
    waiting = len(servers) - len(active) - len(failed)
    if waiting and not timed_out:
        _progress(session, lease, len(active), now)
        lease.due_at = now + lab.policy.provision_poll
        return False
    if active and ((not failed and not waiting) or lease.allow_partial):
        return True
    _fail(session, lease, servers, now, timed_out)
    return False


def _late_backstop(lab: Lab, lease_id: int, ends_at: datetime, now: datetime) -> None:
    """Servers that came up late (a sweep that did not run for a while) end later than the
    backstop set at creation allowed for: move it, or tell the admins which servers the
    provider may delete early."""
    refused = move_backstop(lab, lease_id, ends_at, now)
    if refused is None:
        return
    _backstop_alert(
        lab,
        lease_id,
        refused,
        f"Lease #{lease_id} ends {when(ends_at)}, but {refused}: its servers "
        "may be deleted before the lease ends.",
        now,
    )


def _backstop_alert(lab: Lab, lease_id: int, reason: str, text: str, now: datetime) -> None:
    with lab.db.write() as session:
        audit(session, now, "system", "backstop_moved", lease_id, "failed", reason=reason)
        enqueue(session, Kind.ADMIN_ALERT, ADMIN, text, now, lease_id, alert="backstop")


def _provision_deadline(lab: Lab, lease: Lease) -> datetime:
    """Provisioning must be over by the planned end less the lease's length."""
    planned_end = lease.backstop_at - lab.policy.grace - lab.policy.backstop_margin
    return planned_end - timedelta(seconds=lease.duration_s)


def _activate_all(
    session: Session,
    lab: Lab,
    leases: list[Lease],
    rows: dict[int, list[Server]],
    co_owners: dict[int, list[str]],
    now: datetime,
) -> list[Draft]:
    """provisioning -> active for the leases whose servers came up, all at once: one
    conditional UPDATE moves them (they are locked, so none can have changed meanwhile; if one
    had, the whole pass rolls back), their holds are rewritten for the real window and count,
    and their ready DMs are returned to queue."""
    if not leases:
        return []
    moved = {lease.id for lease in move_all(session, leases, State.ACTIVE, starts_at=now)}
    for lease in leases:
        if lease.id not in moved:
            raise LostRace(lease.id, State.ACTIVE)
    up = {
        lease.id: [s for s in rows[lease.id] if s.state == ServerState.ACTIVE] for lease in leases
    }
    keys = keys_on_all(session, [(lease, up[lease.id], co_owners[lease.id]) for lease in leases])
    drafts = []
    for lease in leases:
        # A booking ends at its start plus its length, whenever its servers came up.
        begins = lease.book_start or now
        lease.ends_at = begins + timedelta(seconds=lease.duration_s + lease.extended_s)
        lease.due_at = next_due(lab.policy, now, lease.ends_at, sent=())
        asked, came_up = lease.count, Counter(s.metro for s in up[lease.id])
        lease.spread({metro: came_up[metro] for metro in lease.per_metro() if came_up[metro]})
        _give_up_stragglers(session, lease, rows[lease.id], now)
        drafts += _ready(session, lab, lease, up[lease.id], asked, keys[lease.id], co_owners, now)
    audit_all(session, now, "system", "active", {x.id: {"servers": x.count} for x in leases})
    hold_all(session, leases, lab.policy, now)  # the real window and count replace the approved
    place(session, leases, lab.policy, now)  # and on the capacity calendar, its days
    return drafts


def _give_up_stragglers(session: Session, lease: Lease, rows: list[Server], now: datetime) -> None:
    """Servers that never came up in a partial lease are given up (they bill nothing); the
    sweep deletes them, and devices that failed, while the lease runs."""
    given_up = [s.id for s in rows if s.state in COMING]
    if given_up:
        session.exec(
            servers_moving(COMING, ServerState.DELETING, retry_at=now).where(
                col(Server.id).in_(given_up)
            )
        )
    deletes = [
        s.retry_at for s in rows if s.state == ServerState.DELETING and s.retry_at is not None
    ]
    stray = min([*deletes, *([now] if given_up else [])], default=None)
    if stray is not None and stray < lease.due_at:
        lease.due_at = stray
    session.add(lease)


def _ready(
    session: Session,
    lab: Lab,
    lease: Lease,
    active: list[Server],
    asked: int,
    keys: list[str],
    co_owners: dict[int, list[str]],
    now: datetime,
) -> list[Draft]:
    """The ready DM, to the owner and each co-owner, and the files with every server. Whatever
    the lease's size, the DM says how to log in, which keys are on the servers and when the
    lease ends; it names the servers as far as it can and says where the rest are."""
    partial = f" ({lease.count} of the {asked} asked for)" if lease.count < asked else ""
    early = (
        f" ahead of its start, {when(lease.book_start)}"
        if lease.book_start and lease.book_start > now
        else ""
    )
    login = lab.plans().login_user(lease.os)
    counts = lease.per_metro()
    where = f" in {metro_words(counts)}" if len(counts) > 1 else ""
    intro = (
        f"Lease #{lease.id} is ready{early}{partial}{where}: log in as {login} "
        f"(`ssh {login}@ADDRESS`)."
    )
    ends = f"It ends {when(lease.ends_at)}; you will be reminded before then."
    order = list(counts)
    active = sorted(active, key=lambda s: (order.index(s.metro), s.id))
    listed = "\n".join(
        f"• {s.hostname}{f' ({s.metro})' if where else ''}: {s.ips or 'no IP yet'}"
        for s in active[:TEXT_LISTED]
    )
    if len(active) > TEXT_LISTED:
        listed += (
            f"\n• and {len(active) - TEXT_LISTED} more: every server is in the files sent with "
            f"this message, and `/lab show {lease.id}` pages through them."
        )
    servers = servers_summary(active)
    drafts = []
    for audience in audiences(session, lease, co_owners[lease.id]):
        drafts.append(
            Draft(
                Kind.READY,
                audience,
                f"{intro}\n{listed}\n{keys_words(keys)}\n{ends}",
                lease.id,
                {
                    "servers": servers,
                    "login": login,
                    "keys": keys,
                    "ends_at": lease.ends_at.isoformat(),
                    "intro": intro,
                    "ends": ends,
                },
            )
        )
        drafts.append(files_notice(lease.id, login, servers, audience))
    return drafts


def _fail(
    session: Session, lease: Lease, servers: list[Server], now: datetime, timed_out: bool
) -> None:
    why = "provisioning timed out" if timed_out else "the provider could not create the servers"
    move(session, lease, State.FAILED, due_at=now, ended_at=now, reason=why)
    release_holds(session, lease)
    forget(session, [lease.id])
    session.exec(
        servers_moving([ServerState.ACTIVE, *COMING], ServerState.DELETING, retry_at=now).where(
            Server.lease_id == lease.id
        )
    )
    audit(session, now, "system", "failed", lease.id, reason=why)
    enqueue(
        session,
        Kind.FAILED,
        owner(lease.owner),
        f"Sorry: lease #{lease.id} ({shape(lease)}) failed because {why}. Any server that came "
        "up is being deleted and no credit is held; you can file the request again.",
        now,
        lease.id,
    )
    enqueue(
        session,
        Kind.ADMIN_ALERT,
        ADMIN,
        f"Lease #{lease.id} failed to provision: {why}. Last errors: "
        + "; ".join(sorted({s.last_error for s in servers if s.last_error})[:3]),
        now,
        lease.id,
        alert="provision_failed",
    )


def _progress(session: Session, lease: Lease, active: int, now: datetime) -> None:
    """For large leases, tell the owner at 25/50/75% so a 500-server request is not silent."""
    if lease.count < LARGE:
        return
    for step in PROGRESS_STEPS:
        if active * 100 >= step * lease.count and once(session, f"progress:{lease.id}:{step}", now):
            enqueue(
                session,
                Kind.PROGRESS,
                owner(lease.owner),
                f"Lease #{lease.id}: {active} of {lease.count} servers active.",
                now,
                lease.id,
                active=active,
                total=lease.count,
            )
