"""Rules: the lab's process as the foundation described it, as pure decisions: who is asking, the
order in which reviewers see requests, and the share of each month kept for other open-source
projects.

Nothing here touches the database: the use cases gather the numbers and these functions decide,
so hypothesis can drive them directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

FOUNDATION = "foundation"
MEMBER = "member"
OTHER = "other"
CLASSES = (FOUNDATION, MEMBER, OTHER)
# The classes the reserve is kept from: they rank first, so without a reserve they could take
# the whole month before anyone else is reviewed.
FAVOURED = frozenset({FOUNDATION, MEMBER})
LABELS = {
    FOUNDATION: "foundation project",
    MEMBER: "member organization",
    OTHER: "other open-source project",
}
BASIS_POINTS = 10_000  # 100%


@dataclass(frozen=True)
class Classified:
    """Who is asking, as claimed and as labbot could match it. An unmatched claim is not
    refused: it is flagged for reviewers (`note`) and ranks and is budgeted as `other`, because
    nothing unverified is acted on."""

    claimed: str
    effective: str
    org: str = ""
    maturity: str = ""
    note: str = ""

    def label(self) -> str:
        """`foundation project (graduated)`, `member organization Acme`, ..."""
        words = LABELS[self.effective]
        if self.maturity:
            words += f" ({self.maturity})"
        if self.effective == MEMBER:
            words += f" {self.org}"
        return words


def class_problem(claimed: str, org: str) -> str | None:
    """What is wrong with a claim as typed (not as matched), or None. These are refused, with a
    sentence saying what is accepted; an unmatched but well-formed claim is only flagged."""
    if claimed not in CLASSES:
        return f"class '{claimed}' is not one of {', '.join(CLASSES)}; for example class=other"
    if claimed == MEMBER and not org:
        return "say which member organization is asking, for example class=member org=Acme"
    return None


def classify(
    claimed: str, project: str, org: str, projects: Mapping[str, str], members: Iterable[str]
) -> Classified:
    """Match a well-formed claim against the configured lists (`projects`: name -> maturity)."""
    if claimed == FOUNDATION:
        maturity = _lookup(projects, project)
        if maturity is None:
            known = ", ".join(sorted(projects)) or "none are configured"
            return Classified(
                claimed,
                OTHER,
                note=f"'{project}' is not one of the foundation's projects ({known})",
            )
        return Classified(claimed, FOUNDATION, maturity=maturity or "")
    if claimed == MEMBER:
        names = list(members)
        found = next((m for m in names if m.lower() == org.lower()), None)
        if found is None:
            known = ", ".join(sorted(names)) or "none are configured"
            return Classified(
                claimed, OTHER, org=org, note=f"'{org}' is not a member organization ({known})"
            )
        return Classified(claimed, MEMBER, org=found)
    return Classified(OTHER, OTHER)


def _lookup(projects: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((m for p, m in projects.items() if p.lower() == wanted), None)


# --- the ranked queue ---


@dataclass(frozen=True)
class Waiting:
    """A pending request as the queue sees it: its class, when it was filed, what it costs in
    each month it touches."""

    lease_id: int
    applicant_class: str
    filed_at: datetime
    cost: Mapping[str, int]


def rank(waiting: Iterable[Waiting], order: tuple[str, ...] = CLASSES) -> list[Waiting]:
    """Class by the configured order (a class the order leaves out comes last), then the longest
    wait first, then the lower number: a total order, so every reviewer sees the same queue."""

    def key(item: Waiting) -> tuple[int, datetime, int]:
        place = order.index(item.applicant_class) if item.applicant_class in order else len(order)
        return place, item.filed_at, item.lease_id

    return sorted(waiting, key=key)


def left_after(ranked: list[Waiting], available: Mapping[str, int]) -> list[dict[str, int]]:
    """For each request in queue order, what each month it touches would have left if it and
    everything ranked above it were approved."""
    running = dict(available)
    result = []
    for item in ranked:
        for month, cents in item.cost.items():
            running[month] = running.get(month, 0) - cents
        result.append({month: running[month] for month in item.cost})
    return result


# --- the reserve ---


def parse_share(text: str) -> int:
    """`20%` (or `20`, `12.5%`) as basis points; ValueError naming what is accepted."""
    cleaned = text.strip().removesuffix("%").strip()
    try:
        whole, _, fraction = cleaned.partition(".")
        if not whole.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > 2:
            raise ValueError
        points = int(whole) * 100 + int((fraction or "0").ljust(2, "0"))
    except ValueError:
        points = -1
    if not 0 <= points <= BASIS_POINTS:
        raise ValueError(f"'{text}' is not a share from 0% to 100%; write it like 20%")
    return points


def format_share(points: int) -> str:
    whole, rest = divmod(points, 100)
    return f"{whole}.{rest:02d}%".replace(".00%", "%")


@dataclass(frozen=True)
class Reserve:
    """The share of a month kept for other open-source projects. `used` is what those projects
    spent or committed of it, plus what admins let favoured requests take; `kept = used + left`
    to the cent."""

    kept: int
    used: int
    left: int


def kept_cents(granted: int, share_points: int) -> int:
    return max(0, granted) * share_points // BASIS_POINTS


def reserve(granted: int, share_points: int, others_used: int, overridden: int) -> Reserve:
    kept = kept_cents(granted, share_points)
    used = min(kept, max(0, others_used) + max(0, overridden))
    return Reserve(kept, used, kept - used)


def reserve_shortfall(
    applicant_class: str,
    need: int,
    granted: int,
    share_points: int,
    favoured_used: int,
    overridden: int,
) -> int:
    """How far approving `need` cents for this class would eat into the month's reserve; 0 when
    it does not. Only foundation and member requests are held back: what is kept is theirs to
    leave, and an admin's override (a ledger row) is the only way past it."""
    if applicant_class not in FAVOURED or need <= 0:
        return 0
    allowance = granted - kept_cents(granted, share_points) + overridden
    return max(0, favoured_used + need - allowance)
