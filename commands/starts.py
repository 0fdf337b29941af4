"""Rules: a booking's start (and end) as a person writes it, read in their own time zone.

`from=2026-12-14T09:00`, `from="tomorrow 09:00"`, `from="mon 14:00"`: a wall-clock time in the
requester's Slack zone (`users.info` gives its IANA name), made an aware UTC moment; an ISO time
with its own offset (`2026-12-14T09:00+01:00`, `...Z`) is taken as written. Pure: `now`, the
zone and the horizon are arguments. A time the zone skips (the hour a daylight-saving change
jumps over) is refused, never guessed; a time the zone repeats (clocks going back) is read as
the first of the two. Every refusal is one sentence saying what is accepted.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from commands.durations import format_duration

ACCEPTED = "2026-12-14T09:00, tomorrow 09:00 or mon 14:00"
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CLOCK = re.compile(r"(?P<h>\d{1,2}):(?P<m>\d{2})")
_DAY_AND_CLOCK = re.compile(r"(?P<day>[a-z]+)\s+(?P<clock>\d{1,2}:\d{2})")
LONGEST = 40  # characters of a start labbot reads at all


class StartError(ValueError):
    """A start or end that cannot be booked; the message is the sentence the person sees."""


def zone_of(name: str) -> ZoneInfo:
    """The IANA zone Slack gave (UTC when it gave none labbot knows)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_words(at: datetime, zone: ZoneInfo) -> str:
    """`Mon Dec 14 09:00 Europe/Amsterdam`: a moment as the requester wrote it."""
    local = at.astimezone(zone)
    return f"{local:%a %b} {local.day} {local:%H:%M} {zone.key}"


def read_moment(text: str, zone_name: str, now: datetime) -> datetime:
    """The aware UTC moment `text` names in the zone `zone_name`, or StartError."""
    zone = zone_of(zone_name)
    typed = " ".join(text.split()).lower()
    wall = _wall_time(typed, now.astimezone(zone)) if len(typed) <= LONGEST else None
    if wall is None:
        shown = text.strip()[:LONGEST]
        raise StartError(
            f"'{shown}' is not a time labbot can read; write it in your own time zone "
            f"({zone.key}) like {ACCEPTED}"
        )
    if wall.tzinfo is not None:
        return wall.astimezone(UTC)
    moment = wall.replace(tzinfo=zone)
    if moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall:
        later = (wall + timedelta(hours=1)).strftime("%H:%M")
        raise StartError(
            f"{wall:%Y-%m-%d %H:%M} does not exist in {zone.key}: the clocks jump over it "
            f"(daylight saving); pick a time outside the jump, like {later}"
        )
    return moment.astimezone(UTC)


def _wall_time(typed: str, local_now: datetime) -> datetime | None:
    """The wall-clock time `typed` names (aware if it carried an offset), or None."""
    if typed[:1].isdigit():
        try:
            return datetime.fromisoformat(typed.upper().replace(" ", "T"))
        except ValueError:
            return None
    match = _DAY_AND_CLOCK.fullmatch(typed)
    clock = _CLOCK.fullmatch(match["clock"]) if match else None
    if clock is None or int(clock["h"]) > 23 or int(clock["m"]) > 59:
        return None
    at = time(int(clock["h"]), int(clock["m"]))
    day = _day(match["day"], local_now, at)
    return None if day is None else datetime.combine(day, at)


def _day(word: str, local_now: datetime, at: time) -> date | None:
    """today, tomorrow, or the next such weekday (today's, if its time is still to come)."""
    today = local_now.date()
    if word == "today":
        return today
    if word == "tomorrow":
        return today + timedelta(days=1)
    names = {name: n for n, name in enumerate(_DAYS)} | {
        name: n for n, name in enumerate(_WEEKDAYS)
    }
    if word not in names:
        return None
    ahead = (names[word] - today.weekday()) % 7
    if ahead == 0 and at <= local_now.time().replace(tzinfo=None):
        ahead = 7
    return today + timedelta(days=ahead)


def check_start(start: datetime, now: datetime, horizon: timedelta, zone_name: str) -> None:
    """A start labbot books: not past, not beyond the horizon; StartError otherwise."""
    zone = zone_of(zone_name)
    if start < now:
        raise StartError(
            f"{local_words(start, zone)} is in the past; a booking starts between now and "
            f"{format_duration(horizon)} ahead (leave `from=` out to start as soon as approved)"
        )
    if start > now + horizon:
        raise StartError(
            f"{local_words(start, zone)} is more than {format_duration(horizon)} ahead; "
            f"a booking may start at most by {local_words(now + horizon, zone)}"
        )


def check_end(start: datetime, end: datetime, zone_name: str) -> None:
    """An end after the start; StartError otherwise."""
    if end <= start:
        zone = zone_of(zone_name)
        raise StartError(
            f"the end, {local_words(end, zone)}, is not after the start, "
            f"{local_words(start, zone)}; give an end later than the start, or a duration"
        )
