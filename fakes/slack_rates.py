"""Slack's rate limits, as the fake Slack enforces them where a test turns them on.

chat.postMessage allows about one message a second per channel, with short bursts; the other
methods are in tiers (Tier 3 about 50 calls a minute, Tier 4 about 100), per workspace, and
views.publish per user. Beyond that Slack answers HTTP 429 with `Retry-After` in whole seconds.
Slack does not publish its burst sizes: the ones below are the fake's, and labbot's outbox stays
a message inside them (bot.slack_notifier). Time is whatever clock the fake was given, so a test
steps it instead of sleeping.

The budget is a generic cell rate algorithm, as the outbox's own pacing: a call at `now` is taken
while its scope is booked at most `(burst - 1) * every` ahead of `now`, and books `every` more.
A refused call books nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    every: float  # seconds between calls at the steady rate
    burst: int
    per: str | None = None  # the parameter that splits the budget (channel, user); None: one


_EPSILON = 1e-6  # sums of float intervals drift by less than this

TIER_3 = 60 / 50
TIER_4 = 60 / 100

LIMITS: Mapping[str, Limit] = {
    "chat.postMessage": Limit(1.0, 4, per="channel"),
    "chat.update": Limit(TIER_3, 5),
    "conversations.open": Limit(TIER_3, 5),
    "views.open": Limit(TIER_4, 10),
    "views.update": Limit(TIER_4, 10),
    "views.push": Limit(TIER_4, 10),
    "views.publish": Limit(TIER_4, 10, per="user_id"),
    "files.getUploadURLExternal": Limit(TIER_4, 10),
    "files.completeUploadExternal": Limit(TIER_4, 10),
    "files.info": Limit(TIER_4, 10),
}


class RateModel:
    """The budgets of one workspace on one clock."""

    def __init__(self, clock: Callable[[], float], limits: Mapping[str, Limit]) -> None:
        self.clock = clock
        self.limits = dict(limits)
        self._booked: dict[tuple[str, str], float] = {}

    def scope(self, method: str) -> str | None:
        """The parameter that splits `method`'s budget, or None."""
        limit = self.limits.get(method)
        return limit.per if limit else None

    def admit(self, method: str, scope: str = "") -> int | None:
        """None when Slack would take the call now (and it is counted), else the whole seconds
        of Retry-After."""
        limit = self.limits.get(method)
        if limit is None:
            return None
        now = self.clock()
        booked = self._booked.get((method, scope), now)
        room_at = booked - (limit.burst - 1) * limit.every
        if room_at > now + _EPSILON:
            return max(1, math.ceil(room_at - now))
        self._booked[method, scope] = max(booked, now) + limit.every
        return None
