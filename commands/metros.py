"""Vocabulary: several metros as people write them, for one lease across them (issue 22).

`ams1,ewr1,sjc1` asks for the same count in each metro, `ams1:4,ewr1:2` for a count per metro;
either reads into a dict metro -> servers, in the order written (what `Lease.spread` stores and
`Lease.per_metro` gives back). Whether the metros exist and offer the plan is the catalog's
question (commands.policy); here only the words are read, and `MetroError` says what was wrong
and what is accepted.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_METROS = 50  # far more than any catalog lists; keeps a pasted list from running on
_MAX_COUNT_DIGITS = 6
ACCEPTED = (
    "name the metros as metro=ams1,ewr1,sjc1 (the same count in each) or "
    "metro=ams1:4,ewr1:2 (a whole number of servers for each metro), each metro once"
)


class MetroError(ValueError):
    """The metros could not be read; the message is the sentence a person sees."""


def read_metros(text: str, count: int | None) -> dict[str, int]:
    """`ams1,ewr1` with `count` servers in each, or `ams1:4,ewr1:2` (then `count` is None)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise MetroError(f"No metro given; {ACCEPTED}.")
    if len(items) > MAX_METROS:
        raise MetroError(f"{len(items)} metros is more than any catalog offers; {ACCEPTED}.")
    counted = [":" in item for item in items]
    if any(counted) and count is not None:
        raise MetroError(
            "Give either a count per metro (metro=ams1:4,ewr1:2, with no COUNT) or one count "
            "for every metro, not both."
        )
    if any(counted) and not all(counted):
        raise MetroError(f"Some metros have a count and some do not; {ACCEPTED}.")
    if count is None and not any(counted):
        raise MetroError(f"No count of servers given; {ACCEPTED}.")
    found: dict[str, int] = {}
    for item in items:
        metro, _, number = item.partition(":")
        metro = metro.strip().lower()
        if metro in found:
            raise MetroError(f"The metro {metro[:40]} is named twice; {ACCEPTED}.")
        found[metro] = _whole(metro, number.strip()) if count is None else count
    return found


def counts_for(metros: Iterable[str], count_text: str) -> dict[str, int]:
    """The request form's answers: the metros chosen, and either one count for each
    (`2`) or a count per metro (`ams1:4,ewr1:2`) naming exactly the metros chosen."""
    chosen = list(dict.fromkeys(metros))
    text = count_text.strip()
    if ":" not in text:
        if not (text.isascii() and text.isdigit()) or len(text) > _MAX_COUNT_DIGITS:
            raise MetroError(
                f"'{text[:40]}' is not a number of servers; write a whole number like 3 (in "
                "each metro chosen), or a count per metro like ams1:4,ewr1:2."
            )
        return read_metros(",".join(chosen), int(text))
    counts = read_metros(text, None)
    if chosen and set(counts) != set(chosen):
        raise MetroError(
            f"The counts name {', '.join(counts)} but the metros chosen are "
            f"{', '.join(chosen)}; give a count for each metro chosen, like "
            f"{','.join(f'{m}:2' for m in chosen)}."
        )
    return counts


def metro_words(counts: dict[str, int]) -> str:
    """`ams1` for one metro; `ams1 (4), ewr1 (2)` for several."""
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{metro} ({count})" for metro, count in counts.items())


def _whole(metro: str, number: str) -> int:
    if not (number.isascii() and number.isdigit()) or len(number) > _MAX_COUNT_DIGITS:
        raise MetroError(
            f"'{number[:20]}' is not a whole number of servers for {metro[:40]}; {ACCEPTED}."
        )
    if int(number) == 0:
        raise MetroError(
            f"The metro {metro[:40]} asks for no servers; leave it out, or {ACCEPTED}."
        )
    return int(number)
