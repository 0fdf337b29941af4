"""Kernel: things that must happen once: a progress message, a credit alert, the last reconcile."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import Session, col

from storage.locks import insert_once
from storage.models import Marker


def once(session: Session, key: str, now: datetime) -> bool:
    """True the first time `key` is seen (inside the caller's write transaction)."""
    return insert_once(session, Marker, key=key, at=now)


def forget(session: Session, key: str) -> bool:
    """Remove `key`, so that `once` is true for it again; True if it was there."""
    return session.exec(delete(Marker).where(col(Marker.key) == key)).rowcount == 1


def last(session: Session, key: str) -> datetime | None:
    marker = session.get(Marker, key)
    return marker.at if marker else None


def stamp(session: Session, key: str, now: datetime) -> None:
    """Record when `key` last happened; replicas stamping the same key at once both succeed."""
    if not insert_once(session, Marker, key=key, at=now):
        session.exec(update(Marker).where(col(Marker.key) == key).values(at=now))
