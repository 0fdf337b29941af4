"""A Notifier that keeps every message instead of sending it, for the tests and the benchmarks.

It stands where bot/slack_notifier.py stands in production, at the process boundary: the outbox
(commands/notices.py) hands it each due notice and records the id it returns, as it would
Slack's message timestamp.
"""

from __future__ import annotations

from commands.notices import Kind, Message, Rate


class RecordingNotifier:
    """Keeps every message, in the order delivered."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def lanes(self, message: Message) -> tuple[Rate, ...]:
        """No rate limit: every message may go at once."""
        return ()

    def deliver(self, message: Message) -> str | None:
        self.messages.append(message)
        return f"rec-{message.id}"

    def texts(self, kind: Kind | None = None) -> list[str]:
        return [m.text for m in self.messages if kind is None or m.kind == kind]
