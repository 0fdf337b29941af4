"""Intake: reviewers decide: approve (which starts provisioning) or deny with a reason.

The decision is one conditional UPDATE on the lease, read FOR UPDATE, in a transaction that also
checks the month's money while holding the lab's row of each month the lease would bill in (FOR
UPDATE on PostgreSQL; SQLite's write lock does the same), so two reviewers clicking at once yield
one approval, and two approvals of different leases can never together over-commit a month.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from commands.bookings import next_due, start_words, waiting
from commands.budget import Limit, Shortfall, over_budget, past_words, record_overrides
from commands.capacity import misfit, misfit_refusal, place
from commands.facts import quoted, shape, when
from commands.holds import hold_approved
from commands.lab import Code, Lab, Outcome, Refusal, audit, move, not_found, refuse
from commands.notices import REVIEW, Kind, enqueue, owner
from commands.policy import (
    SELF_MARK,
    Approver,
    Policy,
    approver,
    self_approval_refused,
    too_long,
)
from commands.provision import provision
from commands.request import post_card
from commands.routing import allowed_donors, assess, choose, others_with_credit, terms_stop
from commands.states import State
from storage.locks import locked
from storage.models import Lease


def approve(
    lab: Lab, actor: str, lease_id: int, now: datetime, override: str | None = None
) -> Outcome:
    if not lab.roles.is_reviewer(actor):
        return refuse(lab, now, actor, "approve", _reviewers_only("approve"), lease_id)
    if override is not None and not lab.roles.is_admin(actor):
        return refuse(
            lab,
            now,
            actor,
            "approve",
            Refusal(Code.NOT_ALLOWED, "Only an admin can approve over the month's credit."),
            lease_id,
        )
    if override is not None and (long := too_long("reason", override)):
        return refuse(
            lab,
            now,
            actor,
            "approve",
            Refusal(Code.TOO_LONG, f"That override is too long: {long}."),
            lease_id,
        )
    with lab.db.write() as session:
        lease = locked(session, Lease, lease_id)
        problem = (
            _undecidable(lease, lease_id)
            or _start_passed(lease, now)
            or _self_approval(lab, lease, actor)
            or _donor_refuses(lab, lease, now)
        )
        over = [] if problem else over_budget(session, lease, lab.policy, now)
        if over and override is None:
            instead = others_with_credit(session, lab, lease, now)
            problem = _refusal(lease, over[0], lab.policy, instead)
        if problem is None and (short := misfit(session, lab.policy, lease, now)):
            problem = misfit_refusal(lease, short, f"Approving #{lease_id}")
        if problem is None:
            if override is not None:
                record_overrides(session, lease, over, actor, override, now)
            own = approver(lab.policy, lease.owner, actor) == Approver.SELF_ALLOWED
            ahead = waiting(lease, lab.policy, now)
            due = next_due(lease, lab.policy, now, told=False) if ahead else now
            move(session, lease, State.APPROVED, decided_by=actor, decided_at=now, due_at=due)
            hold_approved(session, lease, lab.policy, now)
            place(session, [lease], lab.policy, now)
            audit(session, now, actor, "approve", lease_id, override=override, self_approved=own)
            _tell_decision(session, lease, actor, now, "approved", "", own=own, policy=lab.policy)
    if problem:
        return refuse(lab, now, actor, "approve", problem, lease_id)
    if ahead:  # a booking: the sweep prepares its servers the lead time before its start
        lab.flush_notices(now, lease_id)
        return Outcome(
            True, f"Booking #{lease_id} approved.{start_words(lease, lab.policy)}", lease_id
        )
    # Approval starts provisioning at once; the sweep finishes it if this process dies here.
    provision(lab, "system", lease_id, now)
    lab.flush_notices(now, lease_id)
    return Outcome(True, f"Lease #{lease_id} approved; provisioning has started.", lease_id)


def deny(lab: Lab, actor: str, lease_id: int, reason: str, now: datetime) -> Outcome:
    if not lab.roles.is_reviewer(actor):
        return refuse(lab, now, actor, "deny", _reviewers_only("deny"), lease_id)
    reason = reason.strip()
    if not reason:
        return refuse(
            lab,
            now,
            actor,
            "deny",
            Refusal(
                Code.BAD_INPUT, f"Say why, so the requester can fix it: deny {lease_id} <reason>."
            ),
            lease_id,
        )
    if long := too_long("reason", reason):
        return refuse(
            lab,
            now,
            actor,
            "deny",
            Refusal(Code.TOO_LONG, f"That reason is too long: {long}."),
            lease_id,
        )
    with lab.db.write() as session:
        lease = locked(session, Lease, lease_id)
        problem = _undecidable(lease, lease_id)
        if problem is None:
            move(
                session,
                lease,
                State.DENIED,
                decided_by=actor,
                decided_at=now,
                reason=reason,
                due_at=None,
            )
            audit(session, now, actor, "deny", lease_id, reason=reason)
            _tell_decision(session, lease, actor, now, "denied", reason)
    if problem:
        return refuse(lab, now, actor, "deny", problem, lease_id)
    lab.flush_notices(now, lease_id)
    return Outcome(True, f"Lease #{lease_id} denied.", lease_id)


def choose_donor(lab: Lab, actor: str, lease_id: int, donor: str, now: datetime) -> Outcome:
    """A reviewer bills a pending request to another donor (the card's menu) before approving
    it: the donor's terms must allow it; its money is checked, as always, at the approval."""
    if not lab.roles.is_reviewer(actor):
        return refuse(
            lab, now, actor, "choose_donor", _reviewers_only("choose donors for"), lease_id
        )
    if lab.policy.donor(donor) is None:
        names = ", ".join(d.name for d in lab.policy.donors())
        return refuse(
            lab,
            now,
            actor,
            "choose_donor",
            Refusal(Code.BAD_INPUT, f"There is no donor '{donor[:40]}'; choose one of {names}."),
            lease_id,
        )
    with lab.db.read() as session:
        lease = session.get(Lease, lease_id)
    problem = _undecidable(lease, lease_id)
    offers = [] if problem else assess(lab, lease, now, [donor])
    if offers and offers[0].stop:
        problem = Refusal(Code.NO_DONOR, f"{donor} cannot pay for #{lease_id}: {offers[0].stop}.")
    if problem is None:
        with lab.db.write() as session:
            lease = locked(session, Lease, lease_id)
            problem = _undecidable(lease, lease_id)
            if problem is None:
                before = lease.donor
                choice = choose(session, lab, lease, offers, now, named=True)
                why = f"picked by <@{actor}> on the card" + (
                    f"; {choice.stops_words()}" if choice.short else ""
                )
                lease.version += 1
                session.add(lease)
                audit(
                    session,
                    now,
                    actor,
                    "choose_donor",
                    lease_id,
                    donor=donor,
                    before=before,
                    donor_why=why,
                    donor_stops=[],
                )
                post_card(session, lab, lease, now, Kind.CARD_UPDATE)
    if problem:
        return refuse(lab, now, actor, "choose_donor", problem, lease_id)
    lab.flush_notices(now, lease_id)
    lacks = f" For now {choice.stops_words()}." if choice.short else ""
    return Outcome(True, f"Request #{lease_id} will be paid by {donor}.{lacks}", lease_id)


def _donor_refuses(lab: Lab, lease: Lease, now: datetime) -> Refusal | None:
    """The lease's donor cannot pay for it as it would now run (its terms, its catalog, or its
    credit ending before the lease would): the reviewer is told which donors could."""
    donor = lab.policy.donor(lease.donor)
    stop = (
        f"its donor {lease.donor} is no longer in the configuration"
        if donor is None
        else terms_stop(lab, lease, donor, now)
    )
    if stop is None:
        return None
    could = allowed_donors(lab, lease, now)
    instead = f"pick {' or '.join(could)} on the card, or deny it" if could else "deny it"
    return Refusal(Code.NO_DONOR, f"#{lease.id} cannot be approved: {stop}; {instead}.")


def _reviewers_only(verb: str) -> Refusal:
    return Refusal(
        Code.NOT_ALLOWED, f"Only reviewers can {verb} requests; ask one in the review channel."
    )


def _undecidable(lease: Lease | None, lease_id: int) -> Refusal | None:
    if lease is None:
        return not_found(lease_id)
    if lease.state == State.PENDING:
        return None
    if lease.decided_by:
        return Refusal(
            Code.ALREADY_DECIDED,
            f"Lease #{lease_id} was already {_decision_word(lease)} by <@{lease.decided_by}> "
            f"at {when(lease.decided_at)}.",
        )
    return Refusal(
        Code.WRONG_STATE,
        f"Lease #{lease_id} is {lease.state}; only a pending request can be decided.",
    )


def _start_passed(lease: Lease, now: datetime) -> Refusal | None:
    """A booking undecided until its start lapses then (the sweep expires it); approving it
    late would give it less than it asked for."""
    if lease.book_start is None or now < lease.book_start:
        return None
    return Refusal(
        Code.WRONG_STATE,
        f"Booking #{lease.id} was to start {when(lease.book_start)}, which has passed; it "
        "lapses undecided, and its requester can book again.",
    )


def _self_approval(lab: Lab, lease: Lease, actor: str) -> Refusal | None:
    if approver(lab.policy, lease.owner, actor) == Approver.SELF_REFUSED:
        return Refusal(Code.SELF_APPROVAL, self_approval_refused(f"#{lease.id}"))
    return None


def _decision_word(lease: Lease) -> str:
    return "denied" if lease.state == State.DENIED else "approved"


def _refusal(lease: Lease, short: Shortfall, policy: Policy, instead: list[str]) -> Refusal:
    """Why the approval is refused, and what each limit leaves the reviewer to do (with the
    donors that have the credit for it, `instead`, to pick on the card)."""
    advice = {
        Limit.LAB: "Deny it, ask for fewer servers or hours, or an admin can",
        Limit.PROJECT: "An admin can",
        Limit.RESERVE: (
            "Approve requests from other projects first, ask for fewer servers or hours, "
            "or an admin can"
        ),
        Limit.EARMARK: "Ask for fewer servers or hours, or an admin can",
    }[short.limit]
    others = f" Or pick {' or '.join(instead)} on the card: it has the credit." if instead else ""
    return Refusal(
        short.code,
        f"Approving #{lease.id} would {past_words(short, lease, policy)}. {advice} approve it "
        f'with `approve {lease.id} override="why"`.{others}',
    )


def _tell_decision(
    session: Session,
    lease: Lease,
    actor: str,
    now: datetime,
    decision: str,
    reason: str,
    own: bool = False,
    policy: Policy | None = None,
) -> None:
    """The owner's DM and the card's new text; an approval of one's own request (allowed by
    the operator) says so on the card for everyone to see."""
    why = f" Reason: {quoted(reason)}" if reason else ""
    mark = SELF_MARK if own else ""
    enqueue(
        session,
        Kind.DECISION,
        owner(lease.owner),
        f"Your request #{lease.id} ({shape(lease)}) was {decision} by <@{actor}>.{why}"
        + (start_words(lease, policy) if policy else ""),
        now,
        lease.id,
        booking=bool(policy and lease.book_start),
        decision=decision,
        by=actor,
        reason=reason,
    )
    enqueue(
        session,
        Kind.CARD_DECIDED,
        REVIEW,
        f"Request #{lease.id} {decision}{mark} by <@{actor}> at {when(now)}.{why}",
        now,
        lease.id,
        decision=decision,
        by=actor,
        reason=reason,
    )
