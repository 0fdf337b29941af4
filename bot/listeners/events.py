"""Events: App Home, published when a person opens it.

bolt acknowledges an event itself before its listener runs, so the listener only keeps it in
the inbox; a worker publishes App Home (`work`). Slack repeats an event it thinks was not
acknowledged in time, with the same event_id: the inbox keeps one delivery of each.
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
        if event.get("tab", "home") == "home":
            ctx.hand_over(body)


def work(ctx: AppContext, body: dict[str, Any]) -> None:
    event = body.get("event") or {}
    if event.get("type") == "app_home_opened":
        refresh_home(ctx, str(event.get("user") or ""))
