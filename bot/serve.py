"""`labbot serve`: the bolt App behind a production server, the workers and the sweep beside it.

HTTP mode (the default) runs gunicorn programmatically with WEB_CONCURRENCY web processes (as
platforms set it), each with threads, which only verify what Slack sent, keep it in the inbox
and ack (and open forms): bot.inbox. The work is done by LABBOT_WORKERS worker processes
(bot.worker), and the sweep's scheduler runs once per `labbot serve` in a process of its own;
the arbiter starts, restarts and stops both (bot.children). The App is built in each web
process (threads do not survive a fork). Several processes on one SQLite file are correct
because every write is BEGIN IMMEDIATE with a busy timeout and every state change a conditional
update. Counters for /metrics are kept in prometheus_client's multiprocess directory
(bot/multiproc.py), retired per process as gunicorn reports each child's exit. Socket Mode,
when SLACK_APP_TOKEN is set, needs no public URL: it connects out to Slack over a WebSocket, in
one process that also works and sweeps.

SIGTERM stops either cleanly: gunicorn drains its web processes, then the workers finish what
they claimed and the sweeper stops; Socket Mode closes the connection, the worker and the
scheduler.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from prometheus_client.multiprocess import mark_process_dead
from slack_bolt import App
from slack_sdk.errors import SlackApiError

from bot.activity import Limiter, Recorder, activity_endpoint
from bot.app import AppContext, build_context, create_app, web_client
from bot.children import Child
from bot.gate import slack_endpoint
from bot.inbox import prune
from bot.logs import configure
from bot.probes import HEALTH_PATH, METRICS_PATH, Probes
from bot.report_html import PATH as REPORT_PATH
from bot.report_html import report_app
from bot.runtime import open_database
from bot.scheduler import start_sweeper
from bot.settings import ACTIVITY_PATH, Settings, SettingsError, from_env
from bot.worker import Worker
from metal.provider import utcnow

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HTTP_THREADS = 32
GRACEFUL_TIMEOUT = 10

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def main() -> int:
    settings = from_env()
    configure(settings.log_format)
    preflight(settings)
    if settings.slack_app_token:
        return serve_socket_mode(settings)
    return serve_http(settings)


def preflight(settings: Settings) -> None:
    """Stop before serving anything when a secret is missing or Slack refuses the token, with
    one sentence naming the setting (the CLI prints it and exits 2)."""
    if not settings.slack_signing_secret and not settings.slack_app_token:
        raise SettingsError(
            "SLACK_SIGNING_SECRET is not set; HTTP mode needs it to check that requests come "
            "from Slack (or set SLACK_APP_TOKEN to use Socket Mode)."
        )
    try:
        web_client(settings).auth_test()
    except SlackApiError as error:
        raise SettingsError(
            f"SLACK_BOT_TOKEN was refused by Slack ({error.response.get('error')}); "
            "copy the Bot User OAuth Token (xoxb-...) from the app's OAuth page."
        ) from error
    except OSError as error:
        raise SettingsError(
            f"Slack's Web API is not reachable ({error}); check SLACK_API_URL and the network."
        ) from error
    if settings.slack_app_token:
        check_app_token(settings)


def check_app_token(settings: Settings) -> None:
    """Socket Mode's token is checked the way Socket Mode uses it: by asking for a connection
    URL (an `xoxb-` token pasted here gets `not_allowed_token_type`)."""
    try:
        web_client(settings).apps_connections_open(app_token=settings.slack_app_token)
    except SlackApiError as error:
        raise SettingsError(
            f"SLACK_APP_TOKEN was refused by Slack ({error.response.get('error')}); "
            "create an App-Level Token (xapp-...) with the connections:write scope on the "
            "app's Basic Information page."
        ) from error


def wsgi_app(
    app: App,
    secret: str | None,
    probes: Probes | None = None,
    report: Wsgi | None = None,
    activity: Wsgi | None = None,
) -> Wsgi:
    """Slack's endpoint, behind the signature check of bot.gate, plus the health check and the
    metrics (without probes, as the bare App of the benchmark runs, the health check only says
    the process answers), the lab's public report (read-only) and the servers' activity
    reports (bot.activity) when given."""
    slack = slack_endpoint(app, secret, EVENTS_PATH)

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or ""
        if activity is not None and path == ACTIVITY_PATH:
            return activity(environ, start_response)
        if probes is not None and path in (HEALTH_PATH, METRICS_PATH):
            return probes.answer(path, start_response)
        if path == HEALTH_PATH:
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n"]
        if report is not None and (path == REPORT_PATH or path.startswith(REPORT_PATH + "/")):
            return report(environ, start_response)
        return slack(environ, start_response)

    return application


class Running:
    """What a serving process owns and must stop: the context (its thread pools) and, where
    this process is the whole of labbot (Socket Mode), a worker and the sweep's scheduler."""

    def __init__(self, settings: Settings, *, started: datetime, whole: bool) -> None:
        self.ctx: AppContext = build_context(settings)
        self.ctx.works_here = whole
        self.app = create_app(self.ctx)
        self.probes = Probes(self.ctx.lab, self.ctx.clock, settings.health_sweep_age, started)
        self.worker = Worker(self.ctx) if whole else None
        # The servers' reports, where they report (a public URL, HTTP mode, not turned off).
        self.recorder = Recorder(self.ctx.lab) if settings.policy.activity_url else None
        self.activity = (
            activity_endpoint(self.ctx.lab, self.ctx.clock, self.recorder, Limiter())
            if self.recorder is not None
            else None
        )
        self.scheduler = (
            start_sweeper(
                self.ctx.lab,
                self.ctx.clock,
                settings.sweep_interval,
                also=partial(prune, self.ctx.lab),
            )
            if whole
            else None
        )

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
        if self.worker is not None:
            self.worker.stop()
        if self.recorder is not None:
            self.recorder.stop()
        self.ctx.shutdown()
        self.ctx.lab.db.dispose()


class _RootLogs(glogging.Logger):
    """gunicorn's own lines go through labbot's one handler: the same format, the same
    redaction."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            logger.handlers.clear()
            logger.propagate = True


class _Arbiter(Arbiter):
    """gunicorn's arbiter, which also keeps the sweeper and the worker processes running: its
    loop calls `manage_workers` about once a second."""

    def manage_workers(self) -> None:
        super().manage_workers()
        for child in self.app.children:
            child.keep_running()


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started = utcnow()
        self.running: Running | None = None
        self.children = [Child("bot.sweeper")] + [
            Child("bot.worker") for _ in range(settings.workers)
        ]
        super().__init__()

    def load_config(self) -> None:
        for key, value in {
            "bind": f"0.0.0.0:{self.settings.port}",
            "workers": self.settings.web_concurrency,
            "worker_class": "gthread",
            "threads": HTTP_THREADS,
            "graceful_timeout": GRACEFUL_TIMEOUT,
            "accesslog": None,
            "logger_class": _RootLogs,
            "worker_exit": self._worker_exit,
            "child_exit": self._child_exit,
            "on_exit": self._on_exit,
        }.items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn 27 opens an admin socket in $HOME by default, one path shared by every
            # gunicorn of the user; labbot has no use for it.
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Wsgi:
        self.running = Running(self.settings, started=self.started, whole=False)
        ctx = self.running.ctx
        return wsgi_app(
            self.running.app,
            self.settings.slack_signing_secret,
            self.running.probes,
            report_app(ctx.lab, ctx.clock),
            self.running.activity,
        )

    def run(self) -> None:
        _Arbiter(self).run()

    def _worker_exit(self, server: Any, worker: Any) -> None:
        """In the web process: stop its thread pools and close its database connections."""
        if self.running is not None:
            self.running.stop()

    def _child_exit(self, server: Any, worker: Any) -> None:
        """In the arbiter: the worker's counters stay in the directory (a counter must not go
        down), its live-gauge files go."""
        mark_process_dead(worker.pid)

    def _on_exit(self, server: Any) -> None:
        for child in self.children:
            child.ask_to_stop()
        for child in self.children:
            pid = child.stop()
            if pid is not None:
                mark_process_dead(pid)


def serve_http(settings: Settings) -> int:
    # Migrate once, here, before the workers and the sweeper open the database: several
    # processes upgrading a fresh SQLite file at once would trip over each other's DDL.
    open_database(settings).dispose()
    log.info("labbot serving %s on port %s", EVENTS_PATH, settings.port)
    try:
        _Gunicorn(settings).run()
    except SystemExit as stop:  # gunicorn's arbiter exits the process when it halts
        return stop.code if isinstance(stop.code, int) else 0
    return 0


def serve_socket_mode(settings: Settings) -> int:
    """Socket Mode: no public URL, no signature (Slack authenticates the xapp- token)."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    running = Running(settings, started=utcnow(), whole=True)
    handler = SocketModeHandler(running.app, settings.slack_app_token)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        handler.connect()
        log.info("labbot connected to Slack in Socket Mode")
        stopping.wait()
    except SlackApiError as error:  # the token was refused after preflight accepted it
        raise SettingsError(
            f"SLACK_APP_TOKEN was refused by Slack ({error.response.get('error')})."
        ) from error
    finally:
        handler.close()
        running.stop()  # the sweep's scheduler never outlives the connection
    return 0


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the tests and the demo print what people see, not access logs."""


@contextmanager
def local_server(app: App, secret: str | None, report: Wsgi | None = None) -> Iterator[str]:
    """Serve the App on 127.0.0.1 in this process, for the tests, the demo and the benchmark;
    yields the URL Slack would post to. (Production uses gunicorn: `serve_http`.)"""
    server = make_server(
        "127.0.0.1",
        0,
        wsgi_app(app, secret, report=report),
        server_class=_ThreadingServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{EVENTS_PATH}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
