"""Vocabulary: slash-command text as Slack sends it, read back into the words the person typed.

The manifest turns escaping on (`should_escape: true`) so that a person picked from Slack's
`@` menu arrives as who they are: `@alice` comes as `<@U123|alice>` (or `<@U123>`). Escaping
wraps the rest of what Slack recognised too: `#general` as `<#C123|general>`, `@here` as
`<!here>`, a link as `<https://...>` or, when typed without its scheme, as
`<http://coredns.io|coredns.io>`, an address as `<mailto:a@b.org|a@b.org>`; and the three
characters Slack's markup uses arrive as `&amp;`, `&lt;` and `&gt;` with escaping on or off.
Only `with=`, `share` and `unshare` need the member ids; everywhere else labbot wants what the
person typed, so a purpose, a repository URL or a key's comment reads the same as before.
"""

from __future__ import annotations

import re

# One pass over both, so that `&amp;lt;` (a person typing `&lt;`) becomes `&lt;`, not `<`.
_ESCAPED = re.compile(r"<([^<>]*)>|&(amp|lt|gt);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">"}
_SIGILS = {"@": "@", "#": "#"}  # a user, a channel


def plain(text: str) -> str:
    """What the person typed: each wrapped mention, channel or link as its label (what Slack
    showed them), or as its target when Slack sent none; entities as their characters."""
    return _ESCAPED.sub(_typed, text)


def _typed(match: re.Match[str]) -> str:
    if match[2] is not None:
        return _ENTITIES[match[2]]
    target, _, label = match[1].partition("|")
    label = _ESCAPED.sub(_typed, label)
    if target.startswith("!"):  # @here, @channel, @everyone; a user group's label is `@team`
        return label or "@" + target[1:].split("^", 1)[0]
    sigil = _SIGILS.get(target[:1])
    if sigil is None:  # a link: what was typed is its label, or the link itself
        return label or plain(target.removeprefix("mailto:"))
    return sigil + (label or target[1:])
