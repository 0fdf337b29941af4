"""Rules: the slash-command text, parsed into a `Command` with no Slack and no database in sight.

Kept pure so hypothesis can throw any string at it: the only exception it raises is
`GrammarError`, whose message is the sentence the person sees (what was wrong, what is right).
The text is Slack's, escaped (`commands/slacktext.py`): words are split as Slack sent them, the
people in `with=`, `share` and `unshare` are read from Slack's mentions, and every other value
is read back into what the person typed.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import timedelta

from commands.durations import DurationError, parse_duration
from commands.metros import MetroError, read_metros
from commands.pages import MAX_PAGE_DIGITS
from commands.policy import MAX_CO_OWNERS, RequestInput
from commands.pubkeys import PRIVATE_KEY_REFUSAL, looks_private
from commands.slacktext import plain
from metal.forge import FORGES

USAGE: dict[str, str] = {
    "request": (
        'request [COUNT PLAN METRO DURATION project=NAME repo=URL "why"] '
        "[metro=ams1,ewr1 count=2 | metro=ams1:4,ewr1:2] "
        '[class=foundation|member|other org=NAME] [os=OS key="ssh-ed25519 ..." '
        'with=@user,@user partial=yes donor=NAME] [from=2026-12-14T09:00|"tomorrow 09:00" '
        "until=...]  (no arguments: a form; from= books a start ahead, in your time zone)"
    ),
    "keys": (
        "keys [add ssh-ed25519 AAAA... | remove NUMBER | import github|gitlab LOGIN]  "
        "(your saved SSH keys)"
    ),
    "share": "share ID @user  (a co-owner gets the DMs and may extend or release)",
    "unshare": "unshare ID @user",
    "list": "list [@user] [PAGE]  (your leases, or someone else's; 20 a page)",
    "show": "show ID [servers PAGE]  (a lease, and its servers a page at a time)",
    "extend": "extend ID DURATION  (like 24h or 3d)",
    "release": "release ID",
    "cancel": "cancel ID  (a request still waiting for review, or a booking not yet started)",
    "credit": "credit  (the lab's money this month)",
    "plans": "plans  (server types, metros, OSes)",
    "calendar": "calendar PLAN METRO  (the coming two weeks of a plan's bookings in a metro)",
    "approve": 'approve ID [override="why"]  (reviewers)',
    "deny": "deny ID REASON  (reviewers)",
    "provision": "provision ID  (admins)",
    "queue": "queue [PAGE]  (reviewers: the requests waiting, in the order they are reviewed)",
    "help": "help",
}

_OPTION_FIELDS = {
    "project": "project",
    "repo": "repo_url",
    "repo_url": "repo_url",
    "purpose": "purpose",
    "os": "os",
    "key": "ssh_key",
    "ssh_key": "ssh_key",
    "class": "applicant",
    "org": "org",
    "donor": "donor",
}
_MENTION = re.compile(r"<@([UW][A-Z0-9]{2,20})(?:\|[^>]{0,80})?>|([UW][A-Z0-9]{2,20})")
_LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
CLASSES_HELP = (
    "Who is asking: `class=foundation` (one of the foundation's projects), "
    "`class=member org=NAME` (a member organization) or `class=other` (any other open-source "
    "project, the default). Reviewers see requests in that order, then by how long they have "
    "waited; a share of each month is kept for other open-source projects."
)
_YES = {"yes", "y", "true", "1", "on"}
_NO = {"no", "n", "false", "0", "off"}
# Slack clients turn straight quotes into typographic ones; people paste those back.
_SMART_QUOTES = str.maketrans(
    {"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'"}
)


class GrammarError(ValueError):
    """The text could not be understood; the message says what would be."""


@dataclass(frozen=True)
class Command:
    verb: str
    lease_id: int | None = None
    duration: timedelta | None = None
    reason: str = ""
    override: str | None = None
    request: RequestInput | None = None
    action: str = ""  # keys: list, add, remove, import
    subject: str = ""  # keys: the key, its number or fingerprint, or the forge login
    forge: str = ""
    users: tuple[str, ...] = ()  # share, unshare: Slack user ids; list: whose leases
    page: int = 1  # list, queue; show: which page of the lease's servers
    plan: str = ""  # calendar
    metro: str = ""  # calendar

    @property
    def opens_form(self) -> bool:
        """`request` with nothing after it: the person wants the modal."""
        return self.verb == "request" and self.request is None


def help_text(command: str = "/lab") -> str:
    usage = "\n".join(f"• `{command} {usage}`" for usage in USAGE.values())
    return f"Usage:\n{usage}\n{CLASSES_HELP}"


def parse(text: str) -> Command:
    typed = plain(text)
    head, _, rest = typed.strip().partition(" ")
    if head.lower() == "keys":
        return _keys(rest.strip())
    if looks_private(typed):
        raise GrammarError(PRIVATE_KEY_REFUSAL)
    words = _split(text)
    if not words:
        return Command("help")
    verb, args = plain(words[0]).lower(), words[1:]
    if verb not in USAGE:
        raise GrammarError(
            f"I don't know `{verb[:40]}`; try one of {', '.join(USAGE)} (`help` explains each)."
        )
    return _PARSERS[verb](verb, args)


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text.translate(_SMART_QUOTES))
    except ValueError as error:
        raise GrammarError(
            f"I could not read that ({error}); close every quote you open, "
            'like purpose="load tests".'
        ) from error


def _bare(verb: str, args: list[str]) -> Command:
    if args:
        raise _usage(verb, f"`{verb}` takes nothing after it")
    return Command(verb)


def _calendar(verb: str, args: list[str]) -> Command:
    if len(args) != 2:
        raise _usage(verb, "`calendar` takes a plan and a metro, like `calendar c1.small.x86 ams1`")
    return Command(verb, plan=plain(args[0]), metro=plain(args[1]))


def _paged(verb: str, args: list[str]) -> Command:
    """`queue [PAGE]`, `list [@user] [PAGE]`: a word that starts like a number is the page."""
    person = args[:1] if verb == "list" and args and not _looks_numeric(args[0]) else []
    rest = args[len(person) :]
    if len(rest) > 1:
        whose = "a person and " if verb == "list" else ""
        raise _usage(verb, f"`{verb}` takes at most {whose}one page number")
    number = _page(verb, rest[0]) if rest else 1
    return Command(verb, users=_users(verb, person) if person else (), page=number)


def _looks_numeric(escaped: str) -> bool:
    return plain(escaped)[:1] in tuple("0123456789-+#")


def _page(verb: str, escaped: str) -> int:
    digits = plain(escaped).removeprefix("#")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > MAX_PAGE_DIGITS:
        raise _usage(verb, f"'{plain(escaped)[:40]}' is not a page number (like 2)")
    if int(digits) == 0:
        raise _usage(verb, "pages are numbered from 1")
    return int(digits)


def _with_id(verb: str, args: list[str]) -> Command:
    if len(args) != 1:
        raise _usage(verb, f"`{verb}` takes one lease number")
    return Command(verb, lease_id=_lease_id(verb, args[0]))


def _show(verb: str, args: list[str]) -> Command:
    """`show 12`, or `show 12 servers 3` for the third page of its servers."""
    if len(args) < 2:
        return _with_id(verb, args)
    lease_id = _lease_id(verb, args[0])
    if len(args) != 3 or plain(args[1]).lower() != "servers":
        raise _usage(verb, "`show` takes a lease number, then `servers` and a page number")
    page = plain(args[2])
    if not (page.isascii() and page.isdigit()) or len(page) > MAX_PAGE_DIGITS or int(page) == 0:
        raise _usage(
            verb,
            f"'{page[:20]}' is not a page number; `show {lease_id} servers 2` shows the second "
            "page of its servers",
        )
    return Command(verb, lease_id=lease_id, page=int(page))


def _extend(verb: str, args: list[str]) -> Command:
    if len(args) != 2:
        raise _usage(verb, "`extend` takes a lease number and a duration")
    return Command(
        verb, lease_id=_lease_id(verb, args[0]), duration=_duration(verb, plain(args[1]))
    )


def _deny(verb: str, args: list[str]) -> Command:
    if len(args) < 2:
        raise _usage(verb, "`deny` takes a lease number and a reason the requester can act on")
    return Command(verb, lease_id=_lease_id(verb, args[0]), reason=plain(" ".join(args[1:])))


def _approve(verb: str, args: list[str]) -> Command:
    if not args:
        raise _usage(verb, "`approve` takes a lease number")
    lease_id = _lease_id(verb, args[0])
    if any("=" not in arg for arg in args[1:]):
        raise _usage(verb, 'after the lease number `approve` only takes override="why"')
    options = _options(verb, args[1:], allowed={"override"})
    override = options.get("override")
    return Command(verb, lease_id=lease_id, override=None if override is None else plain(override))


def _request(verb: str, args: list[str]) -> Command:
    if not args:
        return Command(verb)
    args = _joined_times(args)
    positional = [a for a in args if "=" not in a]
    options = _options(
        verb,
        [a for a in args if "=" in a],
        allowed={*_OPTION_FIELDS, "partial", "with", "metro", "count", "from", "until"},
    )
    metros_given = plain(options["metro"]) if "metro" in options else None
    count_given = plain(options["count"]) if "count" in options else None
    per_metro = metros_given is not None and ":" in metros_given
    # The words not given as options, in their places: COUNT PLAN METRO DURATION (with
    # `until=` the end gives the length, so DURATION is left out).
    names = [
        *(["count"] if count_given is None and not per_metro else []),
        "plan",
        *(["metro"] if metros_given is None else []),
        *(["duration"] if "until" not in options else []),
    ]
    if len(positional) < len(names):
        raise _usage(
            verb,
            "an inline request starts with COUNT PLAN METRO DURATION "
            "(or PLAN DURATION with count= and metro=; no DURATION with from= and until=)",
        )
    words = dict(zip(names, map(plain, positional), strict=False))
    plan = words["plan"]
    if per_metro and _looks_numeric(positional[0]):
        raise _usage(verb, "with a count per metro (metro=ams1:4,ewr1:2), leave out COUNT")
    count_word = count_given if count_given is not None else words.get("count")
    try:
        counts = read_metros(
            metros_given if metros_given is not None else words["metro"],
            None if count_word is None else _count(count_word),
        )
    except MetroError as error:
        raise _usage(verb, str(error).rstrip(".")) from error
    fields: dict = {_OPTION_FIELDS[k]: plain(v) for k, v in options.items() if k in _OPTION_FIELDS}
    fields["start"] = plain(options.get("from", ""))
    fields["end"] = plain(options.get("until", ""))
    if "duration" in words:
        fields["duration"] = _duration(verb, words["duration"])
    if "with" in options:
        fields["co_owners"] = _users(verb, [options["with"]])
    if "applicant" in fields:
        fields["applicant"] = fields["applicant"].lower()
    extra_purpose = plain(" ".join(positional[len(names) :]))
    if extra_purpose:
        fields["purpose"] = " ".join(filter(None, [fields.get("purpose", ""), extra_purpose]))
    request = RequestInput(
        plan=plan,
        metro=next(iter(counts)),
        count=sum(counts.values()),
        metro_counts=tuple(counts.items()) if len(counts) > 1 else (),
        allow_partial=_yes_no(plain(options.get("partial", "no"))),
        **fields,
    )
    return Command(verb, request=request)


_TIME_WORD = re.compile(r"\d{1,2}:\d{2}")


def _joined_times(args: list[str]) -> list[str]:
    """`from=tomorrow 09:00` typed without quotes arrives as two words: the clock time that
    follows `from=` or `until=` is put back with it."""
    out: list[str] = []
    for arg in args:
        previous = plain(out[-1]).lower() if out else ""
        if _TIME_WORD.fullmatch(plain(arg)) and previous.startswith(("from=", "until=")):
            out[-1] = f"{out[-1]} {arg}"
        else:
            out.append(arg)
    return out


def _keys(rest: str) -> Command:
    """Read from the typed text, not shlex: a key's comment may hold quotes, and a pasted
    private key must reach the use case whole, to be refused (and audited) there."""
    action, _, arg = rest.partition(" ")
    action, arg = action.lower() or "list", arg.strip()
    if action == "list" and not arg:
        return Command("keys", action="list")
    if action == "add" and arg:
        return Command("keys", action="add", subject=arg)
    if action == "remove" and arg and len(arg.split()) == 1:
        return Command("keys", action="remove", subject=arg)
    if action == "import":
        words = arg.split()
        if len(words) == 2 and words[0].lower() in FORGES and _LOGIN.fullmatch(words[1]):
            return Command("keys", action="import", forge=words[0].lower(), subject=words[1])
        raise _usage("keys", "`keys import` takes github or gitlab and an account name")
    if looks_private(rest):
        raise GrammarError(PRIVATE_KEY_REFUSAL)
    raise _usage("keys", "`keys` lists your keys; `add`, `remove` and `import` change them")


def _share(verb: str, args: list[str]) -> Command:
    if len(args) < 2:
        raise _usage(verb, f"`{verb}` takes a lease number and a person")
    users = _users(verb, args[1:])
    if verb == "unshare" and len(users) != 1:
        raise _usage(verb, "`unshare` takes a lease number and one person")
    return Command(verb, lease_id=_lease_id(verb, args[0]), users=users)


def _users(verb: str, words: list[str]) -> tuple[str, ...]:
    """People as Slack sent them: a mention Slack resolved, `<@U123|alice>`; or a member ID,
    bare or in a mention typed by hand (which Slack sends as text, `&lt;@U123&gt;`)."""
    found = []
    for word in (w for chunk in words for w in chunk.split(",") if w):
        match = _MENTION.fullmatch(word) or _MENTION.fullmatch(plain(word))
        if match is None:
            raise _usage(
                verb,
                f"Slack did not recognise '{plain(word)[:40]}' as a member of this workspace; "
                "pick each person from the list Slack offers as you type @, or give their member "
                "ID (profile, then Copy member ID)",
            )
        found.append(match[1] or match[2])
    if len(found) > MAX_CO_OWNERS:
        raise _usage(verb, f"name at most {MAX_CO_OWNERS} people")
    return tuple(dict.fromkeys(found))


def _options(verb: str, args: list[str], allowed: set[str]) -> dict[str, str]:
    """`key=value` words as Slack sent them: the key as typed (a link with `=` in it is named
    as the person wrote it), the value still escaped for the caller to read."""
    options: dict[str, str] = {}
    for arg in args:
        value = arg.partition("=")[2]
        key = plain(arg).partition("=")[0].lower()
        if key not in allowed:
            raise _usage(verb, f"`{key}=` means nothing to `{verb}`")
        options[key] = value
    return options


def _lease_id(verb: str, escaped: str) -> int:
    word = plain(escaped)
    digits = word.removeprefix("#")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 12 or int(digits) == 0:
        raise _usage(verb, f"'{word}' is not a lease number (like 12 or #12)")
    return int(digits)


def _count(word: str) -> int:
    if not (word.isascii() and word.isdigit()) or len(word) > 6:
        raise _usage("request", f"'{word}' is not a number of servers")
    return int(word)


def _duration(verb: str, word: str) -> timedelta:
    try:
        return parse_duration(word)
    except DurationError as error:
        raise _usage(verb, str(error)) from error


def _yes_no(word: str) -> bool:
    if word.lower() in _YES:
        return True
    if word.lower() in _NO:
        return False
    raise _usage("request", f"partial={word} must be yes or no")


def _usage(verb: str, problem: str) -> GrammarError:
    return GrammarError(f"{problem[0].upper()}{problem[1:]}. Usage: `{USAGE[verb]}`")


_PARSERS = {
    "request": _request,
    "list": _paged,
    "credit": _bare,
    "plans": _bare,
    "calendar": _calendar,
    "help": _bare,
    "queue": _paged,
    "show": _show,
    "release": _with_id,
    "cancel": _with_id,
    "provision": _with_id,
    "extend": _extend,
    "approve": _approve,
    "deny": _deny,
    "share": _share,
    "unshare": _share,
}
