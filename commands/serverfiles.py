"""Rules: the files that put every server of a lease in its people's hands.

A 500-server lease does not fit in a Slack message, so its servers travel as files: a CSV for
a spreadsheet or a script, an SSH config to `Include`, and an Ansible inventory. They are
written here from the facts the ready notice carries, with no Slack and no database, so the
notifier only uploads them and a test can read exactly what the owner receives.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

COLUMNS = ("hostname", "address", "addresses", "metro", "plan", "state", "login")

ServerFacts = Mapping[str, Any]  # hostname, ips (space-separated), metro, plan, state


@dataclass(frozen=True)
class ServerFile:
    filename: str
    title: str
    content: str


def server_files(lease_id: int, login: str, servers: Sequence[ServerFacts]) -> list[ServerFile]:
    """The CSV, the SSH config and the Ansible inventory of the lease's servers, in that order."""
    return [
        ServerFile(f"lease-{lease_id}-servers.csv", "Servers (CSV)", servers_csv(login, servers)),
        ServerFile(
            f"lease-{lease_id}-ssh_config",
            "SSH config",
            ssh_config(lease_id, login, servers),
        ),
        ServerFile(
            f"lease-{lease_id}-inventory.ini",
            "Ansible inventory",
            inventory(lease_id, login, servers),
        ),
    ]


def files_words(lease_id: int, count: int, first: str | None) -> str:
    """How the files are introduced where they arrive, and what to type with each."""
    ssh = f"then `ssh {first}`" if first else "then `ssh HOSTNAME`"
    return (
        f"Every server of lease #{lease_id} ({count}), in three files: "
        f"`lease-{lease_id}-servers.csv` (hostname, addresses, metro, plan, state), "
        f"`lease-{lease_id}-ssh_config` (`Include` it from ~/.ssh/config, {ssh}) and "
        f"`lease-{lease_id}-inventory.ini` "
        f"(`ansible -i lease-{lease_id}-inventory.ini all -m ping`)."
    )


def first_address(ips: str) -> str:
    """The address to log in at: the provider lists the public one first."""
    return next(iter(ips.replace(",", " ").split()), "")


def servers_csv(login: str, servers: Sequence[ServerFacts]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for s in servers:
        ips = str(s.get("ips") or "")
        writer.writerow(
            [
                s["hostname"],
                first_address(ips),
                " ".join(ips.replace(",", " ").split()),
                s.get("metro", ""),
                s.get("plan", ""),
                s.get("state", ""),
                login,
            ]
        )
    return out.getvalue()


def ssh_config(lease_id: int, login: str, servers: Sequence[ServerFacts]) -> str:
    lines = [
        f"# The servers of lease #{lease_id}, written by labbot.",
        f"# Add `Include /path/to/lease-{lease_id}-ssh_config` at the top of ~/.ssh/config.",
    ]
    for s in servers:
        address = first_address(str(s.get("ips") or ""))
        if not address:
            lines.append(f"# {s['hostname']}: no address yet")
            continue
        lines += ["", f"Host {s['hostname']}", f"    HostName {address}", f"    User {login}"]
    return "\n".join(lines) + "\n"


def inventory(lease_id: int, login: str, servers: Sequence[ServerFacts]) -> str:
    """One group of the lease's servers; across several metros, a group for each metro
    (`lease_12_ams1`) and the lease's group made of them."""
    group = f"lease_{lease_id}"
    metros = list(dict.fromkeys(str(s.get("metro", "")) for s in servers))
    lines = [f"# The servers of lease #{lease_id}, written by labbot."]
    if len(metros) > 1:
        groups = {metro: f"{group}_{re.sub(r'[^A-Za-z0-9_]', '_', metro)}" for metro in metros}
        for metro in metros:
            lines += [f"[{groups[metro]}]", *_hosts(s for s in servers if s.get("metro") == metro)]
            lines.append("")
        lines += [f"[{group}:children]", *groups.values()]
    else:
        lines += [f"[{group}]", *_hosts(servers)]
    lines += ["", f"[{group}:vars]", f"ansible_user={login}"]
    return "\n".join(lines) + "\n"


def _hosts(servers: Iterable[ServerFacts]) -> list[str]:
    lines = []
    for s in servers:
        address = first_address(str(s.get("ips") or ""))
        if address:
            lines.append(f"{s['hostname']} ansible_host={address}")
        else:
            lines.append(f"# {s['hostname']}: no address yet")
    return lines
