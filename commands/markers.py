"""Things that must happen once: a progress message, a credit alert, the last reconcile."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from storage.locks import insert_once
from storage.models import Marker


def once(session: Session, key: str, now: datetime) -> bool:
    """True the first time `key` is seen (inside the caller's write transaction)."""
    return insert_once(session, Marker, key=key, at=now)


def stamp(session: Session, key: str, now: datetime) -> None:
    marker = session.get(Marker, key) or Marker(key=key, at=now)
    marker.at = now
    session.add(marker)
