"""Lease life: a lease's servers handed to its people as files.

The ready DM (provision) comes with a notice that uploads every server of the lease to each of
its people as a CSV, an SSH config and an Ansible inventory (their contents: serverfiles); when
the servers change afterwards (one vanished: reconcile), the files are sent again, saying what
they replace. The notifier uploads them through the outbox, like every message.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from commands.coowners import audiences
from commands.facts import servers_summary
from commands.lab import Lab
from commands.notices import Draft, Kind
from commands.serverfiles import ServerFacts, files_words
from commands.states import ServerState
from storage.models import Lease, Server


def files_notice(
    lease_id: int, login: str, servers: list[ServerFacts], audience: str, again: str = ""
) -> Draft:
    """The notice that uploads the files to one person; `again` says what they replace."""
    first = servers[0]["hostname"] if servers else None
    return Draft(
        Kind.SERVER_FILES,
        audience,
        files_words(lease_id, len(servers), first) + again,
        lease_id,
        {"login": login, "servers": list(servers)},
    )


def send_files_again(session: Session, lab: Lab, lease: Lease, why: str) -> list[Draft]:
    """The lease's servers changed after its files were sent (one vanished, one was replaced):
    new files to each of its people, saying they replace the earlier ones. None when no server
    is left to list."""
    active = list(
        session.exec(
            select(Server)
            .where(Server.lease_id == lease.id, Server.state == ServerState.ACTIVE)
            .order_by(col(Server.id))
        ).all()
    )
    if not active:
        return []
    login = lab.plans().login_user(lease.os)
    servers = servers_summary(active)
    again = f" They replace the files sent earlier: {why}."
    return [
        files_notice(lease.id, login, servers, audience, again)
        for audience in audiences(session, lease)
    ]
