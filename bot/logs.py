"""One logging configuration for every labbot process: plain lines or JSON lines
(LABBOT_LOG_FORMAT=json), each carrying the lease id where there is one, and a filter that
takes the configured secrets out of every record.

The filter is defence in depth: labbot never logs a token on purpose, but a library's debug
line (a request's headers) or an exception's text (a database URL) might. It sits on the one
root handler, so it sees every record that is written, whichever logger made it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from commands.log_context import current_lease

REDACTED = "[redacted]"
# Environment variables whose values are secrets wherever they turn up.
SECRET_SETTINGS = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "PACKET_AUTH_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GITHUB_TOKEN",
)
SHORTEST_SECRET = 4  # shorter values would blank out ordinary words; no real token is this short
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(lease)s: %(message)s"


def secrets_in(env: Mapping[str, str]) -> list[str]:
    """The secret values configured in `env`: the named settings, and the password inside
    DATABASE_URL. Longest first, so a secret containing another is replaced whole."""
    found = [env.get(name, "") for name in SECRET_SETTINGS]
    found += _database_password(env.get("DATABASE_URL", ""))
    return sorted({s for s in found if len(s) >= SHORTEST_SECRET}, key=len, reverse=True)


def _database_password(url: str) -> list[str]:
    """The password as written in the URL (percent-encoded) and as the driver sees it."""
    try:
        password = make_url(url).password if url else None
    except ArgumentError:
        return []
    return [password, quote(password, safe="")] if password else []


class Redact(logging.Filter):
    """Replace every secret in a record's message, arguments and exception text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            record.msg = self.scrub(record.getMessage())
            record.args = None
        except (TypeError, ValueError):  # a malformed call: scrub the parts, logging reports it
            record.msg = self.scrub(str(record.msg))
            record.args = tuple(self.scrub(str(arg)) for arg in record.args or ())
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


class LeaseTag(logging.Filter):
    """Attach the lease being worked on (unless the call site named one with extra=)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "lease_id", None) is None:
            record.lease_id = current_lease()
        record.lease = f" lease={record.lease_id}" if record.lease_id is not None else ""
        return True


class JsonLines(logging.Formatter):
    """One JSON object per line: what log shippers parse without a grok pattern."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if getattr(record, "lease_id", None) is not None:
            line["lease_id"] = record.lease_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str)


def configure(
    log_format: str = "text",
    *,
    env: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
    level: int = logging.INFO,
) -> logging.Handler:
    """Replace the root logger's handlers with one that tags, redacts and formats. Returns the
    handler (the tests write it to a buffer)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(LeaseTag())
    handler.addFilter(Redact(secrets_in(os.environ if env is None else env)))
    handler.setFormatter(JsonLines() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
