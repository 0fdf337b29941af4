"""The bolt App and the context its listeners share.

`build_context` wires settings into a Lab whose notifier posts through the same WebClient the
listeners use; `create_app` registers the four surfaces. Listeners take `now` from `ctx.clock`,
never from the wall clock, so the demo and the tests can run a week in a second.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.error import BoltUnhandledRequestError
from slack_sdk import WebClient

from bot.blocks.kit import ephemeral
from bot.gate import VERIFIED
from bot.inbox import KEEP_WAIT, Keeper, Kept
from bot.listeners import actions, commands, events, views
from bot.listeners.reply import tell
from bot.roles import GroupMembers, GroupRoles
from bot.runtime import Clock, build_lab, utcnow
from bot.settings import Settings, SettingsError
from bot.slack_notifier import SlackNotifier
from bot.work import answered, do, failure_sentence, run
from commands.facts import quoted, shape
from commands.lab import Lab
from commands.views import lease_with_servers
from storage.db import Busy, Database

# bolt runs each listener on the request's thread and answers Slack when it returns. Listeners
# in the web process only keep the request in the inbox and ack; a form is opened after the ack
# on the listener pool; the work is done by worker processes (bot.worker), or, where this
# process works too (Socket Mode, the demo, the tests), by its own pool.
LISTENER_THREADS = 32
WORKER_THREADS = 8  # SQLite takes one writer at a time; more threads only wait on its lock
UNHANDLED = (
    "labbot could not tell what that was for: it named no button or form labbot knows. "
    "`/lab help` lists what you can do."
)

log = logging.getLogger(__name__)


class TrackedPool(ThreadPoolExecutor):
    """A thread pool able to say when all the work it was given is done (the demo, the tests
    and a clean shutdown wait on that instead of sleeping)."""

    def __init__(self, max_workers: int, name: str) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=name)
        self._busy = 0
        self._idle = threading.Condition()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        with self._idle:
            self._busy += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _: Future) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)


@dataclass
class AppContext:
    lab: Lab
    settings: Settings
    clock: Clock
    client: WebClient
    listeners: TrackedPool = field(default_factory=lambda: TrackedPool(LISTENER_THREADS, "bolt"))
    work: TrackedPool = field(default_factory=lambda: TrackedPool(WORKER_THREADS, "labbot-work"))
    works_here: bool = True  # False in a web process of `labbot serve`: workers do the work

    def __post_init__(self) -> None:
        self.keeper = Keeper(self.lab, self.clock)

    def on(self, lab: Lab) -> AppContext:
        """This context with another Lab (a kept request's run, bot.work), sharing its pools and
        its keeper. Not `dataclasses.replace`, which builds a new context, and with it a keeper
        whose thread nobody stops: one thread left behind per request done."""
        other = copy.copy(self)
        other.lab = lab
        return other

    def hand_over(self, body: dict[str, Any]) -> None:
        """Before the ack: keep what Slack sent in the inbox, for a worker to do (this process,
        if it works here). If the database's write lock stays taken past KEEP_WAIT (SQLite
        during a sweep pass), the ack must not wait: the work is done in this process instead,
        and the log says so."""
        try:
            item = self.keeper.keep(body, claimed=self.works_here)
        except Busy as busy:
            log.warning(
                "the inbox did not take a %s within %s s (%s); acknowledged, and done in this "
                "process instead of by a worker",
                _kind(body),
                KEEP_WAIT,
                busy,
            )
            self.work.submit(answered, self, body, do, self, body)
            return
        if item is None:
            log.info("Slack delivered a %s again; it is kept already and done once", _kind(body))
        elif self.works_here:
            self.work.submit(run, self, Kept(item, body, 1))

    def after_ack(self, body: dict[str, Any], job: Callable[..., None], *args: Any) -> None:
        """Run `job(*args)` on the listener pool, so the ack goes back now (bolt answers when
        the listener returns); its failure is told to the person who sent `body`."""
        self.listeners.submit(answered, self, body, job, *args)

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until every listener and the work they handed on are done."""
        return self.listeners.wait_idle(timeout) and self.work.wait_idle(timeout)

    def shutdown(self) -> None:
        self.listeners.shutdown(wait=True)
        self.work.shutdown(wait=True)
        self.keeper.stop()


def web_client(settings: Settings) -> WebClient:
    if not settings.slack_bot_token:
        raise SettingsError("SLACK_BOT_TOKEN is not set; labbot needs the bot token (xoxb-...).")
    if settings.slack_api_url:
        # WebClient urljoins the method onto base_url: without the slash the path is lost.
        return WebClient(
            token=settings.slack_bot_token, base_url=settings.slack_api_url.rstrip("/") + "/"
        )
    return WebClient(token=settings.slack_bot_token)


def build_context(
    settings: Settings, *, clock: Clock = utcnow, db: Database | None = None
) -> AppContext:
    client = web_client(settings)
    notifier = SlackNotifier(client, settings.review_channel, settings.admin_channel)
    lab = build_lab(settings, notifier, clock=clock, db=db)
    if settings.reviewer_group:
        members = GroupMembers(client, settings.reviewer_group)
        lab = replace(
            lab,
            roles=GroupRoles(lab.roles.reviewers, lab.roles.admins, group_members=members),
        )
    notifier.summary = partial(_summary, lab)
    return AppContext(lab=lab, settings=settings, clock=clock, client=client)


def _summary(lab: Lab, lease_id: int) -> str | None:
    """What a decided card keeps of the request: who asked for what, and why."""
    lease, _ = lease_with_servers(lab, lease_id)
    if lease is None:
        return None
    return (
        f"<@{lease.owner}> asked for {shape(lease)} for {lease.project} "
        f"({quoted(lease.repo_url)}): {quoted(lease.purpose)}"
    )


def create_app(ctx: AppContext) -> App:
    """HTTP mode needs the signing secret; Socket Mode (SLACK_APP_TOKEN) never sees an HTTP
    request from Slack, so it goes without."""
    secret = ctx.settings.slack_signing_secret
    if not secret and not ctx.settings.slack_app_token:
        raise SettingsError(
            "SLACK_SIGNING_SECRET is not set; labbot needs it to check that requests come "
            "from Slack (or set SLACK_APP_TOKEN for Socket Mode)."
        )
    app = App(
        client=ctx.client,
        signing_secret=secret,
        request_verification_enabled=bool(secret),
        raise_error_for_unhandled_request=True,  # answered by _on_error, not a bare 404
        # The listener on the request's own thread, answered when it returns: a listener only
        # keeps the request and acks, and anything after the ack (opening a form) goes to
        # `ctx.listeners` (`AppContext.after_ack`). Run on bolt's executor instead (False),
        # each ack also paid a thread hop and bolt's polling for it every 10 ms: 2.6 ms of CPU
        # per `/lab list` against 0.8 ms (issue 21).
        process_before_response=True,
        listener_executor=ctx.listeners,
    )
    for surface in (commands, actions, views, events):
        surface.register(app, ctx)
    app.error(partial(_on_error, ctx))
    return app


def _on_error(
    ctx: AppContext,
    error: Exception,
    body: dict[str, Any],
    request: BoltRequest,
    response: BoltResponse | None,
) -> None:
    """Never a 500 or silence. A payload no listener matches (a missing action, a stray event)
    is acknowledged and, when a person sent it, explained; anything else is a bug: logged, and
    the person told that whatever the use case committed stands.

    This is also bolt's handler for errors before any listener, signature checks included:
    a body that was not verified (by bot.gate, or by arriving over Socket Mode's
    authenticated connection) gets 401, and nothing in it is read or answered."""
    if not trusted(request):
        log.warning("refused an unverified request (%s)", type(error).__name__)
        if response is not None:
            response.status, response.headers, response.body = 401, {}, ""
        return
    unhandled = isinstance(error, BoltUnhandledRequestError)
    sentence = UNHANDLED if unhandled else failure_sentence(error)
    if response is not None:  # not acknowledged yet: this becomes the ack
        response.status = 200
        response.headers = {"content-type": ["application/json;charset=utf-8"]}
        response.body = json.dumps(ephemeral(sentence)) if body.get("command") else ""
    if body.get("type") != "event_callback" and not body.get("command"):
        ctx.work.submit(tell, ctx, body, sentence)


def _kind(body: dict[str, Any]) -> str:
    """What a request is, for a log line (never its content)."""
    return str(body.get("command") or body.get("type") or "request")


def trusted(request: BoltRequest) -> bool:
    """Whether a request's body may be read and answered: bot.gate verified its signature, or
    it came over Socket Mode, whose connection Slack opened with the app token."""
    return request.mode == "socket_mode" or request.context.get(VERIFIED) is True
