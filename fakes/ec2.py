"""moto's server on 127.0.0.1 standing in for EC2, STS and EventBridge Scheduler, and a small
proxy of our own in front of it that does what moto does not: faults and time.

- `MotoServer`: moto's ThreadedMotoServer on a free port, reset between uses through its
  ``/moto-api/reset`` endpoint (one server per test session, a clean account per test).
- `FaultProxy`: forwards every request to moto unchanged, except where a test asked for a
  fault: an error answer (503 ``Unavailable``, 400 ``RequestLimitExceeded``, 500
  ``InsufficientInstanceCapacity``) instead of forwarding, or the answer of a request that moto
  did carry out dropped (the connection closes with no reply), or latency added to every call.
- moto launches MinCount instances where EC2 launches as many as it has room for, up to
  MaxCount: the proxy asks moto for MaxCount, EC2 with room for all.
- moto starts an instance ``running`` at once. The proxy models the ``pending`` time of a
  real bare-metal instance: an instance stays ``pending`` in every DescribeInstances answer for
  `pending_seconds` of the injected clock after the proxy saw it created.
- `fire_due_schedules` plays EventBridge Scheduler's and Systems Manager's parts, which moto
  stores but never runs: every one-time ``at(...)`` schedule whose time has come starts its
  terminate automation on the instances its tag targets name.
- `backstop_role` creates the backstop role in moto's IAM, trusting what docs/providers.md says.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode

import boto3
from moto.server import ThreadedMotoServer

from metal.provider import Clock, utcnow

REGION = "us-east-1"
ACCOUNT = "123456789012"
SCHEDULER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/labbot-backstop"
# Fake credentials for the local server: boto3's chain reads them like any others.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

_AUTOMATION_TARGET = "arn:aws:scheduler:::aws-sdk:ssm:startAutomationExecution"
_TERMINATE_RUNBOOK = "AWS-TerminateEC2Instance"
_AT = re.compile(r"at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)")
_INSTANCE_ID = re.compile(r"<instanceId>(i-[0-9a-f]+)</instanceId>")
_RUNNING = re.compile(r"<code>16</code>(\s*)<name>running</name>")
_ERRORS = {
    503: ("Unavailable", "The server is overloaded and can't handle the request."),
    400: ("RequestLimitExceeded", "Request limit exceeded."),
    500: ("InsufficientInstanceCapacity", "There is no Metal capacity available."),
    401: ("AuthFailure", "AWS was not able to validate the provided access credentials"),
    404: ("ResourceNotFoundException", "The resource does not exist."),
}


def quiet_moto() -> None:
    """moto's server logs every request through werkzeug; tests and the demo read their own
    output, not moto's access log."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


class MotoServer:
    """moto's threaded server on 127.0.0.1 at a free port.

    Without moto's 1,365 default AMIs: the instances here boot the catalog's own image ids,
    which moto accepts unregistered, and moto builds every default AMI (with a volume and a
    snapshot, each with random ids) again at every reset, for every region first used after it,
    about half a second of CPU each time. Set in the environment, as moto reads it (moto runs in
    this process, so the setting is the process's; one given already is kept)."""

    def __init__(self) -> None:
        quiet_moto()
        os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.url = ""

    def start(self) -> MotoServer:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def reset(self) -> None:
        """Forget every instance, schedule and key pair: a clean account."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class _Fault:
    action: str
    kind: str  # "status" or "drop"
    times: int
    status: int = 0
    matching: str = ""


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of moto. Actions are EC2's (``RunInstances``) or,
    for the REST services, ``METHOD /path-prefix`` (``POST /schedules``)."""

    def __init__(self, upstream: str, clock: Clock = utcnow, pending_seconds: float = 0.0) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.clock = clock
        self.pending_seconds = pending_seconds
        self.added_latency = 0.0
        self._faults: list[_Fault] = []
        self._born: dict[str, datetime] = {}
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"

    # --- what tests say ---

    def fail(self, action: str, status: int = 503, times: int = 1, matching: str = "") -> None:
        """Answer the next `times` calls of `action` (whose request contains `matching`) with
        an AWS error of `status` (503 Unavailable, 400 RequestLimitExceeded, 500
        InsufficientInstanceCapacity, 401 AuthFailure, 404 ResourceNotFoundException) without
        forwarding them."""
        with self._lock:
            self._faults.append(_Fault(action, "status", times, status, matching))

    def drop_answer(self, action: str, times: int = 1) -> None:
        """Carry out the next `times` calls of `action` at moto, then close the connection
        without answering: the caller cannot know whether it happened."""
        with self._lock:
            self._faults.append(_Fault(action, "drop", times))

    def latency(self, seconds: float) -> None:
        self.added_latency = seconds

    def clear(self) -> None:
        """No faults, no latency, no instance remembered as pending, no counts."""
        with self._lock:
            self._faults.clear()
            self._born.clear()
            self._counts.clear()
        self.added_latency = 0.0

    def calls(self, action: str) -> int:
        """How many calls of `action` reached the proxy (faulted or not)."""
        with self._lock:
            return self._counts[action]

    def actions(self) -> list[str]:
        """Every action that reached the proxy since it was last cleared."""
        with self._lock:
            return list(self._counts)

    # --- serving ---

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _take_fault(self, action: str, body: bytes) -> _Fault | None:
        text = body.decode(errors="replace")
        with self._lock:
            self._counts[action] += 1
            for fault in self._faults:
                if fault.times > 0 and action.startswith(fault.action) and fault.matching in text:
                    fault.times -= 1
                    return fault
        return None

    def _remember(self, action: str, body: bytes) -> None:
        if action == "RunInstances" and self.pending_seconds > 0:
            born = self.clock()
            with self._lock:
                for instance_id in _INSTANCE_ID.findall(body.decode()):
                    self._born.setdefault(instance_id, born)

    def _rewrite(self, action: str, body: bytes) -> bytes:
        """Instances younger than `pending_seconds` read as pending (code 0)."""
        if action != "DescribeInstances" or not self._born:
            return body
        now = self.clock()
        with self._lock:
            born_at = list(self._born.items())
        young = {i for i, born in born_at if now - born < timedelta(seconds=self.pending_seconds)}
        if not young:
            return body
        parts = re.split(r"(?=<instanceId>)", body.decode())
        for n, part in enumerate(parts):
            found = _INSTANCE_ID.match(part)
            if found and found[1] in young:
                parts[n] = _RUNNING.sub(r"<code>0</code>\1<name>pending</name>", part, count=1)
        return "".join(parts).encode()

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        connection = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            connection.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                action = _action(self.command, self.path, body, self.headers.get("X-Amz-Target"))
                if proxy.added_latency:
                    time.sleep(proxy.added_latency)
                fault = proxy._take_fault(action, body)
                if fault is not None and fault.kind == "status":
                    self._error(fault.status)
                    return
                body = _as_ec2_launches(action, body)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("connection", "content-length")
                }
                headers["Content-Length"] = str(len(body))
                status, answer_headers, answer = proxy._forward(
                    self.command, self.path, headers, body
                )
                proxy._remember(action, answer)
                if fault is not None:  # dropped: done at moto, never answered
                    self.close_connection = True
                    return
                answer = proxy._rewrite(action, answer)
                self.send_response(status)
                for name, value in answer_headers:
                    if name.lower() not in ("content-length", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def _error(self, status: int) -> None:
                code, message = _ERRORS[status]
                body = (
                    f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
                    "</Error></Errors><RequestID>fault-proxy</RequestID></Response>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("x-amzn-ErrorType", code)  # how REST-JSON services name it
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        return Handler


def _as_ec2_launches(action: str, body: bytes) -> bytes:
    """EC2 launches as many instances as it has room for, up to MaxCount; moto launches
    MinCount. With room for all (the proxy's model), that is MaxCount."""
    if action != "RunInstances":
        return body
    form = parse_qs(body.decode(), keep_blank_values=True)
    if "MaxCount" in form:
        form["MinCount"] = form["MaxCount"]
    return urlencode(form, doseq=True).encode()


def _action(method: str, path: str, body: bytes, target: str | None = None) -> str:
    """EC2 and STS name the action in a form body, JSON services (CloudWatch) in the
    X-Amz-Target header (`GraniteServiceVersion20100801.GetMetricData`); REST services are
    named by method and path."""
    if target:
        return target.rpartition(".")[2]
    if method == "POST" and path.split("?")[0] == "/":
        return parse_qs(body.decode(errors="replace")).get("Action", ["?"])[0]
    return f"{method} {path}"


def fire_due_schedules(endpoint: str, now: datetime, region: str = REGION) -> list[str]:
    """What EventBridge Scheduler and Systems Manager would have done by `now`: for each
    one-time schedule whose time has passed and whose target starts the
    AWS-TerminateEC2Instance automation, resolve the automation's `tag:<key>` targets to the
    instances carrying that tag now, as Automation does, terminate them and, with
    ActionAfterCompletion DELETE, delete the schedule. Returns the instances terminated."""
    scheduler = _client("scheduler", endpoint, region)
    ec2 = _client("ec2", endpoint, region)
    terminated: list[str] = []
    for name in _schedule_names(scheduler):
        schedule = scheduler.get_schedule(Name=name)
        due = _AT.fullmatch(schedule["ScheduleExpression"])
        target = schedule["Target"]
        if not due or target["Arn"] != _AUTOMATION_TARGET:
            continue
        if datetime.fromisoformat(due[1]).replace(tzinfo=UTC) > now:
            continue
        automation = json.loads(target["Input"])
        if automation.get("DocumentName") == _TERMINATE_RUNBOOK:
            found = _targets(ec2, automation["Targets"])
            if found:
                ec2.terminate_instances(InstanceIds=found)
            terminated += found
        if schedule.get("ActionAfterCompletion") == "DELETE":
            scheduler.delete_schedule(Name=name)
    return terminated


def _targets(ec2: Any, targets: list[dict[str, Any]]) -> list[str]:
    """Automation's `Key=tag:<key>,Values=[...]` targets as the live instances they name."""
    filters = [
        {"Name": f"tag:{t['Key'].removeprefix('tag:')}", "Values": t["Values"]}
        for t in targets
        if t["Key"].startswith("tag:")
    ]
    if not filters:
        return []
    filters.append({"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]})
    return [
        i["InstanceId"]
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters)
        for r in page["Reservations"]
        for i in r["Instances"]
    ]


def backstop_role(
    endpoint: str, trusts: tuple[str, ...] = ("scheduler.amazonaws.com", "ssm.amazonaws.com")
) -> str:
    """Create SCHEDULER_ROLE in moto's IAM, trusting `trusts`, as an operator following the
    docs/providers.md would; returns its ARN."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": list(trusts)}, "Action": "sts:AssumeRole"}
        ],
    }
    iam = _client("iam", endpoint, REGION)
    name = SCHEDULER_ROLE.rpartition("/")[2]
    try:
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    except iam.exceptions.EntityAlreadyExistsException:
        # moto's servers in one process share one account: the role may be there already.
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
    return SCHEDULER_ROLE


def _schedule_names(scheduler: Any) -> Iterator[str]:
    for page in scheduler.get_paginator("list_schedules").paginate():
        yield from (s["Name"] for s in page["Schedules"])


def _client(service: str, endpoint: str, region: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def instances(endpoint: str, region: str = REGION) -> list[dict[str, Any]]:
    """Every instance moto holds that is not terminated, as EC2 describes it (what a person
    looking at the console would see)."""
    ec2 = _client("ec2", endpoint, region)
    found = []
    for page in ec2.get_paginator("describe_instances").paginate():
        for reservation in page["Reservations"]:
            found += [i for i in reservation["Instances"] if i["State"]["Name"] != "terminated"]
    return found


def schedules(endpoint: str, region: str = REGION) -> dict[str, dict[str, Any]]:
    """Every schedule by name, in full."""
    scheduler = _client("scheduler", endpoint, region)
    return {n: scheduler.get_schedule(Name=n) for n in _schedule_names(scheduler)}
