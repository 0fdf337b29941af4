"""SlackNotifier: the outbox's way out to Slack.

It is called after a commit (by the use case's `flush_notices`, on bolt's executor after the
ack, by the courier or by the sweep), never on the ack path. It names the rate-limited lanes each
message takes (a channel's posts, a Tier 3 or Tier 4 method), so the outbox sends no faster than
Slack accepts, and it never waits: a 429 is raised to the outbox as `Throttled` with Slack's
Retry-After, which holds that lane alone; any other failure is raised as it is, and the outbox
keeps the notice for a later pass. An upload (a lease's server files) checkpoints each file it
got, so the pass that retries it, throttled or failed, uploads and shares nothing twice. A Slack
outage delays a message but never loses it or undoes the state change it reports.
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks.cards import decided_card, extension_card, review_card
from bot.blocks.dms import dm_blocks, idle_question, silent_lease
from bot.blocks.kit import MESSAGE_TEXT_LIMIT, Block, message, mrkdwn, section, truncate
from commands.notices import (
    ADMIN,
    CARD_EDITS,
    REVIEW,
    REVIEW_EDITS,
    Kind,
    Message,
    Rate,
    Throttled,
)
from commands.serverfiles import ServerFile, server_files

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
# Tier 4 (the files.* methods of an upload): 100+ calls a minute per workspace. An upload asks
# for one URL per file (serverfiles' CSV, SSH config and Ansible inventory), so its lane is
# booked for three calls.
TIER_4 = timedelta(minutes=1) / 100
TIER_4_BURST = 4
FILES_PER_UPLOAD = 3
UPLOAD_URLS = Rate("files.getUploadURLExternal", TIER_4 * FILES_PER_UPLOAD, 3)
SHARES = Rate("files.completeUploadExternal", TIER_4, TIER_4_BURST)
FILE_INFOS = Rate("files.info", TIER_4, TIER_4_BURST)

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
        self.channels = {REVIEW: review_channel, REVIEW_EDITS: review_channel, ADMIN: admin_channel}
        self.summary = summary
        self._dm_channels: dict[str, str] = {}
        self._lock = threading.Lock()

    def lanes(self, notice: Message) -> tuple[Rate, ...]:
        if notice.kind in CARD_EDITS and notice.update_ref:
            return (UPDATES,)
        if notice.kind == Kind.CARD_UPDATE:
            return ()  # no card to edit: nothing is sent
        post = Rate(self._post_lane(notice), POST_EVERY, POST_BURST)
        ways = (post, *_upload_lanes(notice)) if notice.kind == Kind.SERVER_FILES else (post,)
        if notice.user and not self._known_dm(notice.user):
            return (OPENS, *ways)
        return ways

    def deliver(self, notice: Message) -> str | None:
        if notice.kind == Kind.CARD_DECIDED and notice.update_ref:
            return self._update_card(notice)
        if notice.kind == Kind.CARD_UPDATE:
            return self._refresh_card(notice)
        if notice.kind == Kind.SERVER_FILES:
            return self._upload(notice)
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
        if notice.kind == Kind.IDLE_ESCALATED:
            return idle_question(notice)
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

    def _upload(self, notice: Message) -> str:
        """A lease's servers as files in a DM, through Slack's upload API: each file's bytes
        go to the URL `files.getUploadURLExternal` gives, then `files.completeUploadExternal`
        shares them all in one message. Each file's id is recorded (`notice.checkpoint`) as
        soon as its bytes are in, so an attempt after a failure, a 429 or a lost answer uploads
        only the files not yet uploaded, and asks Slack (`files.info`) whether they are already
        shared before sharing them: at most once."""
        channel = self._channel_for(notice)
        data = notice.data
        files = server_files(int(notice.lease_id or 0), str(data["login"]), data["servers"])
        ids = _file_ids(notice.ref)
        if ids:
            known = self._file(ids[0])
            if known is None:
                ids = []  # Slack no longer has them: upload them anew
            elif _shared_in(known, channel):
                return str(notice.ref)
        ids = self._put(files, ids, notice.checkpoint)
        # An answer lost after Slack shared the files must not share them twice: the next
        # attempt asks files.info first.
        self._call(
            "files_completeUploadExternal",
            SHARES.lane,
            files=[{"id": i, "title": f.title} for i, f in zip(ids, files, strict=True)],
            channel_id=channel,
            initial_comment=truncate(mrkdwn(notice.text), MESSAGE_TEXT_LIMIT),
        )
        return FILES_REF + ",".join(ids)

    def _put(
        self, files: list[ServerFile], uploaded: list[str], checkpoint: Callable[[str], None]
    ) -> list[str]:
        """Upload the files after the `uploaded` ones; the ids, each checkpointed once its
        bytes are in."""
        ids = list(uploaded)
        for f in files[len(ids) :]:
            body = f.content.encode()
            slot = self._call(
                "files_getUploadURLExternal",
                UPLOAD_URLS.lane,
                filename=f.filename,
                length=len(body),
            )
            request = urllib.request.Request(slot["upload_url"], data=body, method="POST")
            with urllib.request.urlopen(
                request, timeout=self.client.timeout, context=self.client.ssl
            ) as answer:
                answer.read()  # urlopen raises on anything but 2xx
            ids.append(str(slot["file_id"]))
            checkpoint(FILES_REF + ",".join(ids))
        return ids

    def _file(self, file_id: str) -> dict[str, Any] | None:
        try:
            return self._call("files_info", FILE_INFOS.lane, file=file_id)["file"]
        except SlackApiError as error:
            if error.response.get("error") == "file_not_found":
                return None
            raise

    def _call(self, method: str, lane: str, **kwargs: Any) -> Any:
        """One Web API call; Slack's 429 becomes `Throttled` on `lane`, for the outbox."""
        try:
            return getattr(self.client, method)(**kwargs)
        except SlackApiError as error:
            if getattr(error.response, "status_code", 0) == 429:
                raise Throttled(lane, _retry_after(error)) from error
            raise


FILES_REF = "files:"


def _file_ids(ref: str | None) -> list[str]:
    """The file ids an earlier attempt recorded (`files:F1,F2,F3`), or none."""
    if not ref or not ref.startswith(FILES_REF):
        return []
    return [i for i in ref.removeprefix(FILES_REF).split(",") if i]


def _upload_lanes(notice: Message) -> tuple[Rate, ...]:
    """An upload's calls besides its post (the shared files' message is one in the DM): a URL
    per file, the share, and, when an earlier attempt got file ids, a files.info first."""
    return (UPLOAD_URLS, SHARES, *((FILE_INFOS,) if _file_ids(notice.ref) else ()))


def _shared_in(file: dict[str, Any], channel: str) -> bool:
    return any(channel in (file.get(kind) or []) for kind in ("ims", "channels", "groups"))


def _retry_after(error: SlackApiError) -> timedelta:
    """Slack's Retry-After (whole seconds); one second when it is missing or unreadable."""
    headers = getattr(error.response, "headers", {}) or {}
    value = str(headers.get("Retry-After") or headers.get("retry-after") or "1")
    return timedelta(seconds=float(value) if value.replace(".", "", 1).isdigit() else 1.0)
