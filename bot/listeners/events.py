"""Events: App Home, published when a person opens it.

Slack retries an event it thinks was not acknowledged in time, so each event_id is acted on
once. bolt acknowledges events itself before the listener runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_bolt import App

from bot.listeners.reply import refresh_home

if TYPE_CHECKING:
    from bot.app import AppContext


def register(app: App, ctx: AppContext) -> None:
    @app.event("app_home_opened")
    def home_opened(body: dict[str, Any], event: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return
        event_id = body.get("event_id")
        if event_id and not ctx.seen_events.first_time(str(event_id)):
            return
        ctx.later(body, refresh_home, ctx, str(event.get("user") or ""))
