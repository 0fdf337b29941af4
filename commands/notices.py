"""The outbox and the Notifier protocol.

A use case never talks to Slack. It writes a Notice row in the same transaction as the state
change the notice reports; after the commit, `deliver` hands pending notices to the Notifier.
A notice whose delivery fails stays pending with a retry time, and the sweep delivers it later,
so a Slack outage delays a message but never loses it and never undoes a state change.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import update
from sqlmodel import Session, col, select

from storage.db import Database
from storage.models import Notice

log = logging.getLogger(__name__)

CLAIM_FOR = timedelta(seconds=60)
CHUNK = 20  # notices claimed at once: sent well inside CLAIM_FOR even at Slack's pace
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


REVIEW = "review"
ADMIN = "admin"


def owner(user: str) -> str:
    return f"user:{user}"


@dataclass(frozen=True)
class Message:
    """A notice as the Notifier receives it. `text` is always a complete plain-language
    sentence (the console shows it, Slack uses it as the fallback); `data` carries the facts a
    richer renderer needs. `update_ref` is the reference of the message to edit in place, when
    this notice updates one (a review card after the decision)."""

    id: int
    kind: Kind
    audience: str
    text: str
    lease_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    update_ref: str | None = None

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
) -> Notice:
    notice = Notice(
        kind=kind,
        audience=audience,
        lease_id=lease_id,
        payload=json.dumps({"text": text, **data}, default=str),
        created_at=now,
        retry_at=now,
    )
    session.add(notice)
    return notice


def deliver(
    db: Database,
    notifier: Notifier,
    now: datetime,
    *,
    lease_id: int | None = None,
    limit: int = 200,
) -> int:
    """Deliver due notices, oldest first: all of them (the sweep), or one lease's (right after
    a use case, so concurrent use cases do not fight over each other's notices). Notices are
    claimed and their outcomes recorded a chunk at a time (two transactions per chunk, not two
    per notice); a chunk is small enough to be sent well inside its claim. Returns how many
    were delivered."""
    delivered = 0
    while delivered < limit:
        chunk = _claim(db, now, lease_id, min(CHUNK, limit - delivered))
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


def _claim(db: Database, now: datetime, lease_id: int | None, limit: int) -> list[Message]:
    """Take up to `limit` due notices for CLAIM_FOR, so a second deliverer (the sweep racing
    the post-commit delivery) skips them; a deliverer that dies leaves them to be retried after
    the claim lapses. Only the notices this conditional UPDATE changed are ours."""
    with db.write() as session:
        query = select(Notice.id).where(col(Notice.retry_at) <= now)
        if lease_id is not None:
            query = query.where(Notice.lease_id == lease_id)
        # Ordered by the indexed deadline first: the outbox keeps every delivered notice.
        due = session.exec(query.order_by(col(Notice.retry_at), col(Notice.id)).limit(limit)).all()
        if not due:
            return []
        taken = set(
            session.exec(
                update(Notice)
                .where(col(Notice.id).in_(due), col(Notice.retry_at) <= now)
                .values(retry_at=now + CLAIM_FOR, attempts=Notice.attempts + 1)
                .returning(Notice.id)
            ).scalars()
        )
        notices = session.exec(select(Notice).where(col(Notice.id).in_(taken))).all()
        by_id = {notice.id: notice for notice in notices}
        return [_message(session, by_id[i]) for i in due if i in by_id]


def _message(session: Session, notice: Notice) -> Message:
    payload = json.loads(notice.payload)
    return Message(
        id=notice.id,
        kind=Kind(notice.kind),
        audience=notice.audience,
        text=payload.pop("text"),
        lease_id=notice.lease_id,
        data=payload,
        update_ref=_ref_to_update(session, notice),
    )


def _ref_to_update(session: Session, notice: Notice) -> str | None:
    if notice.kind not in (Kind.CARD_DECIDED, Kind.CARD_UPDATE) or notice.lease_id is None:
        return None
    card_kinds = (Kind.REVIEW_CARD, Kind.EXTENSION_CARD)
    return session.exec(
        select(Notice.ref)
        .where(
            Notice.lease_id == notice.lease_id,
            col(Notice.kind).in_(card_kinds),
            col(Notice.ref).is_not(None),
        )
        .order_by(col(Notice.id).desc())
    ).first()


def _record(
    db: Database,
    now: datetime,
    sent: list[tuple[int, str | None]],
    failed: list[tuple[int, Exception]],
) -> None:
    with db.write() as session:
        for notice_id, ref in sent:
            session.exec(
                update(Notice)
                .where(col(Notice.id) == notice_id)
                .values(retry_at=None, delivered_at=now, ref=ref, last_error="")
            )
        for notice_id, error in failed:
            notice = session.get(Notice, notice_id)
            backoff = min(MAX_BACKOFF, timedelta(seconds=5 * 2 ** min(notice.attempts, 12)))
            notice.retry_at = now + backoff
            notice.last_error = f"{type(error).__name__}: {error}"[:500]
            session.add(notice)
            log.warning("notice %s not delivered (%s); retry after %s", notice_id, error, backoff)


class RecordingNotifier:
    """Keeps every message, for tests and the demo; optionally echoes them."""

    def __init__(self, echo: bool = False) -> None:
        self.messages: list[Message] = []
        self.echo = echo

    def deliver(self, message: Message) -> str | None:
        self.messages.append(message)
        if self.echo:
            print(f"  [{message.audience}] {message.text}")
        return f"rec-{message.id}"

    def texts(self, kind: Kind | None = None) -> list[str]:
        return [m.text for m in self.messages if kind is None or m.kind == kind]
