"""Intake: asking for servers, taking the question back, and the question lapsing when no reviewer
decides by its deadline (the sweep expires it)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, func, select

from commands.billing import format_cents, month_key
from commands.bookings import back_to_back, bookings_ahead, start_words
from commands.capacity import fit_words, forget, misfit, misfit_refusal
from commands.coowners import add_co_owners
from commands.credit import available_cents, estimate_cents
from commands.facts import lease_facts, quoted, shape, when
from commands.holds import planned_cost, release_holds
from commands.keys import request_keys
from commands.lab import (
    Code,
    Lab,
    Outcome,
    Refusal,
    audit,
    audit_all,
    move,
    move_all,
    not_found,
    owner_or_admin,
    refuse,
    wrong_state,
)
from commands.notices import REVIEW, Draft, Kind, enqueue, enqueue_all, owner
from commands.policy import Policy, RequestInput, check_request, default_os, not_offered
from commands.process import classify
from commands.queue import (
    applicant_label,
    place_in_queue,
    project_writeups,
    repo_words,
    requester_history,
)
from commands.routing import Choice, assess, card_facts, choose
from commands.starts import StartError, check_end, check_start, read_moment
from commands.states import State
from metal.provider import capacity_in
from storage.locks import locked, serialize
from storage.models import Lease


def request(lab: Lab, actor: str, req: RequestInput, now: datetime) -> Outcome:
    catalog = lab.plans()
    if not req.os:
        req = req.model_copy(update={"os": default_os(lab.policy, catalog)})
    try:
        req, book_start = _booked(req, lab.policy, now)
    except StartError as error:
        message = f"That request cannot be filed: {error}."
        return refuse(lab, now, actor, "request", Refusal(Code.BAD_START, message))
    errors = check_request(req, catalog, lab.policy)
    if errors:
        message = "That request cannot be filed: " + "; ".join(errors.values()) + "."
        absent = set(errors) == {"metro"} and errors["metro"] == not_offered(req, catalog)
        code = Code.NOT_OFFERED if absent else Code.BAD_INPUT
        return refuse(lab, now, actor, "request", Refusal(code, message), errors=errors)
    draft = _draft(lab, actor, req, now, book_start)
    offers = assess(lab, draft, now, [req.donor] if req.donor else None)
    if all(offer.stop for offer in offers):
        stops = "; ".join(offer.stop or "" for offer in offers)
        message = f"That request cannot be filed: no donor can pay for it: {stops}."
        return refuse(lab, now, actor, "request", Refusal(Code.NO_DONOR, message))
    with lab.db.write() as session:
        serialize(session, f"requests-of:{actor}")  # the count below decides the insert
        waiting = _pending_count(session, actor)
        keys, no_keys = request_keys(session, actor, req.ssh_key, req.saved_keys)
        problem = Refusal(Code.BAD_INPUT, no_keys) if no_keys else None
        if waiting >= lab.policy.pending_per_user:
            problem = Refusal(
                Code.TOO_MANY,
                f"you already have {waiting} requests waiting for a decision (the limit is "
                f"{lab.policy.pending_per_user}); cancel one or wait for a reviewer",
            )
        if book_start is not None and problem is None:
            problem = _hoarding(session, lab, draft.project, now)
        if problem is None:
            draft.ssh_key = keys
            choice = choose(session, lab, draft, offers, now, named=bool(req.donor))
            if short := misfit(session, lab.policy, draft, now):
                problem = misfit_refusal(draft, short, "That request")
        if problem is None:
            lease = _file(session, lab, draft, req.co_owners, choice, now)
    if problem and problem.code == Code.NO_CAPACITY:
        return refuse(lab, now, actor, "request", problem)
    if problem:
        filed = f"That request cannot be filed: {problem.message}."
        return refuse(lab, now, actor, "request", Refusal(problem.code, filed))
    lab.flush_notices(now, lease.id)
    flagged = (
        f" Note: {quoted(lease.class_note)}; reviewers see the claim flagged, and the request "
        "waits with other open-source projects until they decide."
        if lease.class_note
        else ""
    )
    return Outcome(
        True,
        f"Request #{lease.id} filed: {shape(lease)} for {lease.project}."
        f"{start_words(lease, lab.policy)} Reviewers have been asked; you will get a DM with "
        f"their decision.{flagged}"
        f"{_payer_words(lab, choice)}",
        lease.id,
    )


def _payer_words(lab: Lab, choice: Choice) -> str:
    """Who pays, said when the lab has several donors or none can pay now."""
    if choice.short:
        return f" Note: {choice.why}: {choice.stops_words()}; reviewers decide."
    if len(lab.policy.donors()) == 1:
        return ""
    return f" {choice.donor} pays: {choice.why}."


def _booked(
    req: RequestInput, policy: Policy, now: datetime
) -> tuple[RequestInput, datetime | None]:
    """The request with its duration (from `until=`, if given) and its start (None: as soon as
    approved), read in the requester's zone; StartError says what would be accepted."""
    if not (req.start or req.start_at):
        if req.end:
            raise StartError("`until=` needs a start: give `from=` too, or a duration alone")
        return req, None
    start = req.start_at or read_moment(req.start, req.zone, now)
    check_start(start, now, policy.book_ahead, req.zone)
    if req.end:
        end = read_moment(req.end, req.zone, now)
        check_end(start, end, req.zone)
        req = req.model_copy(update={"duration": end - start})
    return req, start


def _hoarding(session: Session, lab: Lab, project: str, now: datetime) -> Refusal | None:
    """The project already holds as many bookings ahead as the lab allows."""
    serialize(session, f"bookings-of:{project}")  # the count below decides the insert
    ahead = bookings_ahead(session, project, now)
    if ahead < lab.policy.bookings_per_project:
        return None
    return Refusal(
        Code.TOO_MANY,
        f"{project} already has {ahead} bookings ahead (the limit is "
        f"{lab.policy.bookings_per_project} a project); cancel one, or book again once one "
        "has started",
    )


def _pending_count(session: Session, user: str) -> int:
    return session.exec(
        select(func.count()).where(Lease.owner == user, Lease.state == State.PENDING)
    ).one()


def _draft(
    lab: Lab, actor: str, req: RequestInput, now: datetime, book_start: datetime | None
) -> Lease:
    """The lease a request would file, not yet billed to a donor nor saved. A booking not
    decided by its start lapses then."""
    decide_by = now + lab.policy.decide_within
    if book_start is not None:
        decide_by = min(decide_by, book_start)
    who = classify(
        req.applicant,
        req.project,
        req.org,
        lab.policy.maturities,
        lab.policy.members,
    )
    lease = Lease(
        state=State.PENDING,
        owner=actor,
        project=req.project.lower(),
        repo_url=req.repo_url,
        purpose=req.purpose,
        plan=req.plan,
        metro=req.metro,
        os=req.os,
        count=req.count,
        duration_s=int(req.duration.total_seconds()),
        allow_partial=req.allow_partial,
        created_at=now,
        decide_by=decide_by,
        due_at=decide_by,
        applicant_class=who.effective,
        claimed_class=who.claimed,
        member_org=who.org,
        class_note=who.note,
        repo_check_at=now,  # pending: asked of the forge after the commit, never before
        book_start=book_start,
    )
    lease.spread(req.per_metro())
    return lease


def _file(
    session: Session,
    lab: Lab,
    lease: Lease,
    co_owners: tuple[str, ...],
    choice: Choice,
    now: datetime,
) -> Lease:
    session.add(lease)
    session.flush()
    add_co_owners(session, lease, list(co_owners), lease.owner, now)
    duration = timedelta(seconds=lease.duration_s)
    estimate = estimate_cents(lease.count, lease.hourly_cents, duration, lab.policy)
    audit(
        session,
        now,
        lease.owner,
        "request",
        lease.id,
        estimate_cents=estimate,
        applicant=lease.claimed_class,
        class_note=lease.class_note,
        donor=lease.donor,
        donor_why=choice.why,
        donor_stops=list(choice.stops),
    )
    facts = lease_facts(lease, estimate)
    enqueue(
        session,
        Kind.REQUEST_RECEIVED,
        owner(lease.owner),
        f"Request #{lease.id} received: {shape(lease)} for {lease.project}, about "
        f"{format_cents(estimate)}.{start_words(lease, lab.policy)} Reviewers have been asked."
        + (
            f" Note: {quoted(lease.class_note)}; reviewers see the claim flagged."
            if lease.class_note
            else ""
        ),
        now,
        lease.id,
        **facts,
    )
    post_card(session, lab, lease, now)
    return lease


def post_card(
    session: Session, lab: Lab, lease: Lease, now: datetime, kind: Kind = Kind.REVIEW_CARD
) -> None:
    """Queue the reviewers' card for a pending request: posted at filing, and posted again as
    an edit (`Kind.CARD_UPDATE`) when the repository check comes in."""
    duration = timedelta(seconds=lease.duration_s + lease.extended_s)
    estimate = estimate_cents(lease.count, lease.hourly_cents, duration, lab.policy)
    news = f"Repository checked: {lease.repo_check}. " if kind == Kind.CARD_UPDATE else ""
    enqueue(
        session,
        kind,
        REVIEW,
        f"{news}<@{lease.owner}> asks for {shape(lease)} for {lease.project} "
        f"({quoted(lease.repo_url)}): {quoted(lease.purpose)}. "
        f"Cost about {format_cents(estimate)}.{start_words(lease, lab.policy)}",
        now,
        lease.id,
        **lease_facts(lease, estimate),
        **review_context(session, lab, lease, now),
    )


def review_context(session: Session, lab: Lab, lease: Lease, now: datetime) -> dict:
    """What a reviewer needs beside the request: the month's money after it, the requester's
    past leases, and whether the provider has the capacity."""
    need = planned_cost(lease, lab.policy, now)
    months = sorted(need) or [month_key(now)]
    left = available_cents(
        session, months, lab.policy, now, exclude_lease=lease.id, donor=lease.donor
    )
    left_after = {m: format_cents(left[m] - need.get(m, 0)) for m in months}
    try:
        capacity = capacity_in(lab.provider_of(lease.donor), lease.plan, lease.per_metro())
    except Exception:
        capacity = None
    return {
        "left_after": left_after,
        "history": requester_history(session, lease),
        "capacity": capacity,
        "calendar": fit_words(session, lab.policy, lease, now),
        "applicant": applicant_label(lease, lab.policy),
        "class_note": lease.class_note,
        "place": place_in_queue(session, lab.policy, lease.id, now),
        "repo_check": repo_words(lease),
        "writeups": project_writeups(session, lease),
        "book_start": when(lease.book_start) if lease.book_start else None,
        "back_to_back": back_to_back(session, lease),
        **card_facts(session, lab, lease, now),
    }


def cancel(lab: Lab, actor: str, lease_id: int, now: datetime) -> Outcome:
    with lab.db.write() as session:
        lease = locked(session, Lease, lease_id)
        problem = _cannot_cancel(lab, lease, actor, lease_id)
        if problem is None:
            booked = lease.state == State.APPROVED
            move(session, lease, State.CANCELLED, due_at=None, decided_at=now)
            if booked:  # approved ahead: everything it held goes back, nothing was billed
                release_holds(session, lease)
                forget(session, [lease.id])
            audit(session, now, actor, "cancel", lease_id, booking_approved=booked)
            enqueue(
                session,
                Kind.CARD_DECIDED,
                REVIEW,
                f"{'Booking' if booked else 'Request'} #{lease_id} was cancelled by its owner"
                + ("; its credit hold is released." if booked else "."),
                now,
                lease_id,
                decision="cancelled",
                by=actor,
            )
    if problem:
        return refuse(lab, now, actor, "cancel", problem, lease_id)
    lab.flush_notices(now, lease_id)
    released = " Its credit hold is released; nothing was charged." if booked else ""
    return Outcome(True, f"Request #{lease_id} cancelled.{released}", lease_id)


def _cannot_cancel(lab: Lab, lease: Lease | None, actor: str, lease_id: int) -> Refusal | None:
    """A pending request, or a booking approved ahead whose servers are not being prepared."""
    if lease is None:
        return not_found(lease_id)
    if lease.state != State.PENDING and not (
        lease.state == State.APPROVED and lease.book_start is not None
    ):
        return wrong_state(
            lease,
            "cancelled",
            "a pending request or a booking not yet started (release an active lease)",
        )
    return owner_or_admin(lab, lease, actor, "cancel")


def expire_requests(lab: Lab, leases: list[Lease], now: datetime) -> dict[int, str]:
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
