"""Who may review: the ids in LABBOT_REVIEWERS, plus the members of a Slack user group.

The group is asked with usergroups.users.list and remembered for a minute, so a reviewer added
in Slack can decide within a minute without every click costing a Web API call. When Slack cannot
be asked, the last answer stands (and, before any answer, only the configured ids count).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from commands.policy import Roles

log = logging.getLogger(__name__)

GROUP_TTL = 60.0


class GroupMembers:
    def __init__(self, client: WebClient, group: str, ttl: float = GROUP_TTL) -> None:
        self.client, self.group, self.ttl = client, group, ttl
        self._members: frozenset[str] = frozenset()
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def __call__(self) -> frozenset[str]:
        with self._lock:
            if time.monotonic() - self._fetched_at < self.ttl:
                return self._members
            try:
                users = self.client.usergroups_users_list(usergroup=self.group)["users"]
                self._members = frozenset(users)
            except SlackApiError as error:
                log.warning("reviewer group %s not readable: %s", self.group, error)
            self._fetched_at = time.monotonic()
            return self._members


@dataclass(frozen=True)
class GroupRoles(Roles):
    """Roles whose reviewers also include the members of a Slack user group."""

    group_members: Callable[[], frozenset[str]] = field(default=frozenset, compare=False)

    def is_reviewer(self, user: str) -> bool:
        return super().is_reviewer(user) or user in self.group_members()
