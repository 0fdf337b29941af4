"""Kernel: the outbox and the Notifier protocol.

A use case never talks to Slack. It writes a Notice row in the same transaction as the state
change the notice reports; after the commit, `deliver` hands pending notices to the Notifier.
A notice whose delivery fails stays pending with a retry time, and the sweep delivers it later,
so a Slack outage delays a message but never loses it and never undoes a state change.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any, Protocol

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from storage.claims import claim
from storage.db import Database
from storage.locks import insert_once, locked
from storage.models import Notice

log = logging.getLogger(__name__)

CLAIM_FOR = timedelta(seconds=60)
CHUNK = 10  # notices claimed at once: sent well inside CLAIM_FOR even at Slack's pace
MAX_BACKOFF = timedelta(minutes=30)


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
    CLICK_FAILED = "click_failed"  # an acknowledged click a replica took over could not do


REVIEW = "review"
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


class Notifier(Protocol):
    def deliver(self, message: Message) -> str | None:
        """Send it; return a reference to the sent message (to edit it later) or None.
        Raise on failure: the outbox retries."""


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
    if not drafts:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(Notice).on_conflict_do_nothing(), [_row(d, now) for d in drafts])


def _row(draft: Draft, now: datetime) -> dict[str, Any]:
    payload = json.dumps({"text": draft.text, **draft.data}, default=str, sort_keys=True)
    key = json.dumps([draft.kind, draft.audience, draft.lease_id, payload])
    return {
        "kind": draft.kind,
        "audience": draft.audience,
        "lease_id": draft.lease_id,
        "payload": payload,
        "created_at": now,
        "retry_at": now,
        "key": hashlib.sha256(key.encode()).hexdigest(),
    }


def deliver(
    db: Database,
    notifier: Notifier,
    now: datetime,
    *,
    owner: str,
    lease_id: int | None = None,
    limit: int = 200,
) -> int:
    """Deliver due notices, oldest first: all of them (the sweep), or one lease's (right after
    a use case, so concurrent use cases do not fight over each other's notices). Notices are
    claimed by `owner` and their outcomes recorded a chunk at a time (two transactions per chunk,
    not two per notice), so replicas delivering at once share them; a chunk is small enough to be
    sent well inside its claim even when the Notifier waits out Slack's rate limits. Returns how
    many were delivered."""
    delivered = 0
    while delivered < limit:
        chunk = _claim(db, owner, now, lease_id, min(CHUNK, limit - delivered))
        if not chunk:
            return delivered
        sent: list[tuple[int, str | None]] = []
        failed: list[tuple[int, Exception]] = []
        for message in chunk:
            try:
                sent.append((message.id, notifier.deliver(message)))
            except Exception as error:
                failed.append((message.id, error))
        _record(db, now, sent, failed)
        delivered += len(sent)
        if failed:
            return delivered  # the rest waits for the next pass, as a failing Slack would
    return delivered


def _claim(
    db: Database, owner: str, now: datetime, lease_id: int | None, limit: int
) -> list[Message]:
    """Take due notices for CLAIM_FOR, so a second deliverer (the sweep racing the post-commit
    delivery, another replica) skips them; a deliverer that dies leaves them to be retried
    after the claim lapses."""
    due = [col(Notice.retry_at) <= now]
    if lease_id is not None:
        due.append(col(Notice.lease_id) == lease_id)
    with db.write() as session:
        ids = claim(
            session,
            Notice,
            *due,
            owner=owner,
            now=now,
            hold=CLAIM_FOR,
            # Ordered by the indexed deadline first: the outbox keeps every delivered notice.
            order_by=[col(Notice.retry_at), col(Notice.id)],
            limit=limit,
            attempts=Notice.attempts + 1,
        )
        notices = sorted(
            session.exec(select(Notice).where(col(Notice.id).in_(ids))).all(), key=lambda n: n.id
        )
        refs = _cards(session, [n.lease_id for n in notices if n.kind in CARD_EDITS])
        return [_message(notice, refs, partial(_checkpoint, db, notice.id)) for notice in notices]


CARD_EDITS = (Kind.CARD_DECIDED, Kind.CARD_UPDATE)  # notices that edit a review card in place


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
            col(Notice.kind).in_((Kind.REVIEW_CARD, Kind.EXTENSION_CARD)),
            col(Notice.ref).is_not(None),
        )
        .order_by(col(Notice.id))
    ).all()
    return dict(rows)  # in id order, so each lease keeps its latest card


def _record(
    db: Database,
    now: datetime,
    sent: list[tuple[int, str | None]],
    failed: list[tuple[int, Exception]],
) -> None:
    with db.write() as session:
        if sent:  # one executemany by primary key for the whole chunk
            session.execute(
                update(Notice),
                [
                    {
                        "id": notice_id,
                        "retry_at": None,
                        "delivered_at": now,
                        "ref": ref,
                        "last_error": "",
                        "claimed_until": None,
                    }
                    for notice_id, ref in sent
                ],
            )
        for notice_id, error in failed:
            notice = locked(session, Notice, notice_id)
            backoff = min(MAX_BACKOFF, timedelta(seconds=5 * 2 ** min(notice.attempts, 12)))
            notice.retry_at = now + backoff
            notice.claimed_until = None
            notice.last_error = f"{type(error).__name__}: {error}"[:500]
            session.add(notice)
            log.warning("notice %s not delivered (%s); retry after %s", notice_id, error, backoff)
