"""What the operator's tools ask a running labbot over HTTP: `/healthz` and `/metrics`.

Both answer from the database, so every worker process and every replica says the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from bot.metrics import CONTENT_TYPE, registry_for, render
from bot.runtime import Clock
from commands.health import Health, judge, last_sweep
from commands.lab import Lab

HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"

StartResponse = Callable[..., Any]


class Probes:
    def __init__(self, lab: Lab, clock: Clock, max_sweep_age: timedelta, started: datetime):
        self.lab = lab
        self.clock = clock
        self.max_sweep_age = max_sweep_age
        self.started = started
        self.registry = registry_for(lab, clock)

    def health(self) -> Health:
        try:
            with self.lab.db.read() as session:
                session.exec(text("SELECT 1"))
            swept = last_sweep(self.lab.db)
        except SQLAlchemyError:
            return judge(self.clock(), None, self.started, self.max_sweep_age, False)
        return judge(self.clock(), swept, self.started, self.max_sweep_age)

    def answer(self, path: str, start_response: StartResponse) -> Iterable[bytes]:
        if path == METRICS_PATH:
            start_response("200 OK", [("Content-Type", CONTENT_TYPE)])
            return [render(self.registry)]
        health = self.health()
        age = health.sweep_age
        body = {
            "status": health.verdict,
            "healthy": health.healthy,
            "last_sweep_age_s": None if age is None else int(age.total_seconds()),
            "max_sweep_age_s": int(self.max_sweep_age.total_seconds()),
        }
        status = "200 OK" if health.healthy else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(body).encode() + b"\n"]
