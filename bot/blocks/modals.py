"""Modals: the request form, the reason for a denial, the write-up link. Block ids of the
request form are the field names `check_request` reports, so its errors land under the right
input without a mapping table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.blocks.kit import OPTION_TEXT_LIMIT, Block, number, plain, truncate
from bot.blocks.kit import option as choice
from commands.billing import format_cents
from commands.durations import EXAMPLES, DurationError, parse_duration
from commands.keys import MAX_KEYS
from commands.metros import MetroError, counts_for
from commands.policy import LIMITS, RequestInput
from commands.process import CLASSES, LABELS, OTHER
from commands.pubkeys import PublicKey
from metal.provider import Catalog

REQUEST = "lab_request"
SHARE = "lab_share"
DENY = "lab_deny"
WRITEUP = "lab_writeup"
VALUE = "value"  # the action_id of every input: one input per block
HINT_LIMIT = 2000
START = "start"  # a booking's start: a datetimepicker, in the person's own zone
SAVED_KEYS = "saved_keys"  # block ids saved_keys, saved_keys_2, ...: checkboxes of saved keys
CHECKBOXES_LIMIT = 10  # options Slack allows in one checkboxes element

_CLASS_HINTS = {
    "foundation": "one of the foundation's projects; reviewed first",
    "member": "a member organization; name it below",
    "other": "any other open-source project; a share of each month is kept for these",
}

View = dict[str, Any]
Values = dict[str, dict[str, dict[str, Any]]]


def request_modal(catalog: Catalog, default_os: str, saved_keys: list[PublicKey]) -> View:
    """The requester's saved keys are offered as checkboxes, all checked; the key field is for
    a key that is not saved, and is only needed when there are none."""
    return _modal(
        REQUEST,
        "Ask for servers",
        "Send request",
        [
            _select(
                "applicant",
                "Who is asking",
                [(c, LABELS[c].capitalize(), _CLASS_HINTS[c]) for c in CLASSES],
                initial=OTHER,
            ),
            _text(
                "org",
                "Member organization (if a member is asking)",
                "Acme",
                optional=True,
                limit="org",
            ),
            _text("project", "Project", "coredns", limit="project"),
            _text(
                "repo_url",
                "Repository URL",
                "https://github.com/coredns/coredns",
                limit="repo_url",
            ),
            _text(
                "purpose",
                "What are the servers for?",
                "scale tests of the kubernetes plugin",
                multiline=True,
                limit="purpose",
            ),
            _select(
                "plan",
                "Plan",
                [(slug, _plan_label(plan), plan.specs) for slug, plan in catalog.plans.items()],
            ),
            _select(
                "metro",
                "Metros (one or several: one lease across them)",
                [(m.code, f"{m.code} ({m.name})", "") for m in catalog.metros.values()],
                several=True,
            ),
            _select(
                "os",
                "Operating system",
                [(os, os, "") for os in catalog.oses],
                initial=default_os,
                optional=True,
            ),
            _text(
                "count",
                "How many servers (in each metro)",
                "1",
                initial="1",
                hint="A whole number, that many in each metro chosen; or a count per metro, "
                "like ams1:4,ewr1:2.",
            ),
            _text("duration", "For how long", EXAMPLES, initial="48h"),
            _input(
                START,
                "Starts (leave empty for as soon as approved)",
                {"type": "datetimepicker", "action_id": VALUE},
                True,
            ),
            *_key_choices(saved_keys),
            _text(
                "ssh_key",
                "Another public SSH key" if saved_keys else "Your public SSH key",
                "ssh-ed25519 AAAA... you@host",
                multiline=True,
                limit="ssh_key",
                optional=bool(saved_keys),
                hint=_keys_hint(saved_keys),
            ),
            _users("co_owners", "Co-owners (they get the DMs, may extend or release)"),
        ],
    )


def _keys_hint(saved_keys: list[PublicKey]) -> str:
    if not saved_keys:
        return "You have no saved keys: paste one here, or save one with `/lab keys add`."
    return "A key you have not saved; it goes on the servers with the keys checked above."


def _key_choices(saved_keys: list[PublicKey]) -> list[Block]:
    """One checkbox per saved key (its comment, its fingerprint), all checked, ten to a block
    as Slack allows."""
    groups = [
        saved_keys[n : n + CHECKBOXES_LIMIT] for n in range(0, len(saved_keys), CHECKBOXES_LIMIT)
    ]
    blocks = []
    for n, group in enumerate(groups, 1):
        options = [_option(k.fingerprint, _key_text(k), k.fingerprint) for k in group]
        element = {
            "type": "checkboxes",
            "action_id": VALUE,
            "options": options,
            "initial_options": options,
        }
        label = "Saved keys to put on the servers" + (f" ({n})" if len(groups) > 1 else "")
        blocks.append(_input(SAVED_KEYS if n == 1 else f"{SAVED_KEYS}_{n}", label, element, True))
    return blocks


def _key_text(key: PublicKey) -> str:
    kind = key.kind.removeprefix("ssh-").removesuffix("@openssh.com")
    return f"{key.comment} ({kind})" if key.comment else kind


def chosen_keys(values: Values) -> tuple[str, ...] | None:
    """The fingerprints checked among the saved keys; None when the form offered none."""
    groups = [v for block_id, v in values.items() if block_id.startswith(SAVED_KEYS)]
    if not groups:
        return None
    picked = (
        option.get("value")
        for group in groups
        for option in ((group.get(VALUE) or {}).get("selected_options") or [])
        if isinstance(option, dict)
    )
    return tuple(dict.fromkeys(p for p in picked if isinstance(p, str)))[:MAX_KEYS]


def share_modal(lease_id: int) -> View:
    view = _modal(
        SHARE,
        "Add co-owners",
        "Add",
        [_users("co_owners", f"Who shares lease #{lease_id}?", optional=False)],
    )
    return {**view, "private_metadata": str(lease_id)}


def chosen_users(values: Values, block_id: str) -> tuple[str, ...]:
    """The user ids picked in a multi_users_select (Slack sends None when nobody is)."""
    entry = next(iter((values.get(block_id) or {}).values()), None) or {}
    users = entry.get("selected_users") or []
    return tuple(u for u in users if isinstance(u, str) and u.isascii() and u.isalnum())[:20]


def parse_request(values: Values) -> tuple[RequestInput, dict[str, str]]:
    """The form's answers as a RequestInput, plus the errors of fields that are not even the
    right kind of thing (a count that is not a number); policy checks come after."""
    errors: dict[str, str] = {}
    metros = answers(values, "metro")
    counts = {"": 1}  # no metro: the one error is that
    if not metros:
        errors["metro"] = "Choose a metro, or several for one lease across them."
    else:
        try:
            counts = counts_for(metros, answer(values, "count"))
        except MetroError as error:
            errors["count"] = str(error)
            counts = {metro: 1 for metro in metros}
    try:
        duration = parse_duration(answer(values, "duration"))
    except DurationError as error:
        errors["duration"] = str(error)
        duration = timedelta(0)
    saved_keys = chosen_keys(values)
    if saved_keys == () and not answer(values, "ssh_key"):
        errors[SAVED_KEYS] = "Check at least one of your saved keys, or paste a public key below."
    request = RequestInput(
        project=answer(values, "project"),
        repo_url=answer(values, "repo_url"),
        purpose=answer(values, "purpose"),
        plan=answer(values, "plan"),
        metro=next(iter(counts)),
        os=answer(values, "os"),
        count=sum(counts.values()),
        metro_counts=tuple(counts.items()) if len(counts) > 1 else (),
        duration=duration,
        ssh_key=answer(values, "ssh_key"),
        applicant=answer(values, "applicant") or OTHER,
        org=answer(values, "org"),
        co_owners=chosen_users(values, "co_owners"),
        saved_keys=saved_keys,
        start_at=picked_time(values, START),
    )
    return request, errors


def picked_time(values: Values, block_id: str) -> datetime | None:
    """The moment a datetimepicker holds (Slack sends a Unix timestamp), None when empty."""
    entry = next(iter((values.get(block_id) or {}).values()), None) or {}
    stamp = entry.get("selected_date_time")
    if not isinstance(stamp, int) or isinstance(stamp, bool) or not 0 < stamp < 2**33:
        return None
    return datetime.fromtimestamp(stamp, UTC)


def deny_modal(kind: str, target: int, title: str) -> View:
    """Why a request (kind "lease") or an extension (kind "extension") is denied."""
    view = _modal(
        DENY,
        "Deny",
        "Deny",
        [_text("reason", title, "what the requester can change", multiline=True, limit="reason")],
    )
    return {**view, "private_metadata": f"{kind}:{target}"}


def deny_target(private_metadata: str) -> tuple[str, int] | None:
    kind, _, target = private_metadata.partition(":")
    target_id = number(target)
    return (kind, target_id) if kind in ("lease", "extension") and target_id else None


def writeup_modal(lease_id: int) -> View:
    view = _modal(
        WRITEUP,
        "Write-up",
        "Send",
        [
            _text(
                "url",
                f"A link to the write-up of lease #{lease_id}",
                "https://blog.example.org/our-lab-run",
                limit="url",
            )
        ],
    )
    return {**view, "private_metadata": str(lease_id)}


def _modal(callback_id: str, title: str, submit: str, blocks: list[Block]) -> View:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": plain(title, 24),
        "submit": plain(submit, 24),
        "close": plain("Cancel", 24),
        "blocks": blocks,
    }


def _text(
    block_id: str,
    label: str,
    placeholder: str,
    *,
    multiline: bool = False,
    initial: str | None = None,
    limit: str | None = None,
    optional: bool = False,
    hint: str = "",
) -> Block:
    """A text input; `limit` names the field of commands.policy.LIMITS it is held to, so Slack
    refuses a longer answer before it is sent."""
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": VALUE,
        "multiline": multiline,
        "placeholder": plain(placeholder, 150),
    }
    if limit:
        element["max_length"] = LIMITS[limit]
    if initial is not None:
        element["initial_value"] = initial
    block = _input(block_id, label, element, optional)
    return {**block, "hint": plain(hint, HINT_LIMIT)} if hint else block


def _users(block_id: str, label: str, *, optional: bool = True) -> Block:
    element = {"type": "multi_users_select", "action_id": VALUE, "max_selected_items": 10}
    return _input(block_id, label, element, optional)


def _select(
    block_id: str,
    label: str,
    options: list[tuple[str, str, str]],
    *,
    initial: str | None = None,
    optional: bool = False,
    several: bool = False,
) -> Block:
    choices = [_option(value, text, description) for value, text, description in options[:100]]
    kind = "multi_static_select" if several else "static_select"
    element: dict[str, Any] = {"type": kind, "action_id": VALUE, "options": choices}
    chosen = [c for c in choices if c["value"] == initial]
    if chosen:
        element["initial_option"] = chosen[0]
    return _input(block_id, label, element, optional)


def _input(block_id: str, label: str, element: dict[str, Any], optional: bool) -> Block:
    return {
        "type": "input",
        "block_id": block_id,
        "label": plain(label, 2000),
        "optional": optional,
        "element": element,
    }


def _option(value: str, text: str, description: str) -> dict[str, Any]:
    option = choice(text, value)
    if description:
        option["description"] = plain(truncate(description, OPTION_TEXT_LIMIT), OPTION_TEXT_LIMIT)
    return option


def _plan_label(plan) -> str:
    return f"{plan.slug} · {format_cents(plan.hourly_cents)}/h ({plan.arch})"


def answers(values: Values, block_id: str) -> list[str]:
    """The values chosen in a multi_static_select (or the one of a static_select), in the
    order Slack lists them; [] when none is."""
    entry = next(iter((values.get(block_id) or {}).values()), None) or {}
    if "selected_options" not in entry:
        return [answer(values, block_id)] if answer(values, block_id) else []
    chosen = (o.get("value") for o in entry.get("selected_options") or [] if isinstance(o, dict))
    return [value.strip() for value in chosen if isinstance(value, str) and value.strip()]


def answer(values: Values, block_id: str) -> str:
    """What the person entered, whether the input was a text field or a select; "" when the
    block is missing or empty (Slack sends None for an empty optional input)."""
    entry = next(iter((values.get(block_id) or {}).values()), None) or {}
    if "selected_option" in entry:
        return ((entry.get("selected_option") or {}).get("value") or "").strip()
    return (entry.get("value") or "").strip()
