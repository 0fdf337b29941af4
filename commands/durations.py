"""Vocabulary: durations as people write them: `30s`, `90m`, `36h`, `3d`, and combinations like
`1d12h`."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"(?:\d+[smhdw])+")

EXAMPLES = "30s, 90m, 36h, 3d or 1d12h"
# Longer than any policy allows: a longer duration is read as this one, so that it gets the
# policy's answer ("ask for 1h to 14d") instead of overflowing timedelta or int().
LONGEST = timedelta(days=3650)
_MOST_DIGITS = 12  # more digits than this is longer than LONGEST in any unit


class DurationError(ValueError):
    pass


def parse_duration(text: str, *, zero: bool = False) -> timedelta:
    """Parse a duration; the error message says what would be accepted. `zero` admits a
    duration of nothing (a grace period may be none)."""
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned or not _WHOLE.fullmatch(cleaned):
        raise DurationError(f"'{text}' is not a duration; write it like {EXAMPLES}")
    parts = _PART.findall(cleaned)
    if any(len(n.lstrip("0")) > _MOST_DIGITS for n, _ in parts):
        return LONGEST
    seconds = sum(int(n) * _UNITS[unit] for n, unit in parts)
    if seconds <= 0 and not zero:
        raise DurationError(f"'{text}' is zero; a duration must be longer than that")
    return timedelta(seconds=min(seconds, int(LONGEST.total_seconds())))


def format_duration(delta: timedelta | int | float) -> str:
    """The shortest exact way to write a duration back: 2d, 36h, 90m, 1d2h30m."""
    seconds = int(delta.total_seconds() if isinstance(delta, timedelta) else delta)
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
