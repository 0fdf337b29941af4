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
import urllib.request
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks.cards import decided_card, extension_card, review_card
from bot.blocks.dms import dm_blocks, silent_lease
from bot.blocks.kit import MESSAGE_TEXT_LIMIT, Block, message, mrkdwn, section, truncate
from commands.notices import ADMIN, REVIEW, Kind, Message
from commands.serverfiles import ServerFile, server_files

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
        if notice.kind == Kind.SERVER_FILES:
            return self._upload(notice)
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

    def _upload(self, notice: Message) -> str:
        """A lease's servers as files in a DM, through Slack's upload API: each file's bytes
        go to the URL `files.getUploadURLExternal` gives, then `files.completeUploadExternal`
        shares them all in one message. The file ids are recorded before they are shared, so
        an attempt after a failure (or a lost answer) asks Slack whether they already are
        (`files.info`) and shares them at most once; only files never shared are uploaded
        again."""
        channel = self._channel_for(notice)
        data = notice.data
        files = server_files(int(notice.lease_id or 0), str(data["login"]), data["servers"])
        earlier = _file_ids(notice.ref)
        known = self._file(earlier[0]) if earlier else None
        if known is not None and _shared_in(known, channel):
            return str(notice.ref)
        ids = earlier if known is not None else self._put(files)
        ref = FILES_REF + ",".join(ids)
        notice.checkpoint(ref)
        # Not retried here: an answer lost after Slack shared the files must not share them
        # twice; the outbox's next attempt asks files.info first.
        self.client.files_completeUploadExternal(
            files=[{"id": i, "title": f.title} for i, f in zip(ids, files, strict=True)],
            channel_id=channel,
            initial_comment=truncate(mrkdwn(notice.text), MESSAGE_TEXT_LIMIT),
        )
        return ref

    def _put(self, files: list[ServerFile]) -> list[str]:
        ids = []
        for f in files:
            body = f.content.encode()
            slot = self._call("files_getUploadURLExternal", filename=f.filename, length=len(body))
            request = urllib.request.Request(slot["upload_url"], data=body, method="POST")
            with urllib.request.urlopen(
                request, timeout=self.client.timeout, context=self.client.ssl
            ) as answer:
                answer.read()  # urlopen raises on anything but 2xx
            ids.append(str(slot["file_id"]))
        return ids

    def _file(self, file_id: str) -> dict[str, Any] | None:
        try:
            return self._call("files_info", file=file_id)["file"]
        except SlackApiError as error:
            if error.response.get("error") == "file_not_found":
                return None
            raise

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


FILES_REF = "files:"


def _file_ids(ref: str | None) -> list[str]:
    """The file ids an earlier attempt recorded (`files:F1,F2,F3`), or none."""
    if not ref or not ref.startswith(FILES_REF):
        return []
    return [i for i in ref.removeprefix(FILES_REF).split(",") if i]


def _shared_in(file: dict[str, Any], channel: str) -> bool:
    return any(channel in (file.get(kind) or []) for kind in ("ims", "channels", "groups"))


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
