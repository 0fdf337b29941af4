"""Intake: longer leases. Inside policy and within the month's money an extension takes effect at
once; beyond policy it becomes a pending extension that reviewers decide on a card."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, delete

from commands.backstop import move_backstop
from commands.budget import over_budget, past_words, record_overrides
from commands.capacity import misfit, misfit_refusal, place
from commands.coowners import audiences, co_owner_ids
from commands.durations import format_duration
from commands.facts import quoted, shape, when
from commands.holds import hold
from commands.lab import (
    Code,
    Lab,
    Outcome,
    Refusal,
    audit,
    not_found,
    owner_or_admin,
    refuse,
    set_state,
    wrong_state,
)
from commands.notices import REVIEW, Kind, enqueue, owner
from commands.policy import (
    HOUR,
    SELF_MARK,
    Approver,
    approver,
    check_extension,
    self_approval_refused,
    too_long,
)
from commands.reminders import next_due, reminder_times
from commands.routing import past_donor_end
from commands.states import ExtensionState, State
from storage.locks import locked
from storage.models import Lease, PendingExtension, SentReminder


def extend(lab: Lab, actor: str, lease_id: int, extra: timedelta, now: datetime) -> Outcome:
    with lab.db.read() as session:
        lease = session.get(Lease, lease_id)
        sharing = co_owner_ids(session, lease_id)
    problem = _cannot_extend(lab, lease, actor, lease_id, extra, sharing)
    beyond = None if problem else check_extension(_total(lease), extra, lab.policy)
    if problem is None and beyond is None:
        problem = _move_backstop(lab, lease_id, extra, now)
    if problem is None:
        with lab.db.write() as session:
            lease = locked(session, Lease, lease_id)
            if beyond is not None:
                ext = _ask_reviewers(session, lease, actor, extra, beyond, now)
                answer = (
                    f"Extending #{lease_id} by {format_duration(extra)} needs a reviewer: "
                    f"{beyond}. Reviewers have been asked (extension request {ext.id})."
                )
            else:
                problem = _apply(session, lab, lease, extra, actor, now, override=None)
                answer = _extended_words(lease, extra)
    if problem:
        return refuse(lab, now, actor, "extend", problem, lease_id)
    lab.flush_notices(now, lease_id)
    return Outcome(True, answer, lease_id)


def decide_extension(
    lab: Lab,
    actor: str,
    extension_id: int,
    approve: bool,
    now: datetime,
    reason: str = "",
    override: str | None = None,
) -> Outcome:
    if not lab.roles.is_reviewer(actor):
        return refuse(
            lab,
            now,
            actor,
            "decide_extension",
            Refusal(Code.NOT_ALLOWED, "Only reviewers can decide extensions."),
        )
    if long := too_long("reason", reason) or too_long("reason", override or ""):
        return refuse(
            lab,
            now,
            actor,
            "decide_extension",
            Refusal(Code.TOO_LONG, f"That is too long: {long}."),
        )
    with lab.db.read() as session:
        pending = session.get(PendingExtension, extension_id)
    if approve and pending is not None and (own := _self_approval(lab, pending, actor)):
        return refuse(lab, now, actor, "decide_extension", own, pending.lease_id)
    moved = None
    if approve and pending is not None and pending.state == ExtensionState.PENDING:
        moved = _move_backstop(lab, pending.lease_id, timedelta(seconds=pending.seconds), now)
    with lab.db.write() as session:
        # The lease before the extension: row locks are always taken in that order.
        ext = session.get(PendingExtension, extension_id)
        lease = locked(session, Lease, ext.lease_id) if ext else None
        ext = locked(session, PendingExtension, extension_id)
        problem = _undecidable(ext, lease, extension_id) or moved
        if problem is None and approve:
            problem = _apply(
                session, lab, lease, timedelta(seconds=ext.seconds), actor, now, override
            )
        if problem is None:
            set_state(ext, ExtensionState.APPROVED if approve else ExtensionState.DENIED)
            ext.decided_by, ext.reason = actor, reason
            session.add(ext)
            _tell_extension_decision(session, lease, ext, actor, now)
    if problem:
        return refuse(lab, now, actor, "decide_extension", problem, ext.lease_id if ext else None)
    lab.flush_notices(now, ext.lease_id)
    return Outcome(
        True, f"Extension {extension_id} of lease #{ext.lease_id} {ext.state}.", ext.lease_id
    )


def _total(lease: Lease) -> timedelta:
    return timedelta(seconds=lease.duration_s + lease.extended_s)


def _cannot_extend(
    lab: Lab,
    lease: Lease | None,
    actor: str,
    lease_id: int,
    extra: timedelta,
    co_owners: list[str],
) -> Refusal | None:
    if lease is None:
        return not_found(lease_id)
    if lease.state != State.ACTIVE:
        return wrong_state(lease, "extended", "an active lease")
    if extra <= timedelta(0):
        return Refusal(
            Code.BAD_INPUT, "An extension must be longer than zero, for example `extend 5 24h`."
        )
    # Reviewers too: on a silent team's behalf (they are told of leases nobody answers).
    return owner_or_admin(lab, lease, actor, "extend", co_owners, reviewers=True) or _past_donor(
        lab, lease, extra
    )


def _past_donor(lab: Lab, lease: Lease, extra: timedelta) -> Refusal | None:
    """No lease runs past the end of its donor's credit: the refusal says when that is and how
    much longer the lease may still run."""
    end = past_donor_end(lab, lease, lease.ends_at + extra)
    if end is None:
        return None
    room = (end - lab.policy.grace - lease.ends_at) // HOUR * HOUR
    most = (
        f"it can be extended by at most {format_duration(room)}"
        if room > timedelta(0)
        else "it cannot be extended; file a new request, which another donor can pay for"
    )
    return Refusal(
        Code.DONOR_ENDS,
        f"Extending #{lease.id} by {format_duration(extra)} would run past the end of "
        f"{lease.donor}'s credit at {when(end)}, which pays for this lease; {most}.",
    )


def _apply(
    session: Session,
    lab: Lab,
    lease: Lease,
    extra: timedelta,
    actor: str,
    now: datetime,
    override: str | None,
) -> Refusal | None:
    """Lengthen the lease if it then fits every limit of the books (or an admin overrides)."""
    if lease.state != State.ACTIVE:
        return wrong_state(lease, "extended", "an active lease")
    if donor_ends := _past_donor(lab, lease, extra):
        return donor_ends
    probe = Lease(
        **{
            **lease.model_dump(),
            "extended_s": lease.extended_s + int(extra.total_seconds()),
            "ends_at": lease.ends_at + extra,
        }
    )
    over = over_budget(session, probe, lab.policy, now)
    if over and override is None:
        return Refusal(
            over[0].code,
            f"Extending #{lease.id} by {format_duration(extra)} would "
            f"{past_words(over[0], lease, lab.policy)}. Ask for a shorter extension or release "
            "servers you do not need.",
        )
    # The capacity calendar has no override: the servers are not there to be had.
    if short := misfit(session, lab.policy, probe, now, leaving=lease.id):
        return misfit_refusal(probe, short, f"Extending #{lease.id} by {format_duration(extra)}")
    if override is not None:
        record_overrides(session, lease, over, actor, override, now)
    # Reminders still ahead of the new end are owed again.
    session.exec(delete(SentReminder).where(SentReminder.lease_id == lease.id))
    lease.extended_s = probe.extended_s
    lease.ends_at = probe.ends_at
    sent = _sent_before(lease, now, lab)
    for offset in sent:
        session.add(SentReminder(lease_id=lease.id, offset_s=offset, sent_at=now))
    lease.due_at = next_due(lab.policy, lease.starts_at, lease.ends_at, sent)
    lease.version += 1
    session.add(lease)
    hold(session, lease, lab.policy, now)
    place(session, [lease], lab.policy, now)
    audit(
        session,
        now,
        actor,
        "extend",
        lease.id,
        seconds=int(extra.total_seconds()),
        override=override,
    )
    for audience in audiences(session, lease):
        enqueue(
            session,
            Kind.EXTENDED,
            audience,
            _extended_words(lease, extra),
            now,
            lease.id,
            ends_at=lease.ends_at.isoformat(),
        )
    return None


def _extended_words(lease: Lease, extra: timedelta) -> str:
    return (
        f"Lease #{lease.id} extended by {format_duration(extra)}; "
        f"it now ends {when(lease.ends_at)}."
    )


def _sent_before(lease: Lease, now: datetime, lab: Lab) -> list[int]:
    """Offsets whose reminder time under the new end has already passed: not sent again."""
    return [o for o, at in reminder_times(lab.policy, lease.starts_at, lease.ends_at) if at <= now]


def _ask_reviewers(
    session: Session, lease: Lease, actor: str, extra: timedelta, why: str, now: datetime
) -> PendingExtension:
    ext = PendingExtension(
        lease_id=lease.id, seconds=int(extra.total_seconds()), requested_by=actor, requested_at=now
    )
    session.add(ext)
    session.flush()
    audit(session, now, actor, "extend_requested", lease.id, extension=ext.id, reason=why)
    enqueue(
        session,
        Kind.EXTENSION_CARD,
        REVIEW,
        f"<@{actor}> asks to extend lease #{lease.id} ({shape(lease)}, {lease.project}) by "
        f"{format_duration(extra)}: {why}.",
        now,
        lease.id,
        extension_id=ext.id,
        extra=format_duration(extra),
        project=lease.project,
        owner=lease.owner,
    )
    return ext


def _self_approval(lab: Lab, ext: PendingExtension, actor: str) -> Refusal | None:
    if approver(lab.policy, ext.requested_by, actor) == Approver.SELF_REFUSED:
        return Refusal(Code.SELF_APPROVAL, self_approval_refused(f"extension {ext.id}"))
    return None


def _undecidable(
    ext: PendingExtension | None, lease: Lease | None, extension_id: int
) -> Refusal | None:
    if ext is None or lease is None:
        return Refusal(Code.NOT_FOUND, f"There is no extension request {extension_id}.")
    if ext.state != ExtensionState.PENDING:
        return Refusal(
            Code.ALREADY_DECIDED,
            f"Extension {extension_id} was already {ext.state} by <@{ext.decided_by}>.",
        )
    return None


def _tell_extension_decision(
    session: Session, lease: Lease, ext: PendingExtension, actor: str, now: datetime
) -> None:
    extra = format_duration(ext.seconds)
    why = f" Reason: {quoted(ext.reason)}" if ext.reason else ""
    own = ext.state == ExtensionState.APPROVED and actor == ext.requested_by
    audit(
        session, now, actor, f"extension_{ext.state}", lease.id, extension=ext.id, self_approved=own
    )
    mark = SELF_MARK if own else ""
    enqueue(
        session,
        Kind.CARD_DECIDED,
        REVIEW,
        f"Extension of #{lease.id} by {extra} {ext.state}{mark} by <@{actor}> at {when(now)}.{why}",
        now,
        lease.id,
        decision=ext.state,
        by=actor,
        extension_id=ext.id,
    )
    if ext.state == ExtensionState.DENIED:
        enqueue(
            session,
            Kind.DECISION,
            owner(lease.owner),
            f"Your extension of lease #{lease.id} by {extra} was denied by <@{actor}>.{why}",
            now,
            lease.id,
            decision=ExtensionState.DENIED,
            by=actor,
        )


def _move_backstop(lab: Lab, lease_id: int, extra: timedelta, now: datetime) -> Refusal | None:
    with lab.db.read() as session:
        lease = session.get(Lease, lease_id)
    if lease is None or lease.ends_at is None:
        return None
    refused = move_backstop(lab, lease_id, lease.ends_at + extra, now)
    if refused is None:
        return None
    return Refusal(
        Code.PROVIDER_REFUSED,
        f"The extension cannot be granted: {refused}; the lease still ends as planned.",
    )
