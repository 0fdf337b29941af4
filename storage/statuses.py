"""The values a server's and an extension request's `state` column may hold.

They live in storage, not beside the lease's states in commands/states.py, because the table
models give these columns their defaults (a server row starts `pending`, an extension request
`pending`) and storage may not import commands/. The transition tables, which are rules rather
than values, stay in commands/states.py with the lease's, which re-exports these enums so the
use cases import every state from one place. Lease states need no default, so `State` stays in
commands/states.py."""

from __future__ import annotations

from enum import StrEnum


class ServerState(StrEnum):
    PENDING = "pending"  # not created yet (or waiting to be created again)
    CREATING = "creating"  # create sent, answer not recorded
    PROVISIONING = "provisioning"  # the device exists and is coming up
    ACTIVE = "active"  # up and billing
    DELETING = "deleting"  # its delete is owed (or sent and not yet confirmed)
    DELETED = "deleted"  # confirmed gone
    FAILED = "failed"  # never created: the attempts ran out
    VANISHED = "vanished"  # gone from the provider while we thought it active


class ExtensionState(StrEnum):
    PENDING = "pending"  # waiting for a reviewer
    APPROVED = "approved"
    DENIED = "denied"
