"""People: a person's saved public SSH keys: listed, added, removed, imported from a forge, and the
set of keys a lease's servers are created with.

Keys follow the person, not the request: the servers of a lease carry the keys the request
names (pasted with `key=`, or checked and pasted in the form) or, when it names none, the
owner's saved keys; plus every co-owner's saved keys, read when each server is created, so a
co-owner added later is on the servers created after that.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from commands.facts import quoted, when
from commands.lab import Code, Lab, Outcome, Refusal, audit, refuse
from commands.pubkeys import KeyProblem, PublicKey, read_key
from metal.forge import FORGES, ForgeName, NotFound, Unchecked
from storage.models import Lease, Server, ServerKeys, SshKey

MAX_KEYS = 20
FINGERPRINT = "SHA256:"  # how `lease.ssh_key` names a saved key, where it does not hold one

HOW_TO_ADD = (
    "`/lab keys add ssh-ed25519 AAAA... you@host` saves a public key, and "
    "`/lab keys import github LOGIN` (or gitlab) saves the keys your forge account publishes"
)


def saved_keys(session: Session, users: Iterable[str]) -> list[SshKey]:
    wanted = list(dict.fromkeys(users))
    if not wanted:
        return []
    return list(
        session.exec(
            select(SshKey).where(col(SshKey.user).in_(wanted)).order_by(col(SshKey.id))
        ).all()
    )


def public_keys(lab: Lab, user: str) -> list[PublicKey]:
    """A person's saved keys as keys (what the request form offers, one checkbox each)."""
    with lab.db.read() as session:
        lines = [k.key for k in saved_keys(session, [user])]
    return [k for k in map(read_key, lines) if isinstance(k, PublicKey)]


def list_keys(lab: Lab, actor: str) -> str:
    with lab.db.read() as session:
        keys = saved_keys(session, [actor])
    if not keys:
        return f"You have no saved SSH keys: {HOW_TO_ADD}."
    lines = [f"{n}. {_label(k)}" for n, k in enumerate(keys, 1)]
    return (
        "Your saved SSH keys (they go on every server you own or co-own):\n"
        + "\n".join(lines)
        + "\n`/lab keys remove NUMBER` removes one."
    )


def add_key(lab: Lab, actor: str, text: str, now: datetime) -> Outcome:
    found = read_key(text)
    if isinstance(found, KeyProblem):
        return _refuse_key(lab, now, actor, found)
    added, problem = _save(lab, actor, [found], "pasted", now)
    if problem:
        return refuse(lab, now, actor, "key_add", problem)
    if not added:
        return Outcome(True, f"That key is already saved: {_shown(found)}.")
    return Outcome(True, f"Saved {_shown(found)}. It goes on every server you own or co-own.")


def remove_key(lab: Lab, actor: str, which: str, now: datetime) -> Outcome:
    """`which` is the number `keys` shows or the fingerprint."""
    with lab.db.write() as session:
        keys = saved_keys(session, [actor])
        chosen = _choose(keys, which)
        if chosen is not None:
            gone = session.exec(delete(SshKey).where(col(SshKey.id) == chosen.id)).rowcount
            if gone == 1:
                audit(session, now, actor, "key_remove", fingerprint=chosen.fingerprint)
    if chosen is None or gone != 1:
        return refuse(
            lab,
            now,
            actor,
            "key_remove",
            Refusal(
                Code.NOT_FOUND,
                f"You have no saved key '{quoted(which[:80])}'; `/lab keys` lists yours with "
                "their numbers.",
            ),
        )
    return Outcome(
        True,
        f"Removed {_label(chosen)}. Servers already running keep it (labbot cannot reach into a "
        "running server); servers created from now on will not carry it.",
    )


def import_keys(lab: Lab, actor: str, forge: str, login: str, now: datetime) -> Outcome:
    """Save the keys a forge account publishes, through the same forge client as the
    repository check. A forge that is slow, rate limited or down changes nothing."""
    if forge not in FORGES or lab.forge is None:
        return refuse(
            lab,
            now,
            actor,
            "key_import",
            Refusal(
                Code.FORGE_UNAVAILABLE,
                f"This lab imports keys from {' or '.join(FORGES)} only when a forge is "
                "configured; paste a key with `/lab keys add` instead.",
            ),
        )
    lines = lab.forge.public_keys(ForgeName(forge), login)
    if isinstance(lines, NotFound):
        return refuse(
            lab,
            now,
            actor,
            "key_import",
            Refusal(Code.NOT_FOUND, f"{forge} has no account '{quoted(login)}'; check the name."),
        )
    if isinstance(lines, Unchecked):
        later = f" after {when(lines.retry_at)}" if lines.retry_at else " later"
        return refuse(
            lab,
            now,
            actor,
            "key_import",
            Refusal(
                Code.FORGE_UNAVAILABLE,
                f"No keys were imported: {lines.reason}. Try again{later}, or paste a key with "
                "`/lab keys add`.",
            ),
        )
    keys = [k for k in map(read_key, lines) if isinstance(k, PublicKey)]
    if not keys:
        return refuse(
            lab,
            now,
            actor,
            "key_import",
            Refusal(
                Code.NOT_FOUND,
                f"{forge} publishes no public SSH key for '{quoted(login)}'; add one there, or "
                "paste one with `/lab keys add`.",
            ),
        )
    added, problem = _save(lab, actor, keys, f"{forge}:{login}", now)
    if problem:
        return refuse(lab, now, actor, "key_import", problem)
    fresh = {k.fingerprint for k in added}
    lines_out = [
        f"• {_shown(k)}{'' if k.fingerprint in fresh else ' (already saved)'}" for k in keys
    ]
    return Outcome(
        True,
        f"Imported {len(added)} of the {len(keys)} keys {forge} publishes for {quoted(login)}:\n"
        + "\n".join(lines_out),
    )


def _save(
    lab: Lab, actor: str, keys: list[PublicKey], source: str, now: datetime
) -> tuple[list[PublicKey], Refusal | None]:
    """Insert the keys not saved yet; the unique (user, fingerprint) keeps two adds of one key
    racing each other from saving it twice."""
    with lab.db.write() as session:
        known = {k.fingerprint for k in saved_keys(session, [actor])}
        new = list({k.fingerprint: k for k in keys if k.fingerprint not in known}.values())
        if len(known) + len(new) > MAX_KEYS:
            return [], Refusal(
                Code.TOO_MANY,
                f"You would have {len(known) + len(new)} saved keys; the limit is {MAX_KEYS}. "
                "Remove some with `/lab keys remove NUMBER`.",
            )
        try:
            with session.begin_nested():
                session.add_all(
                    SshKey(
                        user=actor,
                        key=key.line,
                        fingerprint=key.fingerprint,
                        source=source,
                        added_at=now,
                    )
                    for key in new
                )
        except IntegrityError:
            return [], Refusal(
                Code.CHANGED_MEANWHILE,
                "That key was being saved at the same moment; `/lab keys` shows it.",
            )
        if new:
            audit(
                session,
                now,
                actor,
                "key_add",
                source=source,
                fingerprints=[k.fingerprint for k in new],
            )
    return new, None


def _refuse_key(lab: Lab, now: datetime, actor: str, problem: KeyProblem) -> Outcome:
    """The sentence and its code, audited; a private key is recorded as such, and nothing of
    it is kept."""
    code = Code.PRIVATE_KEY if problem.private else Code.BAD_INPUT
    with lab.db.write() as session:
        audit(
            session, now, actor, "key_add", None, "refused", code=code, private_key=problem.private
        )
    return Outcome(False, problem.sentence, code=code)


def _choose(keys: list[SshKey], which: str) -> SshKey | None:
    word = which.strip().removeprefix("#")
    if word.isascii() and word.isdigit() and 1 <= int(word) <= len(keys):
        return keys[int(word) - 1]
    bare = word.removeprefix("SHA256:")
    return next((k for k in keys if bare and k.fingerprint == f"SHA256:{bare}"), None)


def _shown(key: PublicKey) -> str:
    """A key as people see it in our sentences: its comment is the person's words."""
    return quoted(key.label)


def _label(key: SshKey) -> str:
    found = read_key(key.key)
    shown = _shown(found) if isinstance(found, PublicKey) else key.fingerprint
    origin = f" from {key.source}" if key.source != "pasted" else ""
    return f"{shown}{origin}"


def request_keys(
    session: Session, actor: str, pasted: str, chosen: tuple[str, ...] | None
) -> tuple[str, str | None]:
    """The keys a new request names, one a line (`lease.ssh_key`), and why it cannot be filed
    if it cannot.

    `chosen` is the fingerprints checked in the form (None when no choice was offered: an
    inline request, or a form for someone with no saved keys). A checked key is named by its
    fingerprint, so that, like every saved key, it is read when each server is created and a
    key removed in the meantime goes on no server created after; a pasted key is kept whole. A
    request that names no key takes all the owner's saved keys at each create."""
    if chosen is None:
        if pasted or has_saved_key(session, actor):
            return pasted, None
        return "", NO_KEY
    saved = {k.fingerprint: k.key for k in saved_keys(session, [actor])}
    gone = [fp for fp in chosen if fp not in saved]
    if gone:
        return "", (
            f"{quoted(gone[0][:60])} is no longer one of your saved keys; open the form again "
            "to see the keys you have now"
        )
    lines = [*chosen, *([pasted] if pasted else [])]
    if not lines:
        return "", "check at least one of your saved keys, or paste a public key"
    return "\n".join(lines), None


def lease_keys_all(
    session: Session, leases: list[Lease], co_owners: dict[int, list[str]]
) -> dict[int, list[PublicKey]]:
    """The keys each lease's servers are created with: the keys the request names (a pasted
    line as it is, a checked saved key by its fingerprint while the owner still has it saved),
    or else all the owner's saved keys; then every co-owner's saved keys. One of each, in that
    order. Everyone's saved keys are read in one query, for all the leases."""
    saved_by = _saved_by_user(
        session, [user for lease in leases for user in (lease.owner, *co_owners[lease.id])]
    )
    return {lease.id: _lease_keys(lease, co_owners[lease.id], saved_by) for lease in leases}


def _lease_keys(
    lease: Lease, co_owners: list[str], saved_by: dict[str, list[SshKey]]
) -> list[PublicKey]:
    named = lease.ssh_key.splitlines()
    saved = {k.fingerprint: k.key for k in saved_by.get(lease.owner, [])}
    own = [saved.get(n, "") if n.startswith(FINGERPRINT) else n for n in named] or [*saved.values()]
    lines = own + [k.key for user in co_owners for k in saved_by.get(user, [])]
    keys = [k for k in map(read_key, lines) if isinstance(k, PublicKey)]
    return list({k.fingerprint: k for k in keys}.values())


def _saved_by_user(session: Session, users: Iterable[str]) -> dict[str, list[SshKey]]:
    found: dict[str, list[SshKey]] = defaultdict(list)
    for key in saved_keys(session, users):
        found[key.user].append(key)
    return found


def has_saved_key(session: Session, user: str) -> bool:
    return session.exec(select(SshKey.id).where(SshKey.user == user).limit(1)).first() is not None


NO_KEY = (
    "a request needs an SSH key for the servers and you have none saved: "
    + HOW_TO_ADD
    + ', or put key="..." in the request'
)


def keys_on_all(
    session: Session, leases: list[tuple[Lease, list[Server], list[str]]]
) -> dict[int, list[str]]:
    """For each lease (with its servers and co-owners), what its servers were created with
    (recorded per server at its create), labelled where the key is still known, marked when
    only some of the servers carry it. Two queries for all the leases: the recorded keys, and
    the saved keys of everyone concerned."""
    recorded = dict(
        session.exec(
            select(ServerKeys.server_id, ServerKeys.fingerprints).where(
                col(ServerKeys.server_id).in_([s.id for _, servers, _ in leases for s in servers])
            )
        ).all()
    )
    saved_by = _saved_by_user(
        session, [user for lease, _, people in leases for user in (lease.owner, *people)]
    )
    labels = {}
    for lease, servers, co_owners in leases:
        counts = Counter(fp for s in servers for fp in recorded.get(s.id, "").split())
        known = {k.fingerprint: _shown(k) for k in _lease_keys(lease, co_owners, saved_by)}
        every = len(servers)
        labels[lease.id] = [
            known.get(fp, fp) + ("" if n == every else f" (on {n} of {every} servers)")
            for fp, n in counts.items()
        ]
    return labels


def keys_words(labels: list[str]) -> str:
    if not labels:
        return (
            "labbot sent no SSH key with these servers, so only keys the provider adds by "
            "itself are on them; `/lab keys add` saves yours for the next lease."
        )
    return "Keys on the servers:\n" + "\n".join(f"• {label}" for label in labels)
