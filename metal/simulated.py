"""The embedded default provider: devices that live in our own database.

They move queued -> provisioning -> active over `provision_seconds` of the injected clock, so
tests and the demo step time instead of sleeping, and they survive a restart because they are
rows, not objects. Failure injection covers every failure path of the sweep: a create that
fails, a delete that fails N times, a device that vanishes, a device that fails provisioning.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import count

from sqlalchemy import case, literal, update
from sqlmodel import col, select

from metal.catalog import seed
from metal.provider import (
    Catalog,
    Clock,
    Device,
    DeviceSpec,
    DeviceState,
    OneAtATime,
    ProviderError,
    utcnow,
)
from metal.reporter import user_data
from storage.db import Database
from storage.locks import locked
from storage.models import SimDevice

DELETED_AT = SimDevice.__table__.c.deleted_at


class SimulatedProvider(OneAtATime):
    name = "simulated"

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = utcnow,
        provision_seconds: float = 60,
        catalog: Catalog | None = None,
        create_delay: float = 0.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.provision_time = timedelta(seconds=provision_seconds)
        self.offered = catalog or seed()  # what the provider lists now; a test may change it
        self.create_delay = create_delay
        self.answer_now = threading.Event()  # set, a slow create answers at once (test releases it)
        self._lock = threading.Lock()
        self._fail_creates = 0
        self._fail_provisioning = 0
        # Ids carry a counter: continue after the devices of an earlier run (they are rows).
        self._ids = count(self._stored_devices() + 1)
        self.calls: list[str] = []
        # What each device would run at first boot (its user data), by device id: kept in
        # memory, as a provider keeps it out of labbot's database (it may hold a token).
        self.userdata: dict[str, str] = {}

    # failure injection -------------------------------------------------------------------
    def fail_next_creates(self, times: int = 1) -> None:
        self._fail_creates += times

    def fail_next_provisioning(self, times: int = 1) -> None:
        self._fail_provisioning += times

    def fail_deletes(self, device_id: str, times: int) -> None:
        self._update(device_id, delete_failures_left=times)

    def vanish(self, device_id: str) -> None:
        self._update(device_id, deleted_at=self.clock())

    # Provider ------------------------------------------------------------------------------
    def catalog(self) -> Catalog:
        return self.offered

    def create(self, spec: DeviceSpec) -> Device:
        self._note("create")
        if self.create_delay:
            # models a slow provider API, for the ack tests; a test that has seen what it wanted
            # ends the wait with answer_now.set() rather than sleeping it out
            self.answer_now.wait(self.create_delay)
        with self._lock:
            if self._fail_creates:
                self._fail_creates -= 1
                raise ProviderError("simulated: create refused (injected failure)")
            fails = self._fail_provisioning > 0
            self._fail_provisioning -= int(fails)
        if not self.offered.plan_available(spec.plan, spec.metro):
            raise ProviderError(f"{spec.plan} is not available in {spec.metro}", retryable=False)
        now = self.clock()
        row = SimDevice(
            id=f"sim-{now:%H%M%S}-{next(self._ids)}-{spec.hostname}",
            hostname=spec.hostname,
            plan=spec.plan,
            metro=spec.metro,
            os=spec.os,
            tags=json.dumps(list(spec.tags)),
            created_at=now,
            ready_at=now + self.provision_time,
            termination_time=spec.termination_time,
            fails=fails,
        )
        with self.db.write() as session:
            session.add(row)
        if spec.reporting is not None:
            self.userdata[row.id] = user_data(spec.reporting.url, [spec.reporting.token])
        return self._device(row, now)

    def get(self, device_id: str) -> Device | None:
        self._note("get")
        with self.db.read() as session:
            row = session.get(SimDevice, device_id)
        now = self.clock()
        return None if row is None or self._gone(row, now) else self._device(row, now)

    def delete(self, device_id: str) -> None:
        self._note("delete")
        with self.db.write() as session:
            # One statement: delete the device, or spend one of its injected failures.
            failing = col(SimDevice.delete_failures_left) > 0
            answer = session.execute(
                update(SimDevice)
                .where(col(SimDevice.id) == device_id, col(SimDevice.deleted_at).is_(None))
                .values(
                    deleted_at=case((failing, None), else_=literal(self.clock(), DELETED_AT.type)),
                    delete_failures_left=case(
                        (failing, SimDevice.delete_failures_left - 1), else_=0
                    ),
                )
                .returning(SimDevice.id, SimDevice.deleted_at)
            ).first()
        if answer is not None and answer.deleted_at is None:
            raise ProviderError("simulated: delete failed (injected failure)")

    def list(self, tag: str) -> list[Device]:
        self._note("list")
        now = self.clock()
        with self.db.read() as session:
            rows = session.exec(
                select(SimDevice).where(
                    col(SimDevice.deleted_at).is_(None),
                    col(SimDevice.tags).contains(json.dumps(tag)),
                )
            ).all()
        return [
            self._device(r, now)
            for r in rows
            if tag in json.loads(r.tags) and not self._gone(r, now)
        ]

    def capacity(self, plan: str, metro: str, quantity: int) -> bool | None:
        return self.offered.plan_available(plan, metro)

    def set_backstop(self, tag: str, metro: str, when: datetime, device_ids: Sequence[str]) -> None:
        for device_id in device_ids:
            self._update(device_id, termination_time=when)

    def verify(self) -> None:
        return None

    # internals -----------------------------------------------------------------------------
    def _stored_devices(self) -> int:
        try:
            with self.db.read() as session:
                return len(session.exec(select(SimDevice.id)).all())
        except Exception:  # not migrated yet: nothing stored
            return 0

    def list_all(self) -> list[Device]:
        """Every live device, whatever its tags (for tests)."""
        now = self.clock()
        with self.db.read() as session:
            rows = session.exec(select(SimDevice)).all()
        return [self._device(r, now) for r in rows if not self._gone(r, now)]

    def _gone(self, row: SimDevice, now: datetime) -> bool:
        if row.deleted_at is not None:
            return True
        return row.termination_time is not None and now >= row.termination_time

    def _device(self, row: SimDevice, now: datetime) -> Device:
        if now < row.ready_at:
            state = DeviceState.QUEUED if now == row.created_at else DeviceState.PROVISIONING
        else:
            state = DeviceState.FAILED if row.fails else DeviceState.ACTIVE
        n = int(row.id.split("-")[2])  # 250 addresses a /24, so a 500-server lease has no twins
        ips = (
            (f"147.75.{100 + n // 250 % 150}.{n % 250 + 2}",) if state == DeviceState.ACTIVE else ()
        )
        return Device(
            id=row.id,
            hostname=row.hostname,
            state=state,
            plan=row.plan,
            metro=row.metro,
            tags=tuple(json.loads(row.tags)),
            ips=ips,
            created_at=row.created_at,
        )

    def _update(self, device_id: str, **values) -> None:
        with self.db.write() as session:
            row = locked(session, SimDevice, device_id)
            if row is None:
                raise ProviderError(f"simulated: no device {device_id}", retryable=False)
            for key, value in values.items():
                setattr(row, key, value)
            session.add(row)

    def _note(self, call: str) -> None:
        with self._lock:
            self.calls.append(call)
