"""SlackNotifier: the outbox's way out to Slack.

It is called after a commit (by the use case's `flush_notices`, on bolt's executor after the
ack, by the courier or by the sweep), never on the ack path. It names the rate-limited lanes each
message takes (a channel's posts, a Tier 3 method), so the outbox sends no faster than Slack
accepts, and it never waits: a 429 is raised to the outbox as `Throttled` with Slack's
Retry-After, which holds that lane alone; any other failure is raised as it is, and the outbox
keeps the notice for a later pass. A Slack outage delays a message but never loses it or undoes
the state change it reports.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks.cards import decided_card, extension_card, review_card
from bot.blocks.dms import dm_blocks, silent_lease
from bot.blocks.kit import Block, message, mrkdwn, section
from commands.notices import ADMIN, CARD_EDITS, REVIEW, Kind, Message, Rate, Throttled

log = logging.getLogger(__name__)

# Slack allows chat.postMessage about one message a second per channel "with short bursts";
# the burst it tolerates is not documented, so the outbox stays a message inside the fake's.
POST_EVERY = timedelta(seconds=1)
POST_BURST = 3
# Tier 3 (chat.update, conversations.open): 50+ calls a minute per workspace.
TIER_3 = timedelta(minutes=1) / 50
TIER_3_BURST = 4
UPDATES = Rate("chat.update", TIER_3, TIER_3_BURST)
OPENS = Rate("conversations.open", TIER_3, TIER_3_BURST)

Summary = Callable[[int], str | None]


class SlackNotifier:
    def __init__(
        self,
        client: WebClient,
        review_channel: str,
        admin_channel: str,
        *,
        summary: Summary | None = None,
    ) -> None:
        self.client = client
        self.channels = {REVIEW: review_channel, ADMIN: admin_channel}
        self.summary = summary
        self._dm_channels: dict[str, str] = {}
        self._lock = threading.Lock()

    def lanes(self, notice: Message) -> tuple[Rate, ...]:
        if notice.kind in CARD_EDITS and notice.update_ref:
            return (UPDATES,)
        if notice.kind == Kind.CARD_UPDATE:
            return ()  # no card to edit: nothing is sent
        post = Rate(self._post_lane(notice), POST_EVERY, POST_BURST)
        if notice.user and not self._known_dm(notice.user):
            return (OPENS, post)
        return (post,)

    def deliver(self, notice: Message) -> str | None:
        if notice.kind == Kind.CARD_DECIDED and notice.update_ref:
            return self._update_card(notice)
        if notice.kind == Kind.CARD_UPDATE:
            return self._refresh_card(notice)
        channel = self._channel_for(notice)
        answer = self._call(
            "chat_postMessage",
            self._post_lane(notice),
            channel=channel,
            **message(notice.text, self._blocks(notice)),
        )
        return f"{answer['channel']}:{answer['ts']}"

    def _post_lane(self, notice: Message) -> str:
        """A channel's posts: a DM's by its person (the same whether or not its D… id is
        known yet), the other audiences' by their channel."""
        return (
            f"chat.postMessage:{notice.user or self.channels.get(notice.audience, notice.audience)}"
        )

    def _known_dm(self, user: str) -> bool:
        with self._lock:
            return user in self._dm_channels

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
        channel = self._call("conversations_open", OPENS.lane, users=user)["channel"]["id"]
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
            UPDATES.lane,
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
            "chat_update",
            UPDATES.lane,
            channel=channel,
            ts=ts,
            **message(notice.text, review_card(notice)),
        )
        return notice.update_ref

    def _call(self, method: str, lane: str, **kwargs: Any) -> Any:
        """One Web API call; Slack's 429 becomes `Throttled` on `lane`, for the outbox."""
        try:
            return getattr(self.client, method)(**kwargs)
        except SlackApiError as error:
            if getattr(error.response, "status_code", 0) == 429:
                raise Throttled(lane, _retry_after(error)) from error
            raise


def _retry_after(error: SlackApiError) -> timedelta:
    """Slack's Retry-After (whole seconds); one second when it is missing or unreadable."""
    headers = getattr(error.response, "headers", {}) or {}
    value = str(headers.get("Retry-After") or headers.get("retry-after") or "1")
    return timedelta(seconds=float(value) if value.replace(".", "", 1).isdigit() else 1.0)
