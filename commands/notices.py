"""Kernel: the outbox and the Notifier protocol.

A use case never talks to Slack. It writes a Notice row in the same transaction as the state
change the notice reports; after the commit, `deliver` hands pending notices to the Notifier.
A notice whose delivery fails stays pending with a retry time, and the sweep delivers it later,
so a Slack outage delays a message but never loses it and never undoes a state change.

The outbox also sends no faster than the far end accepts. A Notifier names the rate-limited
lanes each message takes (`Rate`: a Slack channel, a Web API method); the lanes' bookings are
rows every replica shares (`Pace`), and a message whose lane is full, or that the far end
refused as too fast (`Throttled`, Slack's 429 with Retry-After), waits for that lane alone.
Notices are claimed an audience at a time, so one audience's notices go out in the order they
were queued, however many replicas deliver (docs/pacing.md). A delivery of several calls (an
upload) checkpoints what it got in its notice's `ref`, so the pass that retries it, after a
failure or once its lane has room, finishes it instead of starting again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any, Protocol

from sqlalchemy import String, bindparam, cast, func, literal, or_, update
from sqlmodel import Session, col, select

from storage.claims import claim, give_back
from storage.db import Database
from storage.locks import insert_all_once, insert_once, locked, locked_all
from storage.models import Claim, Notice, Pace

log = logging.getLogger(__name__)

CLAIM_FOR = timedelta(seconds=60)
CHUNK = 10  # notices taken at once: sent well inside CLAIM_FOR (nothing in a pass waits)
MAX_BACKOFF = timedelta(minutes=30)
AUDIENCE = "outbox:"  # + audience: the Claim row held by whoever sends that audience's notices


class Kind(StrEnum):
    REQUEST_RECEIVED = "request_received"
    REVIEW_CARD = "review_card"
    CARD_DECIDED = "card_decided"
    CARD_UPDATE = "card_update"
    DECISION = "decision"
    REQUEST_EXPIRED = "request_expired"
    PROVISIONING = "provisioning"
    PROGRESS = "progress"
    READY = "ready"
    SERVER_FILES = "server_files"  # every server of a lease, as files in its people's DMs
    REMINDER = "reminder"
    EXTENDED = "extended"
    EXTENSION_CARD = "extension_card"
    RELEASED = "released"
    RECLAIMED = "reclaimed"
    FAILED = "failed"
    WRITEUP_REQUEST = "writeup_request"
    ADMIN_ALERT = "admin_alert"
    SHARED = "shared"
    SILENT_LEASE = "silent_lease"
    IDLE_ASKED = "idle_asked"  # a lease's people asked whether they still use its idle servers
    IDLE_ESCALATED = "idle_escalated"  # the reviewers told nobody answered that question
    IDLE_RECLAIMED = "idle_reclaimed"  # a lease reclaimed early for being idle, with its refund
    DAY_BEFORE = "day_before"  # a booking starts tomorrow
    BOOKING_LATE = "booking_late"  # a booking's servers cannot be created in time
    CLICK_FAILED = "click_failed"  # an acknowledged click a replica took over could not do


REVIEW = "review"
# The review channel's card edits (a decision, a repository check's news) form a queue of their
# own: an edit of a card already posted goes on chat.update's lane at once, instead of waiting
# behind every card still to be posted (at a card a second, 2,000 cards filed in a burst held
# each decision's edit for half an hour, while chat.update's lane stood idle). An edit whose
# card is still to be posted waits for it (`_send`).
REVIEW_EDITS = "review:edits"
ADMIN = "admin"


def owner(user: str) -> str:
    return f"user:{user}"


@dataclass(frozen=True)
class Message:
    """A notice as the Notifier receives it. `text` is always a complete plain-language
    sentence (the console shows it, Slack uses it as the fallback); `data` carries the facts a
    richer renderer needs. `update_ref` is the reference of the message to edit in place, when
    this notice updates one (a review card after the decision).

    A delivery made of several calls (an upload: the bytes, then sharing them) records what it
    got before the step that cannot be taken back, with `checkpoint`; a later attempt finds it
    in `ref` and finishes the delivery instead of starting it again."""

    id: int
    kind: Kind
    audience: str
    text: str
    lease_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    update_ref: str | None = None
    ref: str | None = None
    checkpoint: Callable[[str], None] = field(default=lambda ref: None, compare=False)

    @property
    def user(self) -> str | None:
        return self.audience.removeprefix("user:") if self.audience.startswith("user:") else None


@dataclass(frozen=True)
class Rate:
    """A rate-limited way out (a Slack channel, a Web API method): `burst` messages at once,
    then one every `every`."""

    lane: str
    every: timedelta
    burst: int = 1

    @property
    def room(self) -> timedelta:
        """How far ahead of now the lane may be booked and still take a message."""
        return self.every * (self.burst - 1)


class Throttled(Exception):
    """The far end refused a message as too fast (Slack's 429): `lane` takes nothing more for
    `retry_after`, and the message waits with it."""

    def __init__(self, lane: str, retry_after: timedelta) -> None:
        super().__init__(f"{lane} is rate-limited for {retry_after.total_seconds():g}s")
        self.lane = lane
        self.retry_after = retry_after


class Notifier(Protocol):
    def lanes(self, message: Message) -> tuple[Rate, ...]:
        """The rate-limited ways out `deliver` would take for this message now (none: it may
        go at once)."""

    def deliver(self, message: Message) -> str | None:
        """Send it; return a reference to the sent message (to edit it later) or None.
        Raise `Throttled` when the far end says too fast, anything else on another failure:
        the outbox retries."""


def enqueue(
    session: Session,
    kind: Kind,
    audience: str,
    text: str,
    now: datetime,
    lease_id: int | None = None,
    **data: Any,
) -> bool:
    """Queue a notice in the caller's transaction; False when the same notice (same kind,
    audience, lease and content) is already queued. A Slack post has no idempotency key, so this
    unique key is what keeps a step done twice from telling someone twice."""
    return insert_once(session, Notice, **_row(Draft(kind, audience, text, lease_id, data), now))


@dataclass(frozen=True)
class Draft:
    """A notice to queue with others in one statement (`enqueue_all`)."""

    kind: Kind
    audience: str
    text: str
    lease_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


def enqueue_all(session: Session, drafts: list[Draft], now: datetime) -> None:
    """Queue many notices in the caller's transaction with one statement (the sweep's passes);
    the same unique key as `enqueue` skips any already queued."""
    insert_all_once(session, Notice, [_row(d, now) for d in drafts])


def _row(draft: Draft, now: datetime) -> dict[str, Any]:
    payload = json.dumps({"text": draft.text, **draft.data}, default=str, sort_keys=True)
    audience = _queue_of(draft.kind, draft.audience)
    key = json.dumps([draft.kind, audience, draft.lease_id, payload])
    return {
        "kind": draft.kind,
        "audience": audience,
        "lease_id": draft.lease_id,
        "payload": payload,
        "created_at": now,
        "retry_at": now,
        "key": hashlib.sha256(key.encode()).hexdigest(),
    }


def _queue_of(kind: Kind, audience: str) -> str:
    """The audience a notice is queued and ordered in: the review channel's card edits apart
    from its posts (REVIEW_EDITS), every other notice in its own audience."""
    return REVIEW_EDITS if audience == REVIEW and kind in CARD_EDITS else audience


def deliver(
    db: Database,
    notifier: Notifier,
    now: datetime,
    *,
    owner: str,
    lease_id: int | None = None,
    limit: int = 200,
) -> int:
    """Deliver due notices, oldest first: all of them (the sweep, the courier), or those of the
    audiences one lease's notices go to (right after a use case). `owner` claims an audience at
    a time and sends its due notices in the order they were queued, so replicas delivering at
    once share the audiences and never reorder one. A message whose lane is full, or that the
    far end throttled, holds its audience until the lane has room: nothing queued after it for
    the same audience overtakes it, and other audiences go on. Nothing here waits on the clock;
    the next pass at a later `now` sends what has room then. Returns how many were delivered."""
    delivered = 0
    while delivered < limit:
        batch = _claim(db, owner, now, lease_id, min(CHUNK, limit - delivered))
        if batch is None:
            return delivered
        result = _send(db, notifier, now, batch)
        _record(db, owner, now, result)
        delivered += len(result.sent)
        if result.failed or not batch.messages:
            # The rest waits for the next pass, as a failing Slack would; or another
            # deliverer took the audiences first.
            return delivered
    return delivered


def undelivered(db: Database) -> int:
    """How many notices wait in the outbox (for their lane's room, or for a retry)."""
    with db.read() as session:
        return session.exec(select(func.count()).where(col(Notice.retry_at).is_not(None))).one()


@dataclass
class _Batch:
    audiences: list[str]
    messages: list[Message]
    owed_cards: set[int] = field(default_factory=set)  # leases whose card is still to be posted


@dataclass
class _Sent:
    """What a batch came to: sent (with the message's reference), failed, or waiting for its
    lanes until a time, which holds its audience until then."""

    audiences: list[str]
    sent: list[tuple[int, str | None]] = field(default_factory=list)
    failed: list[tuple[int, Exception]] = field(default_factory=list)
    waiting: dict[int, tuple[datetime, str]] = field(default_factory=dict)
    held: dict[str, datetime] = field(default_factory=dict)


def _claim(
    db: Database, owner: str, now: datetime, lease_id: int | None, limit: int
) -> _Batch | None:
    """Claim, for CLAIM_FOR, the audiences with due notices that nobody holds (another
    deliverer, or a lane with no room yet), and take their due notices in queue order. A
    deliverer that dies leaves its audiences to be taken over after the claim lapses."""
    with db.write() as session:
        audiences = _due_audiences(session, now, lease_id, limit)
        if not audiences:
            return None
        names = [AUDIENCE + audience for audience in audiences]
        insert_all_once(session, Claim, [{"name": name} for name in names])
        mine = [
            name.removeprefix(AUDIENCE)
            for name in claim(
                session, Claim, col(Claim.name).in_(names), owner=owner, now=now, hold=CLAIM_FOR
            )
        ]
        # Ordered by `id + 0`, not `id`: SQLite would otherwise walk the primary key, every
        # notice ever delivered, to find the few due ones; this way it reads the due notices
        # by the `retry_at` index and sorts them.
        notices = session.exec(
            select(Notice)
            .where(col(Notice.audience).in_(mine), col(Notice.retry_at) <= now)
            .order_by(col(Notice.id) + 0)
            .limit(limit)
        ).all()
        edited = [n.lease_id for n in notices if n.kind in CARD_EDITS]
        refs = _cards(session, edited)
        return _Batch(
            mine,
            [_message(notice, refs, partial(_checkpoint, db, notice.id)) for notice in notices],
            _owed_cards(session, edited),
        )


def _due_audiences(session: Session, now: datetime, lease_id: int | None, limit: int) -> list[str]:
    """Up to `limit` audiences with due notices and no holder, the longest due first. Read in
    the order of the indexed `retry_at` (delivered notices have none), a few notices per
    audience wanted, so a backlog of thousands costs no more than a quiet outbox."""
    held = col(Claim.name) == cast(literal(AUDIENCE), String) + col(Notice.audience)
    query = (
        select(Notice.audience)
        .outerjoin(Claim, held)
        .where(
            col(Notice.retry_at) <= now,
            or_(col(Claim.claimed_until).is_(None), col(Claim.claimed_until) <= now),
        )
        .order_by(col(Notice.retry_at), col(Notice.id))
        .limit(limit * CHUNK)
    )
    if lease_id is not None:
        query = query.where(col(Notice.lease_id) == lease_id)
    return list(dict.fromkeys(session.exec(query).all()))[:limit]


def _send(db: Database, notifier: Notifier, now: datetime, batch: _Batch) -> _Sent:
    result = _Sent(batch.audiences)
    cards: dict[int | None, str] = {}  # cards sent in this batch, for edits queued behind them
    for message in batch.messages:
        if message.audience in result.held:
            continue  # queued behind a message that waits: it waits too
        if message.kind in CARD_EDITS and message.lease_id in cards:
            message = replace(message, update_ref=cards[message.lease_id])
        elif message.kind in CARD_EDITS and message.lease_id in batch.owed_cards:
            # Its card waits for the channel's lane: the edit follows it, with the edits
            # queued after it, rather than post a card of its own.
            result.held[message.audience] = now + CARD_WAIT
            result.waiting[message.id] = (now + CARD_WAIT, "waiting for its card to be posted")
            continue
        rates = notifier.lanes(message)
        room_at = _book(db, rates, now) if rates else None
        why = ""
        if room_at is None:
            try:
                ref = notifier.deliver(message)
                result.sent.append((message.id, ref))
                if message.kind in CARDS and ref:
                    cards[message.lease_id] = ref
                continue
            except Throttled as error:
                room_at, why = _throttled(db, rates, message, error, now)
            except Exception as error:
                result.failed.append((message.id, error))
                continue
        result.held[message.audience] = room_at
        result.waiting[message.id] = (room_at, why)
    return result


def _throttled(
    db: Database, rates: tuple[Rate, ...], message: Message, error: Throttled, now: datetime
) -> tuple[datetime, str]:
    """The far end refused `message` as too fast: its lane waits out Retry-After, and so does
    the message; returns until when, and why."""
    room_at = now + error.retry_after
    _pause(db, rates, error.lane, room_at)
    log.warning(
        "Slack throttled %s for %ss: notice %s and the rest for %s wait until %s",
        error.lane,
        f"{error.retry_after.total_seconds():g}",
        message.id,
        message.audience,
        f"{room_at:%H:%M:%S}",
    )
    return room_at, f"Throttled: {error}"


def _book(db: Database, rates: tuple[Rate, ...], now: datetime) -> datetime | None:
    """Book one message on every lane of `rates`, or on none: None when booked, else the time
    they will all have room. Each lane is held while it is decided, so replicas booking at
    once never overbook it."""
    with db.write() as session:
        insert_all_once(session, Pace, [{"lane": r.lane, "booked_until": now} for r in rates])
        lanes = {p.lane: p for p in locked_all(session, Pace, [r.lane for r in rates])}
        room_at = max(lanes[r.lane].booked_until - r.room for r in rates)
        if room_at > now:
            return room_at
        for rate in rates:
            lane = lanes[rate.lane]
            lane.booked_until = max(lane.booked_until, now) + rate.every
            session.add(lane)
    return None


def _pause(db: Database, rates: tuple[Rate, ...], lane: str, until: datetime) -> None:
    """The far end refused a message on `lane` until `until`: book the lane so that it takes
    one message then, and the next ones at its rate, rather than a burst."""
    room = next((r.room for r in rates if r.lane == lane), timedelta(0))
    with db.write() as session:
        insert_all_once(session, Pace, [{"lane": lane, "booked_until": until + room}])
        paced = locked(session, Pace, lane)
        paced.booked_until = max(paced.booked_until, until + room)
        session.add(paced)


CARDS = (Kind.REVIEW_CARD, Kind.EXTENSION_CARD)  # notices that post a card reviewers decide on
CARD_EDITS = (Kind.CARD_DECIDED, Kind.CARD_UPDATE)  # notices that edit a review card in place
CARD_WAIT = timedelta(seconds=1)  # an edit whose card is still owed looks again after this


def _message(notice: Notice, cards: dict[int, str], checkpoint: Callable[[str], None]) -> Message:
    payload = json.loads(notice.payload)
    edits = notice.kind in CARD_EDITS and notice.lease_id is not None
    return Message(
        id=notice.id,
        kind=Kind(notice.kind),
        audience=notice.audience,
        text=payload.pop("text"),
        lease_id=notice.lease_id,
        data=payload,
        update_ref=cards.get(notice.lease_id) if edits else None,
        ref=notice.ref,
        checkpoint=checkpoint,
    )


def _checkpoint(db: Database, notice_id: int, ref: str) -> None:
    """What a delivery got so far, kept at once in its own transaction: a deliverer that dies
    after it, or fails, leaves the next attempt the reference to finish from."""
    with db.write() as session:
        session.exec(update(Notice).where(col(Notice.id) == notice_id).values(ref=ref))


def _cards(session: Session, lease_ids: list[int | None]) -> dict[int, str]:
    """The reference of each lease's latest review or extension card that was sent, in one
    query."""
    wanted = [i for i in lease_ids if i is not None]
    if not wanted:
        return {}
    rows = session.exec(
        select(Notice.lease_id, Notice.ref)
        .where(
            col(Notice.lease_id).in_(wanted),
            col(Notice.kind).in_(CARDS),
            col(Notice.ref).is_not(None),
        )
        .order_by(col(Notice.id))
    ).all()
    return dict(rows)  # in id order, so each lease keeps its latest card


def _owed_cards(session: Session, lease_ids: list[int | None]) -> set[int]:
    """Of these leases, those with a card still waiting to be posted (for its lane's room; a
    card whose post failed is retried apart and holds up no edit, as any failed notice)."""
    wanted = [i for i in lease_ids if i is not None]
    if not wanted:
        return set()
    return set(
        session.exec(
            select(Notice.lease_id).where(
                col(Notice.lease_id).in_(wanted),
                col(Notice.kind).in_(CARDS),
                col(Notice.retry_at).is_not(None),
                col(Notice.attempts) == 0,
            )
        ).all()
    )


def _record(db: Database, owner: str, now: datetime, result: _Sent) -> None:
    with db.write() as session:
        if result.sent:  # one executemany by primary key for the whole batch
            session.connection().execute(
                update(Notice.__table__)
                .where(Notice.__table__.c.id == bindparam("notice_id"))
                .values(
                    retry_at=None,
                    delivered_at=now,
                    ref=bindparam("sent_ref"),
                    last_error="",
                    attempts=Notice.__table__.c.attempts + 1,
                ),
                [{"notice_id": notice_id, "sent_ref": ref} for notice_id, ref in result.sent],
            )
        for notice_id, error in result.failed:
            notice = locked(session, Notice, notice_id)
            notice.attempts += 1
            backoff = min(MAX_BACKOFF, timedelta(seconds=5 * 2 ** min(notice.attempts, 12)))
            notice.retry_at = now + backoff
            notice.last_error = f"{type(error).__name__}: {error}"[:500]
            session.add(notice)
            log.warning("notice %s not delivered (%s); retry after %s", notice_id, error, backoff)
        for notice_id, (room_at, why) in result.waiting.items():
            values = {"retry_at": room_at, **({"last_error": why[:500]} if why else {})}
            session.execute(update(Notice).where(col(Notice.id) == notice_id).values(**values))
        for audience, room_at in result.held.items():
            session.execute(
                update(Claim)
                .where(col(Claim.name) == AUDIENCE + audience, col(Claim.claimed_by) == owner)
                .values(claimed_until=room_at)
            )
        done = [AUDIENCE + a for a in result.audiences if a not in result.held]
        give_back(session, Claim, done, owner)
