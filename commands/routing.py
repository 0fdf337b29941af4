"""Intake: which donor pays for a lease: the cheapest whose catalog, terms and dates allow it,
with credit left in every month it touches and room at its provider.

What cannot change while a request waits (a donor's catalog, its terms, its dates) is told apart
from what can (its money, its provider's room). A donor stopped by the first is never proposed.
When no donor has both the money and the room, the cheapest one whose terms allow the lease is
proposed anyway, with the reasons: reviewers see the request, and the approval's credit check
(which an admin may override) decides, as it did when the lab had one donor.

The provider calls (a catalog not read yet, capacity) happen before the write transaction
(`assess`); the money is read inside it (`choose`), the months locked by the credit check, so
nobody commits money between the choice and the filing or the approval.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from commands.billing import format_cents
from commands.budget import over_budget, past_words
from commands.capacity import misfit
from commands.donors import Donor, term_problem, window_stop
from commands.facts import when
from commands.holds import planned_cost, planned_window
from commands.lab import Lab
from metal.provider import short_metros
from storage.models import AuditEvent, Lease

CHOSEN = ("request", "choose_donor")  # the audited actions that record why a donor was chosen


@dataclass(frozen=True)
class Offer:
    """One donor as a lease's payer, before its money is read."""

    donor: str
    hourly_cents: int = 0  # what it charges for one server of the lease's plan, an hour
    stop: str | None = None  # its catalog, a term or its dates: it cannot pay for the lease
    busy: str | None = None  # its provider says it has no room for the lease now


@dataclass(frozen=True)
class Choice:
    """The donor proposed for a lease (None: no donor's terms allow it), why, and what stopped
    each of the others, in words."""

    donor: str | None
    why: str
    stops: tuple[str, ...] = ()
    short: bool = False  # even the donor proposed lacks the credit or the room now

    def stops_words(self) -> str:
        return "; ".join(self.stops)


def terms_stop(lab: Lab, lease: Lease, donor: Donor, now: datetime) -> str | None:
    """What keeps `donor` from paying for `lease` whatever its money: its catalog (the plan in
    the metro, the OS), its terms (plans, architectures, classes), or its dates against the
    lease's window (its servers bill until the end plus grace). None when nothing does."""
    try:
        catalog = lab.catalog_of(donor.name)
    except Exception:
        return f"{donor.name}'s provider cannot say now what it offers"
    absent = [m for m in lease.per_metro() if not catalog.plan_available(lease.plan, m)]
    if absent:
        return f"{donor.name} does not offer {lease.plan} in {', '.join(absent)}"
    if lease.os and catalog.oses and lease.os not in catalog.oses:
        return f"{donor.name} does not offer the OS {lease.os}"
    arch = catalog.plans[lease.plan].arch
    problem = term_problem(donor, lease.plan, arch, lease.applicant_class)
    if problem:
        return problem
    start, end = planned_window(lease, lab.policy, now)
    stop = window_stop(donor, start, end)
    if stop is None:
        return None
    if start < stop and stop == donor.starts_at:
        return f"{donor.name}'s credit starts only at {when(stop)}"
    return f"{donor.name}'s credit ends at {when(stop)}, before the lease would"


def assess(lab: Lab, lease: Lease, now: datetime, names: list[str] | None = None) -> list[Offer]:
    """Each donor (or each of `names`) as payer of `lease`, cheapest first (the configuration's
    order among equals). Asks providers for their catalog and capacity (the donors' at once,
    so a slow provider costs its own wait, not the sum): call it outside any transaction."""
    donors = [d for d in lab.policy.donors() if names is None or d.name in names]
    if len(donors) == 1:
        offers = [_offer(lab, lease, donors[0], now)]
    else:
        with ThreadPoolExecutor(max(1, len(donors)), thread_name_prefix="route") as pool:
            offers = list(pool.map(lambda donor: _offer(lab, lease, donor, now), donors))
    return sorted(offers, key=lambda offer: (offer.stop is not None, offer.hourly_cents))


def _offer(lab: Lab, lease: Lease, donor: Donor, now: datetime) -> Offer:
    stop = terms_stop(lab, lease, donor, now)
    if stop is not None:
        return Offer(donor.name, stop=stop)
    price = lab.catalog_of(donor.name).plans[lease.plan].hourly_cents
    return Offer(donor.name, price, busy=_busy(lab, lease, donor.name))


def _busy(lab: Lab, lease: Lease, donor: str) -> str | None:
    try:
        provider = lab.provider_of(donor)
    except Exception:
        return None  # a provider that cannot say is not taken for one that is full
    counts = lease.per_metro()
    short = short_metros(provider, lease.plan, counts)
    if not short:
        return None
    where = ", ".join(f"{counts[m]} {lease.plan} in {m}" for m in short)
    return f"{donor} has no room for {where} now"


def choose(
    session: Session, lab: Lab, lease: Lease, offers: list[Offer], now: datetime, named: bool
) -> Choice:
    """The donor proposed among `offers` (from `assess`): the first with credit left in every
    month the lease touches (the books' one credit check, with the lease billed to it) and room
    (at its provider now, and in its own capacity calendar).
    Sets the lease's donor and price to it. Call inside the write transaction that files or
    changes the lease."""
    stops = [offer.stop for offer in offers if offer.stop]
    open_ = [offer for offer in offers if offer.stop is None]
    lacks: dict[str, str] = {}
    broke: set[str] = set()  # the donors without the credit (the others lack only room)
    for offer in open_:
        _bill(lease, offer)
        over = over_budget(session, lease, lab.policy, now)
        if over:
            lacks[offer.donor] = (
                f"{offer.donor} would {past_words(over[0], lease, lab.policy, after_donor=True)}"
            )
            broke.add(offer.donor)
        elif offer.busy:
            lacks[offer.donor] = offer.busy
        elif full := misfit(session, lab.policy, lease, now, own_only=True):
            lacks[offer.donor] = (
                f"{offer.donor}'s own capacity has no room for {lease.per_metro()[full.metro]} "
                f"{lease.plan} in "
                f"{full.metro} from {when(full.at)}"
            )
        else:
            why = _why(lab, lease, offer, named, now)
            return Choice(offer.donor, why, (*stops, *lacks.values()))
    if not open_:
        return Choice(None, "no donor can pay for it", tuple(stops))
    cheapest = next((offer for offer in open_ if offer.donor not in broke), open_[0])
    _bill(lease, cheapest)
    why = (
        f"no donor has the credit and the room for it now; {cheapest.donor} is the cheapest "
        "whose terms allow it" + (" and that has the credit" if cheapest.donor not in broke else "")
    )
    return Choice(cheapest.donor, why, (*stops, *lacks.values()), short=True)


def others_with_credit(session: Session, lab: Lab, lease: Lease, now: datetime) -> list[str]:
    """The donors other than the lease's whose terms allow it and that have the credit for it
    now, at their own prices, for a refusal to name (the lease itself is left as it is). Call
    inside the write transaction of the refusal; the catalogs are those already read."""
    found = []
    for donor in lab.policy.donors():
        if donor.name == lease.donor or terms_stop(lab, lease, donor, now) is not None:
            continue
        price = lab.catalog_of(donor.name).plans[lease.plan].hourly_cents
        probe = Lease(**{**lease.model_dump(), "donor": donor.name, "hourly_cents": price})
        if not over_budget(session, probe, lab.policy, now):
            found.append(donor.name)
    return found


def _bill(lease: Lease, offer: Offer) -> None:
    """Bill `lease` to the offer's donor at its price."""
    lease.donor = offer.donor
    lease.hourly_cents = offer.hourly_cents


def _why(lab: Lab, lease: Lease, offer: Offer, named: bool, now: datetime) -> str:
    months = ", ".join(sorted(planned_cost(lease, lab.policy, now)))
    price = f"{format_cents(offer.hourly_cents)}/h a server"
    if named:
        return f"named on the request; it can pay for {months} at {price}"
    if len(lab.policy.donors()) == 1:
        return f"the lab's one donor; it can pay for {months} at {price}"
    return f"the cheapest donor with credit for {months} and room, at {price}"


def card_facts(session: Session, lab: Lab, lease: Lease, now: datetime) -> dict:
    """What the reviewers' card says of a request's donor: who pays, for which months, why it
    was chosen and what stopped the others (as the filing or the last pick recorded them), and
    the donors a reviewer may pick instead (those whose terms allow the lease)."""
    said = session.exec(
        select(AuditEvent.details)
        .where(
            AuditEvent.lease_id == lease.id,
            col(AuditEvent.action).in_(CHOSEN),
            AuditEvent.outcome == "ok",
        )
        .order_by(col(AuditEvent.id).desc())
        .limit(1)
    ).first()
    recorded = json.loads(said) if said else {}
    return {
        "donor": lease.donor,
        "donor_months": sorted(planned_cost(lease, lab.policy, now)),
        "donor_why": recorded.get("donor_why", ""),
        "donor_stops": recorded.get("donor_stops", []),
        "donors": allowed_donors(lab, lease, now),
    }


def allowed_donors(lab: Lab, lease: Lease, now: datetime) -> list[str]:
    """The donors whose catalog, terms and dates allow `lease`, whatever their money: those a
    reviewer may pick on the card."""
    return [
        donor.name for donor in lab.policy.donors() if terms_stop(lab, lease, donor, now) is None
    ]


def past_donor_end(lab: Lab, lease: Lease, ends_at: datetime) -> datetime | None:
    """The end of the credit of `lease`'s donor, when the lease running to `ends_at` (its
    servers billing until the grace after it) would pass it; None when it would not."""
    donor = lab.policy.donor(lease.donor)
    if donor is None or donor.ends_at is None or ends_at + lab.policy.grace <= donor.ends_at:
        return None
    return donor.ends_at
