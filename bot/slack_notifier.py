"""SlackNotifier: the outbox's way out to Slack.

It is called after a commit (by the use case's `flush_notices`, on bolt's executor after the
ack, or by the sweep), never on the ack path. It retries what Slack asks it to retry (429 after
Retry-After, 5xx with backoff) for a few seconds at most, then raises: the outbox keeps the
notice and the sweep resends it, so a Slack outage delays a message but never loses it or
undoes the state change it reports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks.cards import decided_card, extension_card, review_card
from bot.blocks.dms import dm_blocks, silent_lease
from bot.blocks.kit import Block, message, mrkdwn, section
from commands.notices import ADMIN, REVIEW, Kind, Message

log = logging.getLogger(__name__)

RETRY_BUDGET = 3.0  # seconds a single delivery may spend waiting on Slack before giving up
FIRST_BACKOFF = 0.25

Summary = Callable[[int], str | None]


class SlackNotifier:
    def __init__(
        self,
        client: WebClient,
        review_channel: str,
        admin_channel: str,
        *,
        summary: Summary | None = None,
        retry_budget: float = RETRY_BUDGET,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.channels = {REVIEW: review_channel, ADMIN: admin_channel}
        self.summary = summary
        self.retry_budget = retry_budget
        self.sleep = sleep
        self._dm_channels: dict[str, str] = {}
        self._lock = threading.Lock()

    def deliver(self, notice: Message) -> str | None:
        if notice.kind == Kind.CARD_DECIDED and notice.update_ref:
            return self._update_card(notice)
        if notice.kind == Kind.CARD_UPDATE:
            return self._refresh_card(notice)
        channel = self._channel_for(notice)
        answer = self._call(
            "chat_postMessage", channel=channel, **message(notice.text, self._blocks(notice))
        )
        return f"{answer['channel']}:{answer['ts']}"

    def _channel_for(self, notice: Message) -> str:
        if notice.user:
            return self._dm_channel(notice.user)
        channel = self.channels.get(notice.audience)
        if channel is None:
            raise ValueError(f"notice {notice.id} has an audience nobody reads: {notice.audience}")
        return channel

    def _dm_channel(self, user: str) -> str:
        """chat.update needs the D… id of a DM, so open the conversation instead of posting
        to the user id; the id never changes, so ask once per user."""
        with self._lock:
            known = self._dm_channels.get(user)
        if known:
            return known
        channel = self._call("conversations_open", users=user)["channel"]["id"]
        with self._lock:
            self._dm_channels[user] = channel
        return channel

    def _blocks(self, notice: Message) -> list[Block]:
        if notice.kind == Kind.REVIEW_CARD:
            return review_card(notice)
        if notice.kind == Kind.EXTENSION_CARD:
            return extension_card(notice)
        if notice.kind == Kind.SILENT_LEASE:
            return silent_lease(notice)
        if notice.user:
            return dm_blocks(notice)
        return [section(mrkdwn(notice.text))]

    def _update_card(self, notice: Message) -> str:
        channel, _, ts = notice.update_ref.partition(":")
        summary = self.summary(notice.lease_id) if self.summary and notice.lease_id else None
        self._call(
            "chat_update",
            channel=channel,
            ts=ts,
            **message(notice.text, decided_card(notice, summary)),
        )
        return notice.update_ref

    def _refresh_card(self, notice: Message) -> str | None:
        """A pending request's card with news (the repository check): edited in place. With
        no card to edit (its post never went out) there is nothing to refresh."""
        if not notice.update_ref:
            return None
        channel, _, ts = notice.update_ref.partition(":")
        self._call(
            "chat_update", channel=channel, ts=ts, **message(notice.text, review_card(notice))
        )
        return notice.update_ref

    def _call(self, method: str, **kwargs: Any) -> Any:
        """One Web API call, retried within the budget; raises once the budget is spent."""
        deadline = time.monotonic() + self.retry_budget
        backoff = FIRST_BACKOFF
        while True:
            try:
                return getattr(self.client, method)(**kwargs)
            except SlackApiError as error:
                wait = _retry_after(error, backoff)
                if wait is None or time.monotonic() + wait > deadline:
                    raise
                log.info("%s: Slack said %s; retrying in %.2fs", method, _status(error), wait)
                self.sleep(wait)
                backoff *= 2


def _status(error: SlackApiError) -> int:
    return getattr(error.response, "status_code", 0) or 0


def _retry_after(error: SlackApiError, backoff: float) -> float | None:
    """How long Slack wants us to wait, or None when retrying would not help (a 4xx such as
    channel_not_found is a bug or a setting, not a hiccup)."""
    status = _status(error)
    if status == 429:
        headers = getattr(error.response, "headers", {}) or {}
        value = headers.get("Retry-After") or headers.get("retry-after") or "1"
        return float(value) if str(value).replace(".", "", 1).isdigit() else 1.0
    if status >= 500:
        return backoff
    return None
